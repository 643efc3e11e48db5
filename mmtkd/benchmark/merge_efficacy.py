"""Merge raw efficacy files into one, cell by cell, refusing cells whose runs had other teachers.

A run of ``quality.py`` is only paired with runs made on the same teachers. Grids are spread over
sessions and machines; where a machine retrained the teachers identically (the records'
``teachers`` fingerprints match), their runs belong to one cell. This joins such files into the
one file ``../shared/tools/efficacy_report.py`` reads: each input may be limited to some tasks,
later inputs replace earlier runs of the same (task, pool, method, seed), and a (task, pool) cell
whose fingerprinted runs name more than one teacher set, or that mixes runs of different
schedules (the LR annealed per iteration, ``quality.py --lr-per-iteration``, or not; the epochs,
training subset, validation images and logit-KD temperature each run records), is refused. The
recommended configuration (``RECOMMENDED``) builds on each task a weighting that another method
name also builds (``recommended.measured_as``); each run of that method also stands in the
merged file as a run of ``RECOMMENDED``, marked ``measured_as``, where no run of
``RECOMMENDED`` itself has its task, pool and seed.

Usage (how docs/results/agent_efficacy.json is made, since session 16 with the classification
cells of the annealed-LR grid; docs/benchmarks.md, "Agent efficacy, paired over seeds"): earlier
files first, each limited to the tasks it contributes, e.g.
    python tools/benchmark/merge_efficacy.py --out docs/results/agent_efficacy.json \\
        docs/results/agent_efficacy_margin_2026-12-04.json:detection,trees,segmentation \\
        /tmp/agent_efficacy_2026-12-02.json:detection ... \\
        docs/results/agent_efficacy_cls_iterlr_2026-12-04.json
"""
import argparse
import json
from typing import Dict, List, Optional, Sequence, Tuple

from mmtkd.benchmark.recommended import RECOMMENDED, measured_as
from mmtkd.demo.tasks import save_json_atomically

RUN_KEY = ('task', 'pool', 'method', 'seed')


def parse_source(source: str) -> Tuple[str, Optional[List[str]]]:
    """``FILE`` or ``FILE:task[,task...]``.

    Args:
        source (str): The command-line argument.

    Returns:
        tuple[str, list[str] | None]: The path and the tasks to take (None: all).
    """
    path, _, tasks = source.partition(':')
    return path, tasks.split(',') if tasks else None


def merge_runs(sources: Sequence[Tuple[List[dict], Optional[List[str]]]]) -> List[dict]:
    """The runs of every source (only its tasks), later sources replacing earlier runs.

    Args:
        sources (Sequence[tuple[list[dict], list[str] | None]]): Each source's runs and tasks.

    Returns:
        list[dict]: The merged runs, in the order first seen.

    Raises:
        ValueError: If a (task, pool) cell holds runs with different teacher fingerprints.
    """
    merged: Dict[tuple, dict] = {}
    for runs, tasks in sources:
        for run in runs:
            if tasks is None or run['task'] in tasks:
                merged[tuple(run[k] for k in RUN_KEY)] = run
    teacher_sets: Dict[tuple, set] = {}
    for run in merged.values():
        if run.get('teachers'):
            cell = (run['task'], run['pool'])
            teacher_sets.setdefault(cell, set()).add(json.dumps(run['teachers'], sort_keys=True))
    mixed = {cell: sorted(sets) for cell, sets in teacher_sets.items() if len(sets) > 1}
    if mixed:
        raise ValueError('these cells hold runs made on different teachers, which cannot be '
                         f'paired; merge only files made on one teacher set per cell: {mixed}')
    schedules: Dict[tuple, set] = {}
    for run in merged.values():
        schedules.setdefault((run['task'], run['pool']), set()).add(schedule_of(run))
    mixed = {cell: sorted(kinds, key=str) for cell, kinds in schedules.items() if len(kinds) > 1}
    if mixed:
        raise ValueError('these cells hold runs of different schedules (' +
                         ', '.join(SCHEDULE_KEYS) + '), which cannot be paired; limit the '
                         f'sources to one schedule per cell: {mixed}')
    return list(merged.values())


#: what a run's schedule, evaluation and KD settings are recorded as (``quality.py``); runs
#: recorded before a key existed, or with the config's own setting, read None for it
#: (``lr_per_iteration``: False)
SCHEDULE_KEYS = ('lr_per_iteration', 'epochs', 'train_subset', 'val_images', 'kd_temperature',
                 'logit_kd_weight')


def schedule_of(run: dict) -> tuple:
    """A run's schedule: its :data:`SCHEDULE_KEYS` values, as ``(key, value)`` pairs."""
    return tuple(
        (key, run.get(key, False if key == 'lr_per_iteration' else None)) for key in SCHEDULE_KEYS)


def with_recommended_runs(runs: List[dict]) -> List[dict]:
    """The runs plus, for each run of the method the recommended configuration builds on its
    task (:func:`~mmtkd.benchmark.recommended.measured_as`), the same record under
    :data:`RECOMMENDED` (with ``measured_as``: the method that ran), unless a run of
    :data:`RECOMMENDED` itself has that task, pool and seed.

    Args:
        runs (list[dict]): Merged runs (:func:`merge_runs`).

    Returns:
        list[dict]: ``runs`` and the copies, in that order.
    """
    ran = {(r['task'], r['pool'], r['seed']) for r in runs if r['method'] == RECOMMENDED}
    same_config = {task: measured_as(task) for task in {r['task'] for r in runs}}
    copies = [
        dict(run, method=RECOMMENDED, measured_as=run['method']) for run in runs
        if run['method'] == same_config[run['task']] and (run['task'], run['pool'],
                                                          run['seed']) not in ran
    ]
    return runs + copies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('sources', nargs='+', help='FILE or FILE:task[,task...]')
    parser.add_argument('--out', required=True)
    args = parser.parse_args()
    sources = []
    for source in args.sources:
        path, tasks = parse_source(source)
        with open(path) as f:
            sources.append((json.load(f)['runs'], tasks))
    runs = with_recommended_runs(merge_runs(sources))
    save_json_atomically(dict(recommended=RECOMMENDED, runs=runs), args.out)
    print(f'{len(runs)} runs -> {args.out} (recommended: {RECOMMENDED})')
