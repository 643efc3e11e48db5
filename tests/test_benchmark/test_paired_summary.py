"""The quality benchmark's paired tables say how many seeds each number rests on."""
import math

from mmtkd.benchmark.paired_summary import (cell_values, compared_with, format_estimate,
                                            paired_difference, summarise)
from mmtkd.benchmark.recommended import CREDIT_AGENT, RECOMMENDED
from mmtkd.demo.tasks import TASKS


def _run(method: str, seed: int, value: float) -> dict:
    return dict(
        task='classification',
        pool='two_permuted',
        method=method,
        seed=seed,
        value=value,
        bad_share_logit=None,
        bad_share_feat=None)


def test_one_seed_gives_its_value_and_no_error():
    n, mean, se = paired_difference({0: 87.5, 1: 87.0}, {0: 87.0})
    assert (n, mean) == (1, 0.5) and math.isnan(se)
    n, mean, _ = paired_difference({0: 87.5}, {1: 87.0})
    assert n == 0 and math.isnan(mean)
    assert format_estimate(1, 87.345, float('nan')) == '87.34 (n = 1)'
    assert format_estimate(0, float('nan'), float('nan'), sign='+') == '-'
    assert format_estimate(3, 0.5, 0.125, sign='+', of=3) == '+0.50 +- 0.12'
    assert format_estimate(2, 0.5, 0.125, sign='+', of=3) == '+0.50 +- 0.12 (2)'


def test_the_student_alone_run_on_one_pool_is_in_every_pool_of_its_task():
    runs = [dict(_run('nokd', s, 80.0 + s), pool='clean') for s in range(2)]
    runs += [_run('aver', s, 85.0) for s in range(2)]
    runs += [dict(_run('nokd', 0, 1.0), task='detection')]  # another task's: not taken
    assert cell_values(runs, 'classification', 'two_permuted') == {
        'aver': {
            0: 85.0,
            1: 85.0
        },
        'nokd': {
            0: 80.0,
            1: 81.0
        }
    }
    # a pool's own run of it wins over another pool's
    runs.append(_run('nokd', 1, 70.0))
    assert cell_values(runs, 'classification', 'two_permuted')['nokd'] == {0: 80.0, 1: 70.0}
    table = summarise(TASKS['classification'], runs, ['two_permuted'], 'caption', ['nokd', 'aver'])
    assert '| nokd | 75.00 +- 5.00 (2) |' in table


def test_table_names_the_seeds_of_short_rows_and_prints_no_nan():
    runs = [_run('aver', s, v) for s, v in enumerate([84.0, 85.0, 86.0])]
    runs += [_run('camkd', s, v) for s, v in enumerate([87.0, 88.0, 87.5])]
    runs += [_run('agent', 0, 87.25), _run('agent', 1, 88.5)]
    runs += [_run('ebkd', 2, 30.0)]
    table = summarise(TASKS['classification'], runs, ['two_permuted'], 'caption',
                      ['aver', 'camkd', 'ebkd', 'agent'])
    assert 'nan' not in table
    rows = {
        line.split(' | ')[0].strip('| '): line.split(' | ')
        for line in table.splitlines() if line.startswith('| ') and not line.startswith('| method')
    }
    assert rows['aver'][1] == '85.00 +- 0.58 (3)'
    assert rows['ebkd'][1] == '30.00 (n = 1)'
    # the agent's two seeds against AVER's three: +3.25 and +3.5, over its own two seeds
    assert rows['agent'][2] == '+3.38 +- 0.12'
    assert rows['agent'][4] == '-'  # no seed shared with EBKD
    # EBKD's one seed against AVER: a single difference
    assert rows['ebkd'][2] == '-56.00 (n = 1)'
    assert rows['camkd'][4] == '+57.50 (n = 1)'


