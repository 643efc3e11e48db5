"""Quality benchmark: every weighting method against the same teachers, on the embedded real data.

For one demo task (``tools/demo_tasks.py``: Fashion-MNIST classification, composite detection
or tree-crown detection), trains the student without KD and with AVER, CA-MKD, EBKD, MTKD-RL
official (static and dynamic mixing) and MTKD-RL policy-gradient (PPO, compact state), for each
seed, with two teacher pools:

* ``clean``: the three demo teachers as trained (cached in ``--teacher-dir``);
* ``hard``: the same pool with one teacher made unreliable, in one of two ways
  (``--unreliable-mode``):

  - ``permuted`` (default): its class outputs are rolled (class ``c`` gets the score of class
    ``c - 1``: a confident teacher that is wrong on every sample, what a teacher trained with
    permuted labels is). Its features are left intact, so only logit KD is corrupted.
  - ``untrained``: it is replaced by its own architecture with a fresh random initialisation,
    so its features *and* its class outputs carry no knowledge. Detection needs this one:
    there, feature KD dominates the KD loss and a logit-only corruption barely matters (and the
    one-class tree-crown task has no classes to permute).

Every run is an MMEngine runner on the task's demo configs, with the student config's schedule
or one shortened by ``--epochs`` / ``--train-subset`` so the grid fits a 2-core CPU. Teachers
are only needed (and trained when missing from the cache) when a distillation method is asked
for. Results are appended to ``OUT/results.json`` as they come (an interrupted benchmark resumes
where it stopped), and the script prints (and writes to ``OUT/quality.md``) the mean and
standard deviation over seeds, plus the mean share of logit-KD weight that each method gave the
unreliable teacher, and draws them (``OUT/quality.png``).

Usage:
    python tools/benchmark/quality.py --task classification --epochs 1 --train-subset 15000 \\
        --seeds 0 1 2 --out work_dirs/benchmark/quality_cls
    python tools/benchmark/quality.py --task detection --epochs 2 --pools hard \\
        --unreliable-mode untrained --out work_dirs/benchmark/quality_det_untrained
    python tools/benchmark/quality.py --task trees --unreliable-mode untrained \\
        --out work_dirs/benchmark/quality_trees
"""
import argparse
import copy
import fcntl
import json
import math
import os
import os.path as osp
import sys
import time
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
from mmengine.config import Config
from mmengine.registry import DATASETS, init_default_scope

from mmtkd.analysis.plot_teacher_weights import find_scalars, read_weights
from mmtkd.demo.tasks import (TASKS, DemoTask, cached_teacher, load_cfg, save_json_atomically,
                              train_and_test)
from mmtkd.testing import save_model_checkpoint, strip_pretrained
from mmtkd.utils import safe_torch_load, save_atomically

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))

_MTKD = dict(type='mmtkd.MTKDRLWeighting')
METHODS: Dict[str, Optional[dict]] = {
    'nokd': None,
    'aver': dict(type='mmtkd.AverageWeighting'),
    'camkd': dict(type='mmtkd.ConfidenceWeighting'),
    'ebkd': dict(type='mmtkd.EntropyWeighting'),
    'mtkd_rl_static': dict(_MTKD, update='official', mixing='static'),
    'mtkd_rl_dynamic': dict(_MTKD, update='official', mixing='dynamic'),
    'mtkd_rl_ppo': dict(_MTKD, update='ppo', state='compact', mixing='none'),
    # the official agent with the divergence-aware heuristic inverted (larger teacher-student gap
    # -> less weight): the change investigated after the first hard-pool results
    'mtkd_rl_static_inverse': dict(_MTKD, update='official', mixing='static', divergence='inverse'),
    # the PPO agent with half the exploration noise: the first results showed it finds the
    # unreliable teacher, but the noise of its sampled weights costs the student
    'mtkd_rl_ppo_std05': dict(_MTKD, update='ppo', state='compact', mixing='none', init_std=0.5),
    # the official agent (dynamic mixing) without its warm-up, whose weights of 1 give three
    # teachers three times AVER's KD weight: does the per-sample weighting alone help?
    'mtkd_rl_dynamic_nowarmup': dict(_MTKD, update='official', mixing='dynamic', warmup_iters=0),
    # the reverse: AVER with the official agent's warm-up (every teacher weighs 1 for the first
    # quarter of the run; ``warmup_iters=None`` is filled in with that quarter)
    'aver_warmup': dict(type='mmtkd.AverageWeighting', warmup_iters=None),
}


