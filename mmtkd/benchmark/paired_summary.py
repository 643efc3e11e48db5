"""Paired comparisons over seeds of the quality benchmark's runs: each method's mean, its
per-seed difference to AVER, CA-MKD and EBKD with the standard error, as a table and a plot."""
import math
from typing import Dict, List, Sequence, Tuple

import numpy as np

from mmtkd.benchmark.recommended import BASELINE_WEIGHTINGS, CREDIT_AGENT, RECOMMENDED
from mmtkd.benchmark.teacher_pools import task_pools
from mmtkd.demo.tasks import DemoTask

#: The heuristics every agent is compared with, paired by seed
BASELINES = tuple(BASELINE_WEIGHTINGS)
#: The recommended configuration's names in the records, newest first: records made before
#: session 33 name the credit agent, then recommended on every task
RECOMMENDED_NAMES = (RECOMMENDED, CREDIT_AGENT)


def compared_with(methods: Sequence[str]) -> Tuple[str, ...]:
    """What a cell's table compares every method with: the heuristics and the recommended
    configuration (a candidate that would replace it is measured against it).

    Args:
        methods (Sequence[str]): The methods with runs in the cell.

    Returns:
        tuple[str, ...]: The baselines and the first of :data:`RECOMMENDED_NAMES` that ran.
    """
    recommended = next((name for name in RECOMMENDED_NAMES if name in methods), RECOMMENDED)
    return BASELINES + (recommended, )


def paired_difference(mine: Dict[int, float], other: Dict[int, float]) -> Tuple[int, float, float]:
    """Mean and standard error of the per-seed difference ``mine - other`` over shared seeds.

    Args:
        mine (dict): ``{seed: value}``.
        other (dict): ``{seed: value}``.

    Returns:
        tuple: ``(n, mean, standard error)``; NaN mean without a shared seed, NaN error below
        two.
    """
    diffs = np.array([mine[s] - other[s] for s in sorted(set(mine) & set(other))])
    if len(diffs) < 2:
        return len(diffs), float(diffs.mean()) if len(diffs) else float('nan'), float('nan')
    return len(diffs), float(diffs.mean()), float(diffs.std(ddof=1) / math.sqrt(len(diffs)))


def format_estimate(n: int, mean: float, se: float, sign: str = '', of: int = 0) -> str:
    """A mean and its standard error as a table cell, saying how many seeds it rests on.

    Args:
        n (int): Seeds behind the mean.
        mean (float): The mean (of values or of paired differences).
        se (float): Its standard error (NaN below two seeds).
        sign (str): ``'+'`` to sign the mean (a difference). Defaults to ``''``.
        of (int): The seeds of the row's method: a paired difference over fewer names its
            ``n``. Defaults to 0 (always name it).

    Returns:
        str: ``'-'`` without seeds, ``'87.34 (n = 1)'`` for one (no error to give), else
        ``'87.34 +- 0.06'`` followed by ``' (n)'`` unless ``n == of``.
    """
    if n == 0:
        return '-'
    value = f'{mean:{sign}.2f}'
    if n == 1:
        return f'{value} (n = 1)'
    return f'{value} +- {se:.2f}' + ('' if n == of else f' ({n})')


#: the student trained without teachers: one run serves every pool of its task
STUDENT_ALONE = 'nokd'


def cell_values(runs: List[dict], task: str, pool: str) -> Dict[str, Dict[int, float]]:
    """``{method: {seed: value}}`` of one (task, pool) cell of the efficacy records, with the
    student alone (:data:`STUDENT_ALONE`, which sees no teacher and is run on one pool) in every
    pool of its task; a pool's own run of it, if any, comes first.

    Args:
        runs (list[dict]): Efficacy records.
        task (str): The task.
        pool (str): The pool.

    Returns:
        dict: ``{method: {seed: value}}``.
    """
    values: Dict[str, Dict[int, float]] = {}
    alone: Dict[int, float] = {}
    for run in runs:
        if run['task'] != task:
            continue
        if run['pool'] == pool:
            values.setdefault(run['method'], {})[run['seed']] = run['value']
        elif run['method'] == STUDENT_ALONE:
            alone.setdefault(run['seed'], run['value'])
    if alone:
        values[STUDENT_ALONE] = {**alone, **values.get(STUDENT_ALONE, {})}
    return values


