"""Speed and memory of multi-teacher distillation on the headline detection setting.

RetinaNet-R18-FPN student, RetinaNet R50 / R101 / X101-32x4d teachers (random weights: the
shipped config with its model-zoo checkpoints replaced), fixed input size and batch. Each row
runs in its own process so that peak memory is its own:

* ``student``: the student's training step alone;
* ``floor``: the student's training step plus each teacher's no-grad forward, timed separately
  and added (what any multi-teacher distillation must pay);
* ``aver`` / ``camkd`` / ``ebkd`` / ``mtkd_rl`` / ``mtkd_rl_ppo``: full distiller training steps
  (``train_step``: forward, KD losses, weighting, backward, optimiser step); for MTKD-RL after
  warm-up, plus the agent update amortised over the batches it replays.

Prints one table (median seconds per iteration after warm-up, peak memory, ratios to AVER and
to the floor) and writes it as JSON.

Usage:
    python tools/benchmark/speed.py [--size 320] [--batch 2] [--iters 8] [--warmup 2]
                                    [--out work_dirs/benchmark/speed.json]
"""
import argparse
import json
import os
import os.path as osp
import platform
import resource
import statistics
import subprocess
import sys
import time

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG = osp.join(ROOT, 'configs', 'mtkd_rl', 'retinanet_r18_3teachers.py')
WEIGHTINGS = {
    'aver': dict(type='mmtkd.AverageWeighting'),
    'camkd': dict(type='mmtkd.ConfidenceWeighting'),
    'ebkd': dict(type='mmtkd.EntropyWeighting'),
    'mtkd_rl': dict(type='mmtkd.MTKDRLWeighting', warmup_iters=0, normalize_state=True),
    'mtkd_rl_ppo': dict(type='mmtkd.MTKDRLWeighting', update='ppo', mixing='none',
                        state='compact', warmup_iters=0),
}
ROWS = ['student', 'floor'] + list(WEIGHTINGS)


def synchronize(device: str) -> None:
    import torch
    if device == 'cuda':
        torch.cuda.synchronize()


def make_batch(size: int, batch: int, seed: int = 0) -> dict:
    """Random images with two ground-truth boxes each, as a dataloader would yield them."""
    import torch
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData
    g = torch.Generator().manual_seed(seed)
    inputs, samples = [], []
    for _ in range(batch):
        inputs.append(torch.randint(0, 255, (3, size, size), generator=g, dtype=torch.uint8))
        sample = DetDataSample(metainfo=dict(img_shape=(size, size), ori_shape=(size, size),
                                             scale_factor=(1.0, 1.0)))
        sample.gt_instances = InstanceData(
            bboxes=torch.tensor([[10., 20., 120., 160.], [150., 40., 300., 250.]]),
            labels=torch.tensor([0, 2]))
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


def timed(fn, iters: int, warmup: int, device: str) -> list:
    times = []
    for i in range(warmup + iters):
        synchronize(device)
        start = time.perf_counter()
        fn()
        synchronize(device)
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return times


