"""KD loss values with the demo's *trained* teachers in fp32 / bf16 / fp16, on real images.

``speed.py --precision-check`` measures the headline setting with random-weight teachers, whose
detection heads output their prior everywhere, so their logit KD is close to zero and its
relative change says little. This script runs the same check (``precision_check``: the same
distiller, student and batch for every precision; only ``teacher_autocast`` changes) on the
demo's composite-detection (or Fashion-MNIST) distiller with the teachers ``tools/demo.py``
trained and cached, over a few real training batches, and reports the mean over batches.

Usage:
    python tools/benchmark/teacher_precision.py [--task detection] [--batches 4]
"""
import argparse
import itertools
import os
import os.path as osp
import sys

import numpy as np
import torch
from mmengine.registry import MODELS, init_default_scope
from mmengine.runner import Runner

from mmtkd.benchmark.speed import PRECISIONS, format_precision_table, precision_check
from mmtkd.demo.tasks import TASKS, load_cfg, save_json_atomically

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--task', choices=sorted(TASKS), default='detection')
    parser.add_argument('--batches', type=int, default=4, help='real training batches')
    parser.add_argument(
        '--precisions',
        nargs='+',
        default=list(PRECISIONS),
        choices=PRECISIONS,
        help="fp32 first: it is the reference")
    parser.add_argument('--data-root')
    parser.add_argument(
        '--teacher-dir',
        default='work_dirs/demo/teachers',
        help="the demo's teacher cache (run tools/demo.py first)")
    parser.add_argument('--out', default='work_dirs/benchmark/teacher_precision')
    args = parser.parse_args()
    task = TASKS[args.task]
    data_root = args.data_root or task.data_root
    missing = [
        t for t in task.teachers if not osp.isfile(task.teacher_checkpoint(args.teacher_dir, t))
    ]
    if missing:
        sys.exit(f'[precision] no trained {task.prefix} teachers {missing} in {args.teacher_dir}: '
                 f'run tools/demo.py --task {args.task} first')
    task.build_data(data_root)
    cfg = load_cfg(task, 'mtkd_rl', args.out, data_root, args.teacher_dir)
    cfg.model.weighting = dict(type='mmtkd.AverageWeighting')
    init_default_scope(cfg.default_scope)
    device = 'cuda' if torch.cuda.is_available() else 'cpu'
    distiller = MODELS.build(cfg.model).to(device)
    distiller.train()
    loader = Runner.build_dataloader(cfg.train_dataloader, seed=0)
    per_batch = [
        precision_check(
            distiller, batch, iters=3, warmup=1, device=device, precisions=args.precisions)
        for batch in itertools.islice(loader, args.batches)
    ]
    results = {
        precision: {
            key: float(np.mean([r[precision][key] for r in per_batch]))
            for key in per_batch[0][precision]
        }
        for precision in args.precisions
    }
    table = format_precision_table(
        results, f'{task.caption()}: demo distiller with its trained teachers, mean over '
        f'{len(per_batch)} real training batches of {cfg.train_dataloader.batch_size}, {device}')
    print(table)
    os.makedirs(args.out, exist_ok=True)
    save_json_atomically(
        dict(results=results, per_batch=per_batch, table=table, args=vars(args), device=device),
        osp.join(args.out, 'precision.json'))


if __name__ == '__main__':
    main()
