"""The digits probe at one image per step: does the agent still learn? (docs/reliability.md)

Usage:
    python tools/analysis/digits_batch_one.py [--seeds 0 1 2] [--iters 3000] [--lr 0.003]
"""
import argparse

from mmtkd.analysis.digits_probe import load_digits_split, run_digits_probe, train_teachers

ROWS = dict(
    aver=dict(type='mmtkd.AverageWeighting'),
    official=dict(type='mmtkd.MTKDRLWeighting', warmup_iters=0, interval=64),
    ppo_compact=dict(
        type='mmtkd.MTKDRLWeighting',
        update='ppo',
        mixing='none',
        reward='improvement',
        state='compact',
        warmup_iters=0,
        interval=64),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    parser.add_argument('--iters', type=int, default=3000)
    parser.add_argument('--lr', type=float, default=0.003)
    args = parser.parse_args()
    print('| strategy | seed | weights (poisoned: last) | student acc |')
    print('|---|---:|---|---:|')
    for seed in args.seeds:
        x, y, _, _ = load_digits_split(seed)
        teachers = train_teachers(x, y, seed=seed)
        for name, cfg in ROWS.items():
            cfg = dict(cfg, seed=seed) if 'MTKDRL' in cfg['type'] else cfg
            result = run_digits_probe(
                cfg,
                poisoned=(2, ),
                iters=args.iters,
                batch_size=1,
                seed=seed,
                teachers=teachers,
                lr=args.lr)
            print(
                f"| {name} | {seed} | {result['mean_logit_weights']} | "
                f"{result['student_acc']:.3f} |",
                flush=True)


if __name__ == '__main__':
    main()
