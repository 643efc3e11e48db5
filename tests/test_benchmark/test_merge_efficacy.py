"""Merging raw efficacy files: tasks taken per file, later runs replace earlier ones, cells
whose runs were made on other teachers are refused, and the command writes the shared file."""
import json
import os.path as osp
import subprocess
import sys

import pytest

from mmtkd.benchmark.merge_efficacy import merge_runs, parse_source, with_recommended_runs
from mmtkd.benchmark.recommended import CREDIT_AGENT, RECOMMENDED, measured_as

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def run(task, method, seed, value, teachers=None, pool='one_untrained'):
    return dict(task=task, pool=pool, method=method, seed=seed, value=value, teachers=teachers)


def test_tasks_per_source_and_later_runs_replace_earlier():
    first = [run('classification', 'aver', 0, 1.0), run('detection', 'aver', 0, 2.0)]
    second = [run('detection', 'aver', 0, 3.0, {'a': 'x'}), run('detection', 'ebkd', 0, 4.0)]
    merged = merge_runs([(first, ['classification']), (second, None)])
    values = {(r['task'], r['method']): r['value'] for r in merged}
    assert values == {
        ('classification', 'aver'): 1.0,
        ('detection', 'aver'): 3.0,
        ('detection', 'ebkd'): 4.0
    }


def test_a_cell_with_two_teacher_sets_is_refused():
    runs = [
        run('detection', 'aver', 0, 1.0, {'a': 'x'}),
        run('detection', 'ebkd', 0, 1.0, {'a': 'y'})
    ]
    with pytest.raises(ValueError, match='different teachers'):
        merge_runs([(runs, None)])
    # the same sets in different pools are fine: pools are cells of their own
    runs[1]['pool'] = 'clean'
    assert len(merge_runs([(runs, None)])) == 2


def test_a_cell_mixing_lr_schedules_is_refused():
    annealed = dict(run('classification', 'aver', 0, 1.0), lr_per_iteration=True)
    runs = [annealed, run('classification', 'ebkd', 0, 1.0)]
    with pytest.raises(ValueError, match='different schedules.*lr_per_iteration'):
        merge_runs([(runs, None)])
    # replaced by a run of the same schedule, the cell is one schedule again
    fixed = dict(run('classification', 'ebkd', 0, 2.0), lr_per_iteration=True)
    assert len(merge_runs([(runs, None), ([fixed], None)])) == 2


@pytest.mark.parametrize('key,values', [('epochs', (1, 2)), ('train_subset', (15000, None)),
                                        ('val_images', (None, 1200)),
                                        ('kd_temperature', (None, 8.0)),
                                        ('logit_kd_weight', (None, 4.0))])
def test_a_cell_mixing_epochs_subsets_or_validation_sets_is_refused(key, values):
    runs = [
        dict(run('classification', 'aver', 0, 1.0), **{key: values[0]}),
        dict(run('classification', 'ebkd', 0, 1.0), **{key: values[1]})
    ]
    with pytest.raises(ValueError, match=f'different schedules.*{key}'):
        merge_runs([(runs, None)])
    runs[1][key] = values[0]
    assert len(merge_runs([(runs, None)])) == 2


def test_runs_of_the_recommended_configuration_under_its_older_names_stand_for_it():
    # the segmentors' shipped file, one step in five with 10 passes since session 34; the
    # every-step variant it replaced is another configuration, whose runs are not copied
    feature_credit = f'{CREDIT_AGENT}_feature_credit_ranked_every5_passes10'
    assert measured_as('segmentation') == feature_credit
    runs = [
        run('detection', CREDIT_AGENT, 0, 4.5),
        run('detection', feature_credit, 0, 4.2),
        run('segmentation', CREDIT_AGENT, 0, 9.7),
        run('segmentation', f'{CREDIT_AGENT}_feature_credit_ranked', 0, 23.4),
        run('segmentation', feature_credit, 0, 22.4),
        run('segmentation', feature_credit, 1, 21.0),
        run('segmentation', RECOMMENDED, 1, 21.5),  # run under its own name: kept, not copied
    ]
    recommended = {
        (r['task'], r['seed']): r
        for r in with_recommended_runs(runs) if r['method'] == RECOMMENDED
    }
    assert {
        key: (r['value'], r.get('measured_as'))
        for key, r in recommended.items()
    } == {
        ('detection', 0): (4.5, CREDIT_AGENT),
        ('segmentation', 0): (22.4, feature_credit),
        ('segmentation', 1): (21.5, None),
    }
    assert with_recommended_runs(with_recommended_runs(runs)) == with_recommended_runs(runs)


def test_parse_source():
    assert parse_source('a.json') == ('a.json', None)
    assert parse_source('a.json:classification,trees') == ('a.json', ['classification', 'trees'])


def test_command_writes_the_shared_file(tmp_path):
    first, second = tmp_path / 'first.json', tmp_path / 'second.json'
    first.write_text(
        json.dumps(dict(recommended='old', runs=[run('classification', 'aver', 0, 1.0)])))
    second.write_text(json.dumps(dict(recommended='old', runs=[run('detection', 'aver', 1, 2.0)])))
    out = tmp_path / 'merged.json'
    result = subprocess.run([
        sys.executable,
        osp.join(ROOT, 'tools', 'benchmark', 'merge_efficacy.py'), f'{first}:classification',
        str(second), '--out',
        str(out)
    ],
                            capture_output=True,
                            text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    merged = json.loads(out.read_text())
    assert merged['recommended'] == RECOMMENDED
    assert [(r['task'], r['seed']) for r in merged['runs']] == [('classification', 0),
                                                                ('detection', 1)]
