"""The mmtkd demo: multi-teacher distillation end to end on real images, on CPU.

The main job (``--task detection``, the default):

1. builds the composite detection set: real Fashion-MNIST objects on real photo crops
   (``tools/data/build_composite.py``, COCO json);
2. trains three RetinaNet teachers with different backbones once (cached in
   ``WORK_DIR/teachers``, reused on later runs);
3. trains the narrow RetinaNet student alone, with MTKD-RL's official agent and with the agent
   mmtkd recommends (the credit agent; and with AVER if ``--with-aver`` is given);
4. evaluates everything with COCO mAP on the validation images and prints one table (also saved
   as JSON);
5. plots each agent's teacher weights over training.

``--task classification`` runs the same pipeline on Fashion-MNIST (top-1 accuracy), ``--task
segmentation`` on the composite set's label maps (mIoU), ``--task trees`` on the tree crowns of
real aerial photos (``tools/data/build_tree_crowns.py``).
Students, logs, the table and the plots of each run go to ``WORK_DIR/runs/<timestamp>/``; earlier
runs are never overwritten.

Usage:
    python tools/demo.py [--task detection|segmentation|trees|classification]
                         [--work-dir work_dirs/demo] [--epochs N] [--with-aver] [--fresh]
"""
import argparse
import os.path as osp
import shutil
import time
from typing import NamedTuple, Optional, Sequence

from mmtkd.analysis.plot_teacher_weights import find_scalars, plot, read_weights
from mmtkd.demo.tasks import (TASKS, cached_teacher, count_params, load_cfg, save_json_atomically,
                              train_and_test)


class DemoStudent(NamedTuple):
    """A student the demo trains."""
    label: str  #: its row in the table
    role: str  #: its config role (``configs/demo/<task prefix>_<role>.py``)
    plot_title: Optional[str]  #: title of its teacher-weight plot; None without an agent


#: the student alone, AVER (with ``--with-aver``), MTKD-RL with the paper's agent, and with the
#: agent mmtkd recommends for the task's family (``<distiller>_credit.py``, which inherits the
#: shipped ``configs/mtkd_rl/_base_`` agent file)
STUDENTS = (
    DemoStudent('student (no KD)', 'student_nokd', None),
    DemoStudent('student + AVER', 'aver', None),
    DemoStudent('student + MTKD-RL (official agent)', 'mtkd_rl', 'MTKD-RL, official agent'),
    DemoStudent('student + MTKD-RL (credit agent, recommended)', 'credit', 'MTKD-RL, credit agent'),
)


def format_table(task, rows, epochs_note: str, minutes: float, figures: Sequence[str]) -> str:
    """The demo's result table (markdown).

    Args:
        task (DemoTask): The task.
        rows (list): ``(model, params in millions, metrics)`` per row.
        epochs_note (str): What the caption says about the schedules.
        minutes (float): The demo's wall-clock time.
        figures (Sequence[str]): The teacher-weight plots.

    Returns:
        str: The table, its caption and the plots' paths.
    """
    labels = [label for _, label in task.metrics]
    lines = [
        '', f'{task.caption()}, {epochs_note}, CPU',
        '| model | params (M) | ' + ' | '.join(f'{label} (%)' for label in labels) + ' |',
        '|---|---:|' + '---:|' * len(labels)
    ]
    for name, params, metrics in rows:
        values = ' | '.join(f'{metrics[key] * task.scale:.2f}' for key, _ in task.metrics)
        lines.append(f'| {name} | {params:.2f} | {values} |')
    lines += [f'teacher-weight plot: {figure}' for figure in figures]
    lines.append(f'total time: {minutes:.1f} min')
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
    students = [student for student in STUDENTS if args.with_aver or student.role != 'aver']
    steps = 1 + len(task.teachers) + len(students)
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
    for label, role, _ in students:
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

    figures = [
        plot(
            read_weights(find_scalars(osp.join(run_dir, role))),
            osp.join(run_dir, role, 'teacher_weights.png'), f'{title}, {task.caption()}')
        for _, role, title in students if title is not None
    ]
    minutes = (time.time() - start) / 60
    epochs_note = f'{args.epochs} epochs each' if args.epochs else "the configs' schedules"
    print(format_table(task, rows, epochs_note, minutes, figures))
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