def permute_class_outputs(src: str, dst: str, prefix: str, num_classes: int, shift: int = 1) -> str:
    """Write a copy of a teacher checkpoint whose class outputs are rolled by ``shift``.

    Args:
        src (str): The teacher's checkpoint.
        dst (str): Where the unreliable copy goes.
        prefix (str): State-dict prefix of the class-score layer (its weight and bias).
        num_classes (int): Classes per output group (RetinaNet stacks anchors x classes).
        shift (int): How far classes are rolled. Defaults to 1.

    Returns:
        str: ``dst``.
    """
    checkpoint = safe_torch_load(src, map_location='cpu')
    state = checkpoint['state_dict']
    for name in (prefix + 'weight', prefix + 'bias'):
        tensor = state[name]
        groups = tensor.shape[0] // num_classes
        grouped = tensor.reshape(groups, num_classes, *tensor.shape[1:])
        state[name] = torch.roll(grouped, shifts=shift, dims=1).reshape(tensor.shape).clone()
    save_atomically(checkpoint, dst)
    return dst


def untrained_teacher(task: DemoTask, teacher: str, dst: str, seed: int = 0) -> str:
    """Write a checkpoint of a teacher's architecture with its own seeded random initialisation.

    Args:
        task (DemoTask): The demo task whose teacher config is used.
        teacher (str): Teacher name (its config is ``teacher_<name>``).
        dst (str): Where the checkpoint goes.
        seed (int): Seed of the initialisation. Defaults to 0.

    Returns:
        str: ``dst``.
    """
    cfg = Config.fromfile(task.config(f'teacher_{teacher}'))
    return save_model_checkpoint(strip_pretrained(cfg.model), dst, seed, cfg.default_scope)


def unreliable_teacher(task: DemoTask, teacher: str, checkpoint: str, mode: str,
                       out_dir: str) -> str:
    """The hard pool's unreliable copy of ``teacher`` (see the module docstring for modes).

    Args:
        task (DemoTask): The demo task.
        teacher (str): The teacher made unreliable.
        checkpoint (str): Its trained checkpoint.
        mode (str): ``'permuted'`` or ``'untrained'``.
        out_dir (str): Where the unreliable checkpoint is written.

    Returns:
        str: Path of the unreliable checkpoint.
    """
    dst = osp.join(out_dir, f'{task.prefix}_{teacher}_{mode}.pth')
    if mode == 'permuted':
        if task.num_classes < 2:
            raise ValueError(f'the {task.name} task has one class: permuting its class outputs '
                             "changes nothing; use --unreliable-mode untrained")
        return permute_class_outputs(checkpoint, dst, task.class_scores, task.num_classes)
    if mode == 'untrained':
        return untrained_teacher(task, teacher, dst)
    raise ValueError(f"unreliable mode must be 'permuted' or 'untrained', got {mode!r}")


def teacher_pools(task: DemoTask, args) -> Dict[str, Dict[str, str]]:
    """The clean and hard pools' teacher checkpoints; teachers missing in the cache are trained.

    Args:
        task (DemoTask): The demo task.
        args: The parsed command line (``out``, ``data_root``, ``teacher_dir``, ``unreliable``,
            ``unreliable_mode``).

    Returns:
        dict: ``{pool: {teacher: checkpoint}}``.
    """
    for teacher in task.teachers:
        cached_teacher(task, teacher, osp.join(args.out, 'teachers'), args.data_root,
                       args.teacher_dir)
    clean = {t: task.teacher_checkpoint(args.teacher_dir, t) for t in task.teachers}
    hard = dict(clean)
    hard[args.unreliable] = unreliable_teacher(task, args.unreliable, clean[args.unreliable],
                                               args.unreliable_mode, args.out)
    return {'clean': clean, 'hard': hard}


def method_cfg(task: DemoTask, method: str, work_dir: str, args, seed: int,
               checkpoints: Optional[Dict[str, str]], iters: int):
    """The runner config of one (method, seed, pool) run."""
    role = 'student_nokd' if METHODS[method] is None else 'mtkd_rl'
    cfg = load_cfg(
        task,
        role,
        work_dir,
        args.data_root,
        args.teacher_dir,
        args.epochs,
        seed,
        teacher_checkpoints=checkpoints)
    if args.train_subset:
        cfg.train_dataloader.dataset.indices = args.train_subset
    if METHODS[method] is not None:
        weighting = copy.deepcopy(METHODS[method])
        if weighting['type'] == _MTKD['type']:
            # keep the config's MTKD-RL settings (e.g. state normalisation), shorten its
            # schedule: warm-up for the first quarter, then an agent update every tenth of the
            # run (about 8) and at every epoch end (the hook's own rule); the method's own
            # settings come last
            schedule = dict(
                cfg.model.weighting,
                warmup_iters=iters // 4,
                interval=max(1, iters // 10),
                seed=seed)
            schedule.pop('warmup_epochs', None)
            weighting = dict(schedule, **weighting)
        elif weighting.get('warmup_iters', 0) is None:
            weighting['warmup_iters'] = iters // 4  # the same warm-up as MTKD-RL's above
        cfg.model.weighting = weighting
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=-1, save_last=False)
    return cfg


