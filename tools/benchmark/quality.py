"""Quality benchmark: every weighting method against the same teachers, on the embedded real data.

For one demo task (``tools/demo_tasks.py``: Fashion-MNIST classification or composite
detection), trains the student without KD and with AVER, CA-MKD, EBKD, MTKD-RL official (static
and dynamic mixing) and MTKD-RL policy-gradient (PPO, compact state), for each seed, with two
teacher pools:

* ``clean``: the three demo teachers as trained (cached in ``--teacher-dir``);
* ``hard``: the same pool with one teacher made unreliable by permuting its class outputs (class
  ``c`` gets the score of class ``c - 1``: a confident teacher that is wrong on every sample,
  what a teacher trained with permuted labels is). Its features are left intact.

Every run is an MMEngine runner on the task's demo configs, with the schedule shortened by
``--epochs`` / ``--train-subset`` so the grid fits a 2-core CPU. Results are appended to
``OUT/results.json`` as they come (an interrupted benchmark resumes where it stopped), and the
script prints (and writes to ``OUT/quality.md``) the mean and standard deviation over seeds, plus
the mean share of logit-KD weight that each method gave the unreliable teacher.

Usage:
    python tools/benchmark/quality.py --task classification --epochs 1 --train-subset 15000 \\
        --seeds 0 1 2 --out work_dirs/benchmark/quality_cls
"""
import argparse
import copy
import json
import os
import os.path as osp
import sys
import time
from typing import Dict, List, Optional

import numpy as np
import torch
from mmengine.registry import DATASETS, init_default_scope

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, osp.join(ROOT, 'tools'))
from analysis.plot_teacher_weights import find_scalars, read_weights  # noqa: E402
from demo_tasks import (TASKS, DemoTask, cached_teacher, load_cfg,  # noqa: E402
                        save_json_atomically, train_and_test)

from mmtkd.utils import save_atomically  # noqa: E402

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
    'mtkd_rl_static_inverse': dict(_MTKD, update='official', mixing='static',
                                   divergence='inverse'),
}
# where each task keeps its class scores: (state-dict key prefix, outputs per location / class)
CLASS_OUTPUTS = {'classification': 'head.fc.', 'detection': 'bbox_head.retina_cls.'}
NUM_CLASSES = 10


def permute_class_outputs(src: str, dst: str, prefix: str, num_classes: int,
                          shift: int = 1) -> str:
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
    checkpoint = torch.load(src, map_location='cpu', weights_only=False)
    state = checkpoint['state_dict']
    for name in (prefix + 'weight', prefix + 'bias'):
        tensor = state[name]
        groups = tensor.shape[0] // num_classes
        grouped = tensor.reshape(groups, num_classes, *tensor.shape[1:])
        state[name] = torch.roll(grouped, shifts=shift, dims=1).reshape(tensor.shape).clone()
    save_atomically(checkpoint, dst)
    return dst


def method_cfg(task: DemoTask, method: str, work_dir: str, args, seed: int,
               checkpoints: Dict[str, str], iters: int):
    """The runner config of one (method, seed, pool) run."""
    role = 'student_nokd' if METHODS[method] is None else 'mtkd_rl'
    cfg = load_cfg(task, role, work_dir, args.data_root, args.teacher_dir, args.epochs, seed,
                   teacher_checkpoints=checkpoints)
    if args.train_subset:
        cfg.train_dataloader.dataset.indices = args.train_subset
    if METHODS[method] is not None:
        weighting = copy.deepcopy(METHODS[method])
        if weighting['type'] == _MTKD['type']:
            # keep the config's MTKD-RL settings (e.g. state normalisation), shorten its
            # schedule: warm-up for the first quarter, about 8 agent updates afterwards
            weighting = dict(cfg.model.weighting, **weighting)
            weighting.pop('warmup_epochs', None)
            weighting.update(warmup_iters=iters // 4, interval=max(1, iters // 10), seed=seed)
        cfg.model.weighting = weighting
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=-1, save_last=False)
    return cfg