def summarise(task: DemoTask, runs: List[dict], pools: List[str], caption: str,
              methods: Sequence[str]) -> str:
    """Markdown table per pool: every method's mean over seeds, its paired difference to AVER,
    CA-MKD, EBKD and the recommended agent (mean +- standard error, n), and its bad-teacher
    shares.

    Args:
        task (DemoTask): The task.
        runs (list[dict]): Efficacy records (``quality.efficacy_record``).
        pools (list[str]): Pools to show.
        caption (str): The table's caption: the data and the settings.
        methods (Sequence[str]): Methods in the order of the rows (those without runs left out).

    Returns:
        str: The table.
    """
    label = task.metrics[0][1]
    lines = [caption]
    for pool in pools:
        values = cell_values(runs, task.name, pool)
        if not values:
            continue
        lines += [
            '', f'**{pool}** (bad: {", ".join(task_pools(task.name)[pool]) or "none"})', '',
            f'| method | {label} (%) mean +- se (n) | vs AVER | vs CA-MKD | vs EBKD | '
            'vs recommended | bad share logit | bad share feat |',
            '|---|---:|---:|---:|---:|---:|---:|---:|'
        ]
        for method in [m for m in methods if m in values]:
            mine = values[method]
            vals = np.array(list(mine.values()))
            se = vals.std(ddof=1) / math.sqrt(len(vals)) if len(vals) > 1 else float('nan')
            cells = [format_estimate(len(vals), vals.mean(), se)]
            for base in compared_with(list(values)):
                if base == method or base not in values:
                    cells.append('-')
                    continue
                cells.append(
                    format_estimate(*paired_difference(mine, values[base]), sign='+', of=len(vals)))
            for key in ('bad_share_logit', 'bad_share_feat'):
                shares = [
                    r[key] for r in runs if r['task'] == task.name and r['pool'] == pool
                    and r['method'] == method and r.get(key) is not None
                ]
                cells.append(f'{np.mean(shares):.3f}' if shares and pool != 'clean' else '-')
            lines.append(f'| {method} | ' + ' | '.join(cells) + ' |')
        lines += teacher_share_table(runs, task.name, pool, methods)
    return '\n'.join(lines)


def _logit_and_feature(values: List[Dict[str, float]]) -> str:
    """``'logit / feat'``: the means of ``{'logit': x, 'feat': y}`` values, ``-`` for none."""
    means = [
        np.mean([v.get(kind, np.nan) for v in values]) if values else np.nan
        for kind in ('logit', 'feat')
    ]
    return ' / '.join('-' if np.isnan(m) else f'{m:.3f}' for m in means)


def teacher_share_table(runs: List[dict], task: str, pool: str,
                        methods: Sequence[str]) -> List[str]:
    """Markdown lines of each teacher's mean share of the logit-KD and of the feature-KD
    weight (second half of training; ``teacher_shares`` of the runs that recorded it), one row
    per method: what the bad-teacher shares cannot say on a clean pool, or of the good teachers;
    and the weights' mean total (``weight_totals``, where recorded): below 1 where a weighting
    drops a teacher without handing its weight on.

    Args:
        runs (list[dict]): Efficacy records.
        task (str): The task's name.
        pool (str): The pool.
        methods (Sequence[str]): Methods in the order of the rows.

    Returns:
        list[str]: The table's lines, preceded by a blank line; none where no run of the cell
        recorded its shares.
    """
    recorded: Dict[str, List[dict]] = {}
    for run in runs:
        if run['task'] == task and run['pool'] == pool and run.get('teacher_shares'):
            recorded.setdefault(run['method'], []).append(run)
    if not recorded:
        return []
    teachers = sorted({
        t
        for method_runs in recorded.values()
        for r in method_runs
        for t in r['teacher_shares']['logit']
    })
    lines = [
        '', f'each teacher\'s share of the logit / feature KD weight, second half, mean over '
        f'seeds ({pool}), and the weights\' total (a method that scales the distiller\'s alpha / '
        f'beta scales its KD beyond it)', '',
        '| method | seeds | ' + ' | '.join(teachers) + ' | total |',
        '|---|---:|' + '---:|' * (len(teachers) + 1)
    ]
    for method in [m for m in methods if m in recorded]:
        shares = [r['teacher_shares'] for r in recorded[method]]
        cells = [
            _logit_and_feature([{
                kind: s[kind].get(t, np.nan)
                for kind in s
            } for s in shares]) for t in teachers
        ]
        cells.append(
            _logit_and_feature(
                [r['weight_totals'] for r in recorded[method] if r.get('weight_totals')]))
        lines.append(f'| {method} | {len(recorded[method])} | ' + ' | '.join(cells) + ' |')
    return lines


def plot_summary(task: DemoTask, runs: List[dict], pools: List[str], out: str, title: str,
                 methods: Sequence[str]) -> str:
    """Plot per pool every method's paired difference to AVER (mean +- 2 standard errors, the
    efficacy target's bar), every seed as a dot.

    Args:
        task (DemoTask): The task.
        runs (list[dict]): Efficacy records.
        pools (list[str]): Pools to show.
        out (str): PNG path.
        title (str): The figure's title (the data).
        methods (Sequence[str]): Methods in the order of the points.

    Returns:
        str: ``out``.
    """
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(pools), figsize=(4 * len(pools), 3.6), squeeze=False)
    for ax, pool in zip(axes[0], pools):
        values = cell_values(runs, task.name, pool)
        shown = [m for m in methods if m in values and m != 'aver']
        for x, method in enumerate(shown):
            if 'aver' not in values:
                break
            seeds = sorted(set(values[method]) & set(values['aver']))
            diffs = [values[method][s] - values['aver'][s] for s in seeds]
            _, mean, se = paired_difference(values[method], values['aver'])
            ax.errorbar([x], [mean], yerr=[2 * se if se == se else 0], fmt='o', capsize=4)
            ax.scatter([x] * len(diffs), diffs, color='k', s=6, alpha=0.5, zorder=3)
        ax.axhline(0, color='grey', lw=0.8)
        ax.set_xticks(range(len(shown)), shown, rotation=30, ha='right')
        ax.set_title(pool, fontsize=9)
        ax.grid(axis='y', alpha=0.3)
    axes[0][0].set_ylabel(f'{task.metrics[0][1]} - AVER (%), mean +- 2 se')
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