def student_schedule(task: DemoTask, args) -> Tuple[int, int]:
    """Epochs and training iterations of the (possibly subset) student run.

    Args:
        task (DemoTask): The demo task.
        args: The parsed command line (``epochs``, ``train_subset`` and the folders).

    Returns:
        tuple[int, int]: ``(epochs, iterations)``; the epochs are ``args.epochs`` or the
        student config's own.
    """
    cfg = load_cfg(task, 'student_nokd', args.out, args.data_root, args.teacher_dir, args.epochs)
    init_default_scope(cfg.default_scope)
    images = len(DATASETS.build(cfg.train_dataloader.dataset))
    per_epoch = math.ceil(
        min(images, args.train_subset or images) / cfg.train_dataloader.batch_size)
    return cfg.train_cfg.max_epochs, cfg.train_cfg.max_epochs * per_epoch


def unreliable_share(work_dir: str, unreliable: str) -> Optional[float]:
    """Mean share of logit-KD weight on the unreliable teacher over the second half of training
    (after any warm-up), from the run's logged scalars; None when nothing was logged."""
    try:
        series = read_weights(find_scalars(work_dir))['weight_logit/']
    except FileNotFoundError:
        return None
    if unreliable not in series:
        return None
    steps = len(series[unreliable])
    totals = np.sum([[w for _, w in values] for values in series.values()], axis=0)
    share = np.array([w for _, w in series[unreliable]]) / np.maximum(totals, 1e-12)
    return float(share[steps // 2:].mean())


def metric_values(task: DemoTask, results: Dict[str, dict], seeds: List[int],
                  pools: List[str]) -> Dict[str, Dict[str, List[float]]]:
    """The headline metric (in the task's printed scale) of every finished run.

    Args:
        task (DemoTask): The task.
        results (dict): ``{pool/method/seed: metrics}``.
        seeds (list[int]): Seeds to collect.
        pools (list[str]): Pools to collect; the student alone is the same run in every pool.

    Returns:
        dict: ``{method: {pool: [value per finished seed]}}`` in :data:`METHODS` order.
    """
    key = task.metrics[0][0]
    values = {}
    for method in [m for m in METHODS if any(k.split('/')[1] == m for k in results)]:
        runs = {
            pool: [f'{pool if METHODS[method] else "clean"}/{method}/{seed}' for seed in seeds]
            for pool in pools
        }
        values[method] = {
            pool: [results[r][key] * task.scale for r in runs[pool] if r in results]
            for pool in pools
        }
    return values


def summarise(task: DemoTask, results: Dict[str, dict], seeds: List[int], pools: List[str],
              note: str) -> str:
    """Markdown table: mean +- std of the headline metric per method and pool."""
    label = task.metrics[0][1]
    lines = [
        f'{task.title}; {note}', '',
        '| method | ' + ' | '.join(f'{pool}: {label} (%)' for pool in pools) +
        ' | hard: weight share of the unreliable teacher |', '|---|' + '---:|' * (len(pools) + 1)
    ]
    for method, per_pool in metric_values(task, results, seeds, pools).items():
        cells = [
            f'{np.mean(v):.2f} +- {np.std(v):.2f} (n={len(v)})' if v else 'not run'
            for v in per_pool.values()
        ]
        shares = [
            results[f'hard/{method}/{seed}'].get('unreliable_share') for seed in seeds
            if f'hard/{method}/{seed}' in results
        ]
        shares = [s for s in shares if s is not None]
        cells.append(f'{np.mean(shares):.3f}' if shares else '-')
        lines.append(f'| {method} | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def plot_summary(task: DemoTask, results: Dict[str, dict], seeds: List[int], pools: List[str],
                 out: str) -> str:
    """Plot of the same numbers: per method and pool the mean over seeds with the standard
    deviation as error bar, and every seed as a dot.

    Args:
        task (DemoTask): The task.
        results (dict): ``{pool/method/seed: metrics}``.
        seeds (list[int]): Seeds to show.
        pools (list[str]): Pools to show.
        out (str): PNG path.

    Returns:
        str: ``out``.
    """
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    values = metric_values(task, results, seeds, pools)
    offset = 0.5 / len(pools)
    fig, ax = plt.subplots(figsize=(1.1 * len(values) + 2, 4))
    for i, pool in enumerate(pools):
        xs = np.arange(len(values)) + (i - (len(pools) - 1) / 2) * offset
        runs = [v[pool] for v in values.values()]
        ax.errorbar(
            xs, [np.mean(r) if r else np.nan for r in runs],
            yerr=[np.std(r) if r else 0 for r in runs],
            fmt='o',
            capsize=4,
            label=f'{pool} (mean +- std)')
        for x, r in zip(xs, runs):
            ax.scatter([x] * len(r), r, color='k', s=6, alpha=0.5, zorder=3)
    ax.set_xticks(np.arange(len(values)), list(values), rotation=30, ha='right')
    ax.set_ylabel(f'{task.metrics[0][1]} (%)')
    ax.set_title(f'{task.title}, seeds {seeds}', fontsize=9)
    ax.grid(axis='y', alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def record_result(results_file: str, key: str, metrics: dict) -> Dict[str, dict]:
    """Add one run's metrics to the results file under a lock, so that several benchmark
    processes can fill one grid (e.g. one per seed) without losing each other's runs.

    Args:
        results_file (str): The JSON results file (created if missing).
        key (str): ``pool/method/seed``.
        metrics (dict): The run's metrics.

    Returns:
        dict: All results now in the file.
    """
    with open(results_file + '.lock', 'w') as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        results = {}
        if osp.isfile(results_file):
            with open(results_file) as f:
                results = json.load(f)
        results[key] = metrics
        save_json_atomically(results, results_file)
    return results


def check_settings(args) -> None:
    """Refuse to resume into an output folder whose results came from other settings (they would
    be mixed into one table); record the settings of a new folder.

    Args:
        args: The parsed command line (``out`` and the settings that change results).
    """
    settings = dict(
        task=args.task,
        epochs=args.epochs,
        train_subset=args.train_subset,
        unreliable=args.unreliable,
        unreliable_mode=args.unreliable_mode)
    path = osp.join(args.out, 'settings.json')
    if osp.isfile(path):
        with open(path) as f:
            stored = json.load(f)
        if stored != settings:
            sys.exit(f'[quality] {args.out} holds results of other settings ({stored}); '
                     f'these are {settings}: give another --out')
    else:
        save_json_atomically(settings, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--task', choices=sorted(TASKS), default='classification')
    parser.add_argument('--methods', nargs='+', choices=list(METHODS), default=list(METHODS))
    parser.add_argument('--pools', nargs='+', choices=('clean', 'hard'), default=['clean', 'hard'])
    parser.add_argument('--seeds', nargs='+', type=int, default=[0, 1, 2])
    parser.add_argument(
        '--epochs', type=int, help="student training epochs (default: the student config's)")
    parser.add_argument(
        '--train-subset', type=int, help='train on the first N training images only')
    parser.add_argument(
        '--unreliable', default='res18', help='the teacher made unreliable in the hard pool')
    parser.add_argument(
        '--unreliable-mode',
        choices=('permuted', 'untrained'),
        default='permuted',
        help='how: class outputs rolled, or a randomly initialised copy')
    parser.add_argument('--data-root')
    parser.add_argument(
        '--teacher-dir',
        default='work_dirs/demo/teachers',
        help="teacher cache (the demo's; teachers missing there are trained)")
    parser.add_argument('--out', default='work_dirs/benchmark/quality')
    args = parser.parse_args()
    task = TASKS[args.task]
    args.data_root = args.data_root or task.data_root
    os.makedirs(args.out, exist_ok=True)
    task.build_data(args.data_root)
    pools = teacher_pools(task, args) if any(METHODS[m] for m in args.methods) else {}
    args.epochs, iters = student_schedule(task, args)
    check_settings(args)
    results_file = osp.join(args.out, 'results.json')
    results = {}
    if osp.isfile(results_file):
        with open(results_file) as f:
            results = json.load(f)
    for seed in args.seeds:
        for pool in args.pools:
            for method in args.methods:
                if METHODS[method] is None and pool != 'clean':
                    continue  # no teachers, nothing to repeat
                key = f'{pool}/{method}/{seed}'
                if key in results:
                    continue
                print(f'[quality] {key}')
                work_dir = osp.join(args.out, 'runs', pool, method, f'seed{seed}')
                start = time.time()
                metrics = train_and_test(
                    task, method_cfg(task, method, work_dir, args, seed, pools.get(pool), iters))
                metrics.update(
                    minutes=(time.time() - start) / 60,
                    unreliable_share=unreliable_share(work_dir, args.unreliable))
                results = record_result(results_file, key, metrics)
    note = (f'student trained {args.epochs} epoch(s) on '
            f'{args.train_subset or "all"} training images, seeds {args.seeds}, CPU; '
            f'hard pool: {args.unreliable} {args.unreliable_mode}')
    table = summarise(task, results, args.seeds, args.pools, note)
    print(table)
    with open(osp.join(args.out, 'quality.md'), 'w') as f:
        f.write(table + '\n')
    figure = plot_summary(task, results, args.seeds, args.pools, osp.join(args.out, 'quality.png'))
    print(f'[quality] wrote {figure}')


if __name__ == '__main__':
    main()
