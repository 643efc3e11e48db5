"""The mmtkd demo: multi-teacher distillation end to end on real images, on CPU.

The main job (``--task detection``, the default):

1. builds the composite detection set: real Fashion-MNIST objects on real photo crops
   (``tools/data/build_composite.py``, COCO json);
2. trains three RetinaNet teachers with different backbones once (cached in
   ``WORK_DIR/teachers``, reused on later runs);
3. trains the narrow RetinaNet student alone and with MTKD-RL (and with AVER if
   ``--with-aver`` is given);
4. evaluates everything with COCO mAP on the validation images and prints one table (also saved
   as JSON);
5. plots the MTKD-RL teacher weights over training.

``--task classification`` runs the same pipeline on Fashion-MNIST (top-1 accuracy), ``--task
trees`` on the tree crowns of real aerial photos (``tools/data/build_tree_crowns.py``).
Students, logs, the table and the plot of each run go to ``WORK_DIR/runs/<timestamp>/``; earlier
runs are never overwritten.

Usage:
    python tools/demo.py [--task detection|trees|classification] [--work-dir work_dirs/demo]
                         [--epochs N] [--with-aver] [--fresh]
"""
import argparse
import os.path as osp
import shutil
import time

from mmtkd.analysis.plot_teacher_weights import find_scalars, plot, read_weights
from mmtkd.demo.tasks import (TASKS, cached_teacher, count_params, load_cfg, save_json_atomically,
                              train_and_test)

STUDENTS = (('student (no KD)', 'student_nokd'), ('student + AVER', 'aver'), ('student + MTKD-RL',
                                                                              'mtkd_rl'))


def format_table(task, rows, epochs_note: str, minutes: float, figure: str) -> str:
    """The demo's result table (markdown)."""
    labels = [label for _, label in task.metrics]
    lines = [
        '', f'{task.caption()}, {epochs_note}, CPU',
        '| model | params (M) | ' + ' | '.join(f'{label} (%)' for label in labels) + ' |',
        '|---|---:|' + '---:|' * len(labels)
    ]
    for name, params, metrics in rows:
        values = ' | '.join(f'{metrics[key] * task.scale:.2f}' for key, _ in task.metrics)
        lines.append(f'| {name} | {params:.2f} | {values} |')
    lines += [f'teacher-weight plot: {figure}', f'total time: {minutes:.1f} min']
    return '\n'.join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description='mmtkd demo on the embedded real data (CPU)')
    parser.add_argument('--task', choices=sorted(TASKS), default='detection')
    parser.add_argument('--work-dir', default='work_dirs/demo')
    parser.add_argument(
        '--data-root',
        help='data folder (default: data/composite for '
        'detection, data/tree_crowns for trees, data/fashion_mnist for '
        'classification)')
    parser.add_argument('--epochs', type=int, help="training epochs (default: the configs')")
    parser.add_argument(
        '--with-aver',
        action='store_true',
        help='also distil with AVER (equal teacher weights) for comparison')
    parser.add_argument(
        '--subset', type=int, help='use only the first N images of each split (a quick smoke run)')
    parser.add_argument(
        '--fresh',
        action='store_true',
        help='retrain the teachers (moves the old cache aside, never deletes)')
    args = parser.parse_args()
    task = TASKS[args.task]
    data_root = args.data_root or task.data_root
    teacher_dir = osp.join(args.work_dir, 'teachers')
    start = time.time()
    steps = 1 + len(task.teachers) + (3 if args.with_aver else 2)
    step = iter(range(1, steps + 1))

    print(f'[demo] step {next(step)}/{steps}: data ({data_root})')
    task.build_data(data_root)
    if args.fresh:
        for teacher in task.teachers:
            ckpt = task.teacher_checkpoint(teacher_dir, teacher)
            for path in (ckpt, osp.splitext(ckpt)[0] + '.json'):
                if osp.isfile(path):
                    aside = f'{path}.{time.strftime("%Y%m%d_%H%M%S")}'
                    shutil.move(path, aside)
                    print(f'[demo] old teacher file moved to {aside}')

    rows = []
    for teacher in task.teachers:
        print(f'[demo] step {next(step)}/{steps}: teacher {teacher}')
        metrics = cached_teacher(task, teacher, args.work_dir, data_root, teacher_dir, args.epochs,
                                 args.subset)
        rows.append((f'teacher {teacher}', count_params(task, f'teacher_{teacher}'), metrics))
    run_dir = osp.join(args.work_dir, 'runs', time.strftime('%Y%m%d_%H%M%S'))
    while osp.exists(run_dir):  # never reuse an earlier run's folder
        run_dir += '_'
    student_params = count_params(task, 'student_nokd')
    for label, role in STUDENTS:
        if role == 'aver' and not args.with_aver:
            continue
        print(f'[demo] step {next(step)}/{steps}: {label}')
        cfg = load_cfg(
            task,
            role,
            osp.join(run_dir, role),
            data_root,
            teacher_dir,
            args.epochs,
            subset=args.subset)
        rows.append((label, student_params, train_and_test(task, cfg)))

    mtkd_dir = osp.join(run_dir, 'mtkd_rl')
    figure = plot(
        read_weights(find_scalars(mtkd_dir)), osp.join(mtkd_dir, 'teacher_weights.png'),
        f'MTKD-RL, {task.caption()}')
    minutes = (time.time() - start) / 60
    epochs_note = f'{args.epochs} epochs each' if args.epochs else "the configs' schedules"
    print(format_table(task, rows, epochs_note, minutes, figure))
    save_json_atomically(
        dict(
            task=task.name,
            epochs=args.epochs,
            minutes=minutes,
            rows=[
                dict(model=name, params_m=params, metrics={
                    k: metrics[k]
                    for k, _ in task.metrics
                }) for name, params, metrics in rows
            ]), osp.join(run_dir, 'demo_results.json'))


if __name__ == '__main__':
    main()