def worker(row: str, args) -> dict:
    """Measure one row in this process; returns its timings."""
    import copy

    import torch
    from mmengine.config import Config
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import MODELS

    import mmtkd  # noqa: F401
    from mmtkd.testing import offline_distiller_cfg

    torch.manual_seed(0)
    device = 'cuda' if torch.cuda.is_available() else 'cpu'
    cfg = Config.fromfile(CONFIG)
    offline_distiller_cfg(cfg, args.teacher_dir)
    cfg.model.weighting = WEIGHTINGS.get(row, WEIGHTINGS['aver'])
    if args.teacher_precision != 'fp32':
        cfg.model.teacher_autocast = args.teacher_precision
    distiller = MODELS.build(cfg.model)
    distiller.init_weights()  # the student's own init, as the runner would do
    distiller = distiller.to(device)
    distiller.weighting.hook_attached = True
    distiller.train()
    data = make_batch(args.size, args.batch)
    result = dict(row=row, device=device)
    if row == 'student':
        student = distiller.student
        optim = build_optim_wrapper(student, copy.deepcopy(cfg.optim_wrapper))
        times = timed(lambda: student.train_step(copy.copy(data), optim), args.iters,
                      args.warmup, device)
    elif row == 'floor':
        student = distiller.student
        optim = build_optim_wrapper(student, copy.deepcopy(cfg.optim_wrapper))
        times = timed(lambda: student.train_step(copy.copy(data), optim), args.iters,
                      args.warmup, device)
        batch = distiller.data_preprocessor(copy.copy(data), True)
        for name, teacher in distiller.teachers.items():
            def forward(teacher=teacher):
                with torch.no_grad():
                    teacher.bbox_head(teacher.extract_feat(batch['inputs']))
            teacher_times = timed(forward, args.iters, args.warmup, device)
            result[f'teacher_{name}'] = statistics.median(teacher_times)
            times = [t + tt for t, tt in zip(times, teacher_times)]
    else:
        optim = build_optim_wrapper(distiller, copy.deepcopy(cfg.optim_wrapper))
        times = timed(lambda: distiller.train_step(copy.copy(data), optim), args.iters,
                      args.warmup, device)
        buffer = getattr(distiller.weighting, 'buffer', None)
        if buffer:
            stored = len(buffer)
            start = time.perf_counter()
            distiller.weighting.update()
            result['agent_update_per_batch'] = (time.perf_counter() - start) / stored
            times = [t + result['agent_update_per_batch'] for t in times]
    result['median_s'] = statistics.median(times)
    if device == 'cuda':
        result['peak_mb'] = torch.cuda.max_memory_allocated() / 2**20
    else:
        result['peak_mb'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--size', type=int, default=320)
    parser.add_argument('--batch', type=int, default=2)
    parser.add_argument('--iters', type=int, default=8)
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--rows', nargs='+', default=ROWS, choices=ROWS)
    parser.add_argument('--teacher-precision', default='fp32', choices=['fp32', 'bf16', 'fp16'])
    parser.add_argument('--teacher-dir', default=osp.join('work_dirs', 'benchmark', 'teachers'))
    parser.add_argument('--out', default=osp.join('work_dirs', 'benchmark', 'speed.json'))
    parser.add_argument('--worker', help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print('RESULT ' + json.dumps(worker(args.worker, args)))
        return
    results = {}
    for row in args.rows:
        cmd = [sys.executable, __file__, '--worker', row] + [
            a for a in sys.argv[1:] if a not in args.rows and a != '--rows']
        print(f'[speed] measuring {row} ...', flush=True)
        out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        lines = [l for l in out.stdout.splitlines() if l.startswith('RESULT ')]
        if out.returncode != 0 or not lines:
            sys.exit(f'[speed] {row} failed:\n{out.stderr[-3000:]}')
        results[row] = json.loads(lines[-1][len('RESULT '):])
    table = format_table(results, args)
    print(table)
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    with open(args.out, 'w') as f:
        json.dump(dict(results=results, table=table, args=vars(args),
                       machine=platform.platform(), processor=platform.processor(),
                       date=time.strftime('%Y-%m-%d')), f, indent=2)


def format_table(results: dict, args) -> str:
    aver, floor = results.get('aver'), results.get('floor')
    device = next(iter(results.values()))['device']
    lines = [f'RetinaNet-R18 student, R50/R101/X101-32x4d teachers, batch {args.batch} x '
             f'{args.size}x{args.size}, {args.iters} timed iterations after {args.warmup}, '
             f'{device}, teachers {args.teacher_precision}',
             '| row | s / iter | vs AVER | vs floor | peak MB | mem vs AVER |',
             '| --- | --- | --- | --- | --- | --- |']
    for row, r in results.items():
        t, m = r['median_s'], r['peak_mb']
        vs_aver = f'{t / aver["median_s"]:.3f}' if aver else '-'
        vs_floor = f'{t / floor["median_s"]:.3f}' if floor else '-'
        mem_aver = f'{m / aver["peak_mb"]:.3f}' if aver else '-'
        lines.append(f'| {row} | {t:.3f} | {vs_aver} | {vs_floor} | {m:.0f} | {mem_aver} |')
    return '\n'.join(lines)


if __name__ == '__main__':
    main()
