"""The README's agent table, from the raw efficacy results.

For every task and pool of :data:`mmtkd.benchmark.teacher_pools.POOLS`: the recommended
agent's seeds, its mean and the baselines' means over those seeds, its paired differences to
AVER, CA-MKD and EBKD (mean +- standard error) and its mean bad-teacher shares; pools without
runs say so.

Usage:
    python tools/benchmark/efficacy_table.py [--efficacy-file docs/results/agent_efficacy.json]
        [--readme README.md]   # rewrites the block between the agent-table markers
        [--method NAME]        # another method's table (printed only)
"""
import argparse
import json
from typing import List, Optional

import numpy as np

from mmtkd.benchmark.paired_summary import BASELINES, cell_values, paired_difference
from mmtkd.benchmark.teacher_pools import POOLS

BEGIN, END = '<!-- agent-table:begin -->', '<!-- agent-table:end -->'
TASK_ORDER = ('classification', 'detection', 'segmentation', 'trees')


def _mean_share(runs: List[dict], key: str) -> Optional[float]:
    values = [r[key] for r in runs if r.get(key) is not None]
    return float(np.mean(values)) if values else None


def efficacy_table(data: dict, method: Optional[str] = None) -> str:
    """The markdown table (header and one row per task / pool).

    Args:
        data (dict): The efficacy file's content (``recommended`` and ``runs``).
        method (str, optional): The method in the agent's column; the file's recommended one
            when None.

    Returns:
        str: The table.
    """
    agent = method or data['recommended']
    lines = [
        f'| task / pool | n | {"recommended agent" if method is None else method} | AVER | '
        'CA-MKD | EBKD | vs AVER | vs CA-MKD | '
        'vs EBKD | bad-teacher share (logit / feat) |', '|---|---:|' + '---:|' * 8
    ]
    for task in TASK_ORDER:
        for pool in POOLS[task]:
            values = cell_values(data['runs'], task, pool)
            mine = values.get(agent, {})
            if not mine:
                lines.append(f'| {task} / {pool} | 0 | not run yet |' + ' |' * 7)
                continue
            seeds = sorted(mine)
            means = [
                f'{np.mean([values[b][s] for s in seeds if s in values[b]]):.2f}'
                if values.get(b) else '-' for b in BASELINES
            ]
            diffs = []
            for base in BASELINES:
                n, mean, se = paired_difference(mine, values.get(base, {}))
                diffs.append(f'{mean:+.2f} +- {se:.2f}' if n >= 2 else f'n = {n}')
            runs = [
                r for r in data['runs']
                if r['task'] == task and r['pool'] == pool and r['method'] == agent
            ]
            shares = [_mean_share(runs, k) for k in ('bad_share_logit', 'bad_share_feat')]
            share = ' / '.join(f'{s:.3f}' for s in shares) if None not in shares else '-'
            lines.append(f'| {task} / {pool} | {len(seeds)} | '
                         f'{np.mean([mine[s] for s in seeds]):.2f} | ' + ' | '.join(means) + ' | ' +
                         ' | '.join(diffs) + f' | {share} |')
    return '\n'.join(lines)


def replace_block(text: str, table: str) -> str:
    """``text`` with the block between the agent-table markers replaced by ``table``.

    Args:
        text (str): The README.
        table (str): The new table.

    Returns:
        str: The new README.

    Raises:
        ValueError: If the markers are missing.
    """
    if BEGIN not in text or END not in text:
        raise ValueError(f'the README has no {BEGIN} ... {END} block')
    head, rest = text.split(BEGIN, 1)
    return head + BEGIN + '\n' + table + '\n' + END + rest.split(END, 1)[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--efficacy-file', default='docs/results/agent_efficacy.json')
    parser.add_argument('--readme', help='rewrite the agent-table block of this file')
    parser.add_argument('--method', help="another method's table (default: the recommended)")
    args = parser.parse_args()
    if args.readme and args.method:
        parser.error("--readme writes the recommended agent's table: drop --method")
    with open(args.efficacy_file) as f:
        table = efficacy_table(json.load(f), args.method)
    print(table)
    if args.readme:
        with open(args.readme) as f:
            text = f.read()
        with open(args.readme, 'w') as f:
            f.write(replace_block(text, table))
