"""The mmtkd demo: multi-teacher distillation end to end on real Fashion-MNIST images, on CPU.

1. lays out Fashion-MNIST from the Debian package (``tools/data/build_fashion_mnist.py``);
2. trains three teachers of different architectures once (cached in ``work_dirs/demo/teachers``);
3. trains the student alone and with MTKD-RL (official agent), and with AVER if
   ``--with-aver`` is given;
4. evaluates everything on the 10k test images and prints one table (also saved as JSON);
5. plots the MTKD-RL teacher weights over training.

Students, logs, the table and the plot of each run go to ``WORK_DIR/runs/<timestamp>/``.

Usage:
    python tools/demo.py [--work-dir work_dirs/demo] [--epochs 2] [--with-aver] [--fresh]
"""
import argparse
import json
import os.path as osp
import shutil
import sys
import time

from mmengine.config import Config
from mmengine.runner import Runner

import mmtkd  # noqa: F401
from mmtkd.utils import save_atomically

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, osp.join(ROOT, 'tools'))
from analysis.plot_teacher_weights import find_scalars, plot, read_weights  # noqa: E402
from data.build_fashion_mnist import build as build_fashion_mnist  # noqa: E402

CONFIGS = osp.join(ROOT, 'configs', 'demo')
TEACHERS = ('res18', 'res34', 'regnetx')
STUDENTS = (('student (no KD)', 'fmnist_student_nokd.py'),
            ('student + AVER', 'fmnist_res18_3teachers_aver.py'),
            ('student + MTKD-RL', 'fmnist_res18_3teachers_mtkd_rl.py'))
OPTIONAL = {'student + AVER': 'with_aver'}


def load_cfg(name: str, work_dir: str, args) -> Config:
    cfg = Config.fromfile(osp.join(CONFIGS, name))
    cfg.work_dir = work_dir
    cfg.train_cfg.max_epochs = args.epochs
    cfg.param_scheduler.T_max = args.epochs
    cfg.train_dataloader.dataset.data_root = args.data_root
    cfg.val_dataloader.dataset.data_root = args.data_root
    cfg.test_dataloader.dataset.data_root = args.data_root
    if 'teachers' in cfg.model:
        for teacher, spec in cfg.model.teachers.items():
            spec.checkpoint = osp.join(args.work_dir, 'teachers', f'{teacher}.pth')
    return cfg


def train_and_test(cfg: Config) -> float:
    """Train with an MMEngine runner, then test the final model; returns top-1 accuracy."""
    runner = Runner.from_cfg(cfg)
    runner.train()
    return runner.test()['accuracy/top1']


def teacher(name: str, args) -> float:
    """Train a teacher unless cached; returns its test accuracy (cached too)."""
    cache = osp.join(args.work_dir, 'teachers')
    ckpt, metric_file = osp.join(cache, f'{name}.pth'), osp.join(cache, f'{name}.json')
    if osp.isfile(ckpt) and osp.isfile(metric_file):
        with open(metric_file) as f:
            accuracy = json.load(f)['accuracy/top1']
        print(f'[demo] teacher {name}: cached ({ckpt}), top-1 {accuracy:.2f}')
        return accuracy
    print(f'[demo] training teacher {name} ({args.epochs} epochs)...')
    cfg = load_cfg(f'fmnist_teacher_{name}.py', osp.join(args.work_dir, f'teacher_{name}'), args)
    runner = Runner.from_cfg(cfg)
    runner.train()
    accuracy = runner.test()['accuracy/top1']
    save_atomically({'state_dict': runner.model.state_dict(),
                     'meta': {'accuracy/top1': accuracy}}, ckpt)
    with open(metric_file, 'w') as f:
        json.dump({'accuracy/top1': accuracy}, f)
    return accuracy


def params(cfg_name: str) -> float:
    cfg = Config.fromfile(osp.join(CONFIGS, cfg_name))
    from mmengine.registry import MODELS
    model = MODELS.build(dict(cfg.model, _scope_='mmpretrain'))
    return sum(p.numel() for p in model.parameters()) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description='mmtkd demo on Fashion-MNIST (CPU)')
    parser.add_argument('--work-dir', default='work_dirs/demo')
    parser.add_argument('--data-root', default='data/fashion_mnist')
    parser.add_argument('--epochs', type=int, default=2)
    parser.add_argument('--with-aver', action='store_true',
                        help='also distil with AVER (equal teacher weights) for comparison')
    parser.add_argument('--fresh', action='store_true',
                        help='retrain the teachers (moves the old cache aside, never deletes)')
    args = parser.parse_args()
    start = time.time()
    build_fashion_mnist('/usr/share/datasets/fashion-mnist', args.data_root)
    cache = osp.join(args.work_dir, 'teachers')
    if args.fresh and osp.isdir(cache):
        aside = f'{cache}.{time.strftime("%Y%m%d_%H%M%S")}'
        shutil.move(cache, aside)
        print(f'[demo] old teacher cache moved to {aside}')

    rows = [(f'teacher {name}', params(f'fmnist_teacher_{name}.py'), teacher(name, args))
            for name in TEACHERS]
    # every run gets its own folder: earlier students, logs and plots are never overwritten
    run_dir = osp.join(args.work_dir, 'runs', time.strftime('%Y%m%d_%H%M%S'))
    for label, cfg_name in STUDENTS:
        if label in OPTIONAL and not getattr(args, OPTIONAL[label]):
            continue
        print(f'[demo] training {label} ({args.epochs} epochs)...')
        work_dir = osp.join(run_dir, osp.splitext(cfg_name)[0])
        rows.append((label, params('fmnist_student_nokd.py'),
                     train_and_test(load_cfg(cfg_name, work_dir, args))))

    mtkd_dir = osp.join(run_dir, 'fmnist_res18_3teachers_mtkd_rl')
    figure = plot(read_weights(find_scalars(mtkd_dir)),
                  osp.join(mtkd_dir, 'teacher_weights.png'), 'MTKD-RL on Fashion-MNIST')
    minutes = (time.time() - start) / 60
    table = ['', f'Fashion-MNIST test set (10k images), {args.epochs} epochs each, CPU',
             f'| {"model":<20} | {"params (M)":>10} | {"top-1 (%)":>9} |',
             f'|{"-" * 22}|{"-" * 12}|{"-" * 11}|']
    table += [f'| {label:<20} | {p:>10.3f} | {acc:>9.2f} |' for label, p, acc in rows]
    table += [f'teacher-weight plot: {figure}', f'total time: {minutes:.1f} min']
    print('\n'.join(table))
    with open(osp.join(run_dir, 'demo_results.json'), 'w') as f:
        json.dump(dict(rows=[dict(model=l, params_m=p, top1=a) for l, p, a in rows],
                       epochs=args.epochs, minutes=minutes), f, indent=2)


if __name__ == '__main__':
    main()
