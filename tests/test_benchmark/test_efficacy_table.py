"""The README's agent table from raw efficacy records: means over the agent's seeds, paired
differences by hand, shares, unrun pools named, and the README block replaced in place."""
import pytest

from mmtkd.benchmark.efficacy_table import BEGIN, END, efficacy_table, replace_block


def record(method, seed, value, share=None):
    return dict(
        task='detection',
        pool='one_untrained',
        bad_teachers=['res18'],
        method=method,
        seed=seed,
        metric='mAP',
        value=value,
        bad_share_logit=share,
        bad_share_feat=share,
        agent_updates=None,
        minutes=1.0)


def test_table_rows_are_paired_over_the_agents_seeds():
    runs = [record('agent', s, v, 0.02 * (s + 1)) for s, v in ((0, 5.0), (1, 6.0), (2, 7.0))]
    runs += [record('aver', s, v) for s, v in ((0, 4.0), (1, 4.0), (2, 6.0), (3, 9.0))]
    runs += [record('camkd', 0, 5.0)]
    table = efficacy_table(dict(recommended='agent', runs=runs))
    row = next(line for line in table.splitlines() if 'detection / one_untrained' in line)
    cells = [c.strip() for c in row.strip('|').split('|')]
    # diffs to AVER over seeds 0-2: 1, 2, 1 -> mean 1.33, sd 0.577, se 0.333; AVER's mean over
    # the agent's seeds only (seed 3 left out): 4.67
    assert cells[1:4] == ['3', '6.00', '4.67']
    assert cells[6] == '+1.33 +- 0.33'
    assert cells[7] == 'n = 1' and cells[8] == 'n = 0'  # one CA-MKD seed, no EBKD
    assert cells[9] == '0.040 / 0.040'
    assert '| detection / clean | 0 | not run yet |' in table


def test_readme_block_is_replaced_and_the_rest_kept():
    text = f'intro\n{BEGIN}\nold table\n{END}\noutro\n'
    assert replace_block(text, 'new') == f'intro\n{BEGIN}\nnew\n{END}\noutro\n'
    with pytest.raises(ValueError, match='agent-table'):
        replace_block('no markers', 'new')


def test_another_methods_table():
    runs = [record('agent', 0, 5.0), record('agent', 1, 6.0), record('other', 0, 7.0)]
    runs += [record('aver', s, 4.0) for s in (0, 1)]
    table = efficacy_table(dict(recommended='agent', runs=runs), method='other')
    row = next(line for line in table.splitlines() if 'detection / one_untrained' in line)
    assert [c.strip() for c in row.strip('|').split('|')][1:4] == ['1', '7.00', '4.00']
