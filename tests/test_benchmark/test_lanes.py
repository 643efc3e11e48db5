"""run_in_lanes: a grid's runs as processes side by side, taken in order from one queue."""
import json
import os.path as osp
import sys

import pytest

from mmtkd.benchmark.lanes import LaneRun, run_in_lanes

# each run appends when it started and ended and its thread setting, then sleeps
RUN = """
import json, os, sys, time
start = time.time()
time.sleep(float(sys.argv[3]))
print('hello from', sys.argv[1])
with open(sys.argv[2], 'a') as f:
    f.write(json.dumps(dict(name=sys.argv[1], start=start, end=time.time(),
                            threads=os.environ['OMP_NUM_THREADS'])) + '\\n')
sys.exit(int(sys.argv[4]))
"""


def lane_run(name, record, seconds=1.5, status=0):
    return LaneRun(name, [sys.executable, '-c', RUN, name, str(record), str(seconds), str(status)])


def test_runs_go_in_order_at_most_lanes_at_a_time(tmp_path, capsys):
    record = tmp_path / 'record.jsonl'
    runs = [lane_run(f'run{i}', record) for i in range(4)]
    statuses = run_in_lanes(runs, lanes=2, log_dir=str(tmp_path / 'logs'), threads=1)
    assert statuses == {f'run{i}': 0 for i in range(4)}
    done = {r['name']: r for r in map(json.loads, record.read_text().splitlines())}
    assert sorted(done) == [f'run{i}' for i in range(4)]
    assert {r['threads'] for r in done.values()} == {'1'}
    events = sorted([(r['start'], 1) for r in done.values()] + [(r['end'], -1)
                                                                for r in done.values()])
    running = [sum(step for _, step in events[:i + 1]) for i in range(len(events))]
    assert max(running) == 2  # side by side, never more than two
    # the queue's order: the first two start before the last two
    assert max(done['run0']['start'], done['run1']['start']) < min(done['run2']['start'],
                                                                   done['run3']['start'])
    assert 'hello from run3' in (tmp_path / 'logs' / 'run3.log').read_text()
    # one whole progress line per start and end, whatever the lanes' timing
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 8 and all(line.startswith('[lanes] lane ') for line in lines)


def test_a_failed_run_is_reported_and_the_others_still_run(tmp_path):
    record = tmp_path / 'record.jsonl'
    runs = [lane_run('bad', record, 0.1, status=3), lane_run('good', record, 0.1)]
    statuses = run_in_lanes(runs, lanes=1, log_dir=str(tmp_path / 'logs'), threads=2)
    assert statuses == {'bad': 3, 'good': 0}
    assert [json.loads(line)['threads'] for line in record.read_text().splitlines()] == ['2', '2']
    assert osp.isfile(tmp_path / 'logs' / 'bad.log')


def test_bad_lane_settings_are_refused(tmp_path):
    with pytest.raises(ValueError, match='at least 1'):
        run_in_lanes([], lanes=0, log_dir=str(tmp_path))
    with pytest.raises(ValueError, match='its own name'):
        run_in_lanes([lane_run('a', 'x'), lane_run('a', 'y')], lanes=2, log_dir=str(tmp_path))