def iters_per_epoch(task: DemoTask, args) -> int:
    """Training iterations per epoch of the (possibly subset) student run."""
    cfg = load_cfg(task, 'student_nokd', args.out, args.data_root, args.teacher_dir)
    init_default_scope(cfg.default_scope)
    images = len(DATASETS.build(cfg.train_dataloader.dataset))
    return max(1, min(images, args.train_subset or images) // cfg.train_dataloader.batch_size)


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


def summarise(task: DemoTask, results: Dict[str, dict], seeds: List[int], pools: List[str],
              note: str) -> str:
    """Markdown table: mean +- std of the headline metric per method and pool."""
    key, label = task.metrics[0]
    lines = [f'{task.title}; {note}',
             '',
             '| method | ' + ' | '.join(f'{pool}: {label} (%)' for pool in pools) +
             ' | hard: weight share of the unreliable teacher |',
             '|---|' + '---:|' * (len(pools) + 1)]
    for method in [m for m in METHODS if any(k.split('/')[1] == m for k in results)]:
        cells = []
        for pool in pools:
            values = [results[f'{pool if METHODS[method] else "clean"}/{method}/{seed}'][key]
                      * task.scale for seed in seeds
                      if f'{pool if METHODS[method] else "clean"}/{method}/{seed}' in results]
            cells.append(f'{np.mean(values):.2f} +- {np.std(values):.2f} (n={len(values)})'
                         if values else 'not run')
        shares = [results[f'hard/{method}/{seed}'].get('unreliable_share') for seed in seeds
                  if f'hard/{method}/{seed}' in results]
        shares = [s for s in shares if s is not None]
        cells.append(f'{np.mean(shares):.3f}' if shares else '-')
        lines.append(f'| {method} | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--task', choices=sorted(TASKS), default='classification')
    parser.add_argument('--methods', nargs='+', choices=list(METHODS), default=list(METHODS))
    parser.add_argument('--pools', nargs='+', choices=('clean', 'hard'),
                        default=['clean', 'hard'])
    parser.add_argument('--seeds', nargs='+', type=int, default=[0, 1, 2])
    parser.add_argument('--epochs', type=int, default=1, help='student training epochs')
    parser.add_argument('--train-subset', type=int,
                        help='train on the first N training images only')
    parser.add_argument('--unreliable', default='res18',
                        help='the teacher whose class outputs are permuted in the hard pool')
    parser.add_argument('--data-root')
    parser.add_argument('--teacher-dir', default='work_dirs/demo/teachers',
                        help="teacher cache (the demo's; teachers missing there are trained)")
    parser.add_argument('--out', default='work_dirs/benchmark/quality')
    args = parser.parse_args()
    task = TASKS[args.task]
    args.data_root = args.data_root or task.data_root
    os.makedirs(args.out, exist_ok=True)
    task.build_data(args.data_root)
    for teacher in task.teachers:
        cached_teacher(task, teacher, osp.join(args.out, 'teachers'), args.data_root,
                       args.teacher_dir)
    clean = {t: task.teacher_checkpoint(args.teacher_dir, t) for t in task.teachers}
    hard = dict(clean)
    hard[args.unreliable] = permute_class_outputs(
        clean[args.unreliable], osp.join(args.out, f'{task.prefix}_{args.unreliable}_permuted.pth'),
        CLASS_OUTPUTS[task.name], NUM_CLASSES)
    pools = {'clean': clean, 'hard': hard}

    results_file = osp.join(args.out, 'results.json')
    results = {}
    if osp.isfile(results_file):
        with open(results_file) as f:
            results = json.load(f)
    iters = args.epochs * iters_per_epoch(task, args)
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
                metrics = train_and_test(task, method_cfg(task, method, work_dir, args, seed,
                                                          pools[pool], iters))
                metrics.update(minutes=(time.time() - start) / 60,
                               unreliable_share=unreliable_share(work_dir, args.unreliable))
                results[key] = metrics
                save_json_atomically(results, results_file)
    note = (f'student trained {args.epochs} epoch(s) on '
            f'{args.train_subset or "all"} training images, seeds {args.seeds}, CPU')
    table = summarise(task, results, args.seeds, args.pools, note)
    print(table)
    with open(osp.join(args.out, 'quality.md'), 'w') as f:
        f.write(table + '\n')


if __name__ == '__main__':
    main()
