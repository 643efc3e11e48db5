"""Measure whether each teacher-weighting strategy learns to distrust poisoned teachers.

Real data (scikit-learn digits), three MLP teachers, an MLP student, logit KD only; one or two
teachers have their logits permuted across classes. For every strategy, pool and seed it runs
``mmtkd.analysis.digits_probe.run_digits_probe`` and prints a Markdown table: the mean weight
the strategy
gives the poisoned teacher(s) on the test set, and the student's test accuracy.

Usage:
    python tools/analysis/digits_probe.py [--seeds 0 1 2] [--iters 800] [--out table.md]
"""
import argparse
import statistics

import mmtkd  # noqa: F401
from mmtkd.analysis.digits_probe import load_digits_split, run_digits_probe, train_teachers

RL = dict(type='mmtkd.MTKDRLWeighting', warmup_iters=0, interval=10)
PPO = dict(RL, update='ppo', mixing='none', reward='improvement')
STRATEGIES = [
    ('AVER', dict(type='mmtkd.AverageWeighting')),
    ('CA-MKD', dict(type='mmtkd.ConfidenceWeighting')),
    ('EBKD', dict(type='mmtkd.EntropyWeighting')),
    ('MTKD-RL official (static)', RL),
    ('MTKD-RL official (dynamic)', dict(RL, mixing='dynamic')),
    ('MTKD-RL official, inverse divergence', dict(RL, divergence='inverse')),
    ('MTKD-RL PPO, official state', dict(PPO, state='official')),
    ('MTKD-RL PPO, compact state', dict(PPO, state='compact')),
    ('MTKD-RL PPO, compact state, same-pass reward', dict(PPO, state='compact', reward='official')),
]
POOLS = (('one of three poisoned', (2, )), ('two of three poisoned', (1, 2)))


def mean_std(values):
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    parser.add_argument('--iters', type=int, default=800)
    parser.add_argument('--out', help='also write the table to this Markdown file')
    args = parser.parse_args()
    teachers = {}
    for seed in args.seeds:
        x, y, _, _ = load_digits_split(seed)
        teachers[seed] = train_teachers(x, y, seed=seed)
    lines = [
        f'Digits probe: {args.iters} iterations, seeds {args.seeds}; mean +- std over seeds.', '',
        '| strategy | pool | weight of poisoned teacher(s) (1/M = 0.333) | student acc |',
        '| --- | --- | --- | --- |'
    ]
    for pool_name, poisoned in POOLS:
        for name, cfg in STRATEGIES:
            weights, accs = [], []
            for seed in args.seeds:
                run_cfg = dict(cfg, seed=seed) if 'MTKDRL' in cfg['type'] else cfg
                result = run_digits_probe(
                    run_cfg, poisoned, iters=args.iters, seed=seed, teachers=teachers[seed])
                weights.append(statistics.mean(result['mean_logit_weights'][m] for m in poisoned))
                accs.append(result['student_acc'])
            (w, w_std), (a, a_std) = mean_std(weights), mean_std(accs)
            lines.append(f'| {name} | {pool_name} | {w:.3f} +- {w_std:.3f} | '
                         f'{a:.3f} +- {a_std:.3f} |')
            print(lines[-1], flush=True)
    if args.out:
        with open(args.out, 'w') as f:
            f.write('\n'.join(lines) + '\n')
    print('\n'.join(lines))


if __name__ == '__main__':
    main()
