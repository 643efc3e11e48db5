"""Plot the per-teacher mean weights logged during an mmtkd training run.

Reads the ``scalars.json`` that MMEngine's ``LocalVisBackend`` writes under
``WORK_DIR/<timestamp>/vis_data/`` (the newest run unless ``--run`` is given) and draws one line
per teacher in two panels: logit-KD weights and feature-KD weights.

Usage:
    python tools/analysis/plot_teacher_weights.py WORK_DIR [--out weights.png] [--run TIMESTAMP]
"""
import argparse
import glob
import json
import os.path as osp
import sys
from collections import defaultdict
from typing import Dict, List, Tuple

PANELS = (('weight_logit/', 'logit KD'), ('weight_feat/', 'feature KD'))


def find_scalars(work_dir: str, run: str = None) -> str:
    """Path of the scalars file of the newest (or the named) run in ``work_dir``.

    Args:
        work_dir (str): An MMEngine work dir.
        run (str, optional): A run's timestamp folder name.

    Returns:
        str: Path to ``scalars.json``.
    """
    pattern = osp.join(work_dir, run or '*', 'vis_data', 'scalars.json')
    found = sorted(glob.glob(pattern))
    if not found:
        raise FileNotFoundError(f'no {pattern}: was the run logged with LocalVisBackend?')
    return found[-1]


def read_weights(path: str) -> Dict[str, Dict[str, List[Tuple[int, float]]]]:
    """``{panel prefix: {teacher: [(step, weight), ...]}}`` from a scalars file.

    Args:
        path (str): A ``scalars.json`` (one JSON object per line).

    Returns:
        dict: The logged teacher weights.
    """
    series: Dict[str, Dict[str, List[Tuple[int, float]]]] = {
        p: defaultdict(list)
        for p, _ in PANELS
    }
    with open(path, encoding='utf-8') as f:
        for line in f:
            record = json.loads(line)
            for key, value in record.items():
                for prefix, _ in PANELS:
                    if key.startswith(prefix):
                        series[prefix][key[len(prefix):]].append((record['step'], value))
    return series


def plot(series, out: str, title: str = '') -> str:
    """Draw the two panels to ``out``.

    Args:
        series (dict): Output of :func:`read_weights`.
        out (str): PNG path.
        title (str): Figure title.

    Returns:
        str: ``out``.
    """
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, (prefix, label) in zip(axes, PANELS):
        for teacher, points in sorted(series[prefix].items()):
            steps, values = zip(*points)
            ax.plot(steps, values, label=teacher)
        ax.set_title(f'{label} weights (batch mean)')
        ax.set_xlabel('iteration')
        ax.grid(alpha=0.3)
    axes[0].set_ylabel('teacher weight')
    axes[0].legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description='Plot logged teacher weights')
    parser.add_argument('work_dir', help='the MMEngine work dir of an mmtkd run')
    parser.add_argument('--out', help='PNG path (default WORK_DIR/teacher_weights.png)')
    parser.add_argument('--run', help='timestamp folder of the run (default: newest)')
    args = parser.parse_args()
    try:
        series = read_weights(find_scalars(args.work_dir, args.run))
    except FileNotFoundError as err:
        sys.exit(str(err))
    if not any(series[p] for p, _ in PANELS):
        sys.exit(f'no weight_logit/* or weight_feat/* scalars in {args.work_dir}')
    out = plot(
        series,
        args.out or osp.join(args.work_dir, 'teacher_weights.png'),
        title=osp.basename(osp.normpath(args.work_dir)))
    print(f'wrote {out}')


if __name__ == '__main__':
    main()