def test_a_candidate_is_compared_with_the_recommended_agent():
    runs = [_run(RECOMMENDED, s, v) for s, v in enumerate([87.5, 87.0, 88.0])]
    runs += [_run('candidate', s, v) for s, v in enumerate([87.0, 87.0, 87.0])]
    runs += [_run('aver', s, 85.0) for s in range(3)]
    table = summarise(TASKS['classification'], runs, ['two_permuted'], 'caption',
                      ['aver', RECOMMENDED, 'candidate'])
    header = next(line for line in table.splitlines() if line.startswith('| method'))
    column = header.split(' | ').index('vs recommended')
    rows = {
        line.split(' | ')[0].strip('| '): line.split(' | ')
        for line in table.splitlines() if line.startswith('| ') and not line.startswith('| method')
    }
    assert rows['candidate'][column] == '-0.50 +- 0.29'
    assert rows[RECOMMENDED][column] == '-'  # not against itself
    assert rows['aver'][column] == '-2.50 +- 0.29'


def test_records_from_before_the_per_task_recommendation_compare_with_the_credit_agent():
    """Files made before session 33 name the credit agent, then recommended on every task."""
    runs = [_run(CREDIT_AGENT, s, v) for s, v in enumerate([87.5, 87.0, 88.0])]
    runs += [_run('candidate', s, 87.0) for s in range(3)]
    table = summarise(TASKS['classification'], runs, ['two_permuted'], 'caption',
                      [CREDIT_AGENT, 'candidate'])
    header = next(line for line in table.splitlines() if line.startswith('| method'))
    column = header.split(' | ').index('vs recommended')
    candidate = next(line for line in table.splitlines() if line.startswith('| candidate '))
    assert candidate.split(' | ')[column] == '-0.50 +- 0.29'
    assert compared_with([CREDIT_AGENT, RECOMMENDED])[-1] == RECOMMENDED


def test_each_teachers_share_is_tabled_per_method_where_runs_recorded_it():
    """A clean pool has no bad-teacher share; the table of every teacher's share shows what a
    weighting did to the good ones (runs recorded before the field existed are left out)."""

    def shares(regnetx: float, feat: float = None) -> dict:
        rest = (1 - regnetx) / 2
        logit = dict(regnetx=regnetx, res18=rest, res34=rest)
        return dict(logit=logit, feat=dict(logit, regnetx=feat) if feat is not None else logit)

    runs = [dict(_run('aver', s, 87.0), pool='clean', teacher_shares=shares(1 / 3)) for s in (0, 1)]
    runs += [
        dict(
            _run('agent', 0, 87.0),
            pool='clean',
            teacher_shares=shares(0.02, feat=0.5),
            weight_totals=dict(logit=0.7, feat=1.0)),
        dict(
            _run('agent', 1, 87.0),
            pool='clean',
            teacher_shares=shares(0.06, feat=0.5),
            weight_totals=dict(logit=0.8, feat=1.0)),
        dict(_run('agent', 2, 87.0), pool='clean'),  # recorded before teacher_shares existed
    ]
    table = summarise(TASKS['classification'], runs, ['clean'], 'caption', ['aver', 'agent'])
    lines = table.splitlines()
    header = next(line for line in lines if line.startswith('| method | seeds'))
    assert header.split(' | ')[2:] == ['regnetx', 'res18', 'res34', 'total |']
    rows = {
        line.split(' | ')[0].strip('| '): line.split(' | ')
        for line in lines
        if line.startswith('| ') and ' | ' in line and line.split(' | ')[1].isdigit()
    }
    # runs recorded before weight_totals existed: no total
    assert rows['aver'][1:] == ['2', '0.333 / 0.333', '0.333 / 0.333', '0.333 / 0.333', '- / - |']
    assert rows['agent'][1:3] == ['2', '0.040 / 0.500']
    assert rows['agent'][-1] == '0.750 / 1.000 |'
    # a cell of runs without the field gets no second table
    old = [{k: v for k, v in r.items() if k != 'teacher_shares'} for r in runs]
    assert 'each teacher' not in summarise(TASKS['classification'], old, ['clean'], 'c',
                                           ['aver', 'agent'])
