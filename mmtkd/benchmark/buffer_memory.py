"""Host memory of the MTKD-RL replay buffer for a shipped config, measured.

Builds the config's distiller (teachers with random weights, nothing downloaded), then drives
its ``MTKDRLWeighting`` for one update interval with signals of the config's real shapes
(batch size from the config's train dataloader, one rank), exactly as the distiller does
(forward -> observe), and reports the bytes the buffer holds and the growth of the process's
resident memory. Prints a table; ``--out`` also writes JSON.

Usage:
    python tools/benchmark/buffer_memory.py
        [--config configs/mtkd_rl/resnet18_3teachers_imagenet.py] [--interval 1000]
        [--dtypes float32 bfloat16] [--out work_dirs/benchmark/buffer.json]
"""
import argparse
import gc
import json
import multiprocessing
import os
import os.path as osp
import warnings

import torch
from mmengine.config import Config
from mmengine.registry import MODELS

import mmtkd  # noqa: F401
from mmtkd.engine import AgentLearner
from mmtkd.models.distillers import StepRecord, weighted_kd
from mmtkd.models.weighting import TeacherSignals

DEFAULT_CONFIG = 'configs/mtkd_rl/resnet18_3teachers_imagenet.py'


def resident_bytes() -> int:
    """The process's resident set size (Linux)."""
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')


def random_signals(batch: int, embed_dims, num_classes: int) -> TeacherSignals:
    """Signals of the distiller's shapes (values do not matter for memory)."""
    m = len(embed_dims)
    rand = lambda *shape: torch.rand(*shape)  # noqa: E731
    return TeacherSignals(
        logit_kd=rand(batch, m),
        feature_kd=rand(batch, m),
        feature_cos=rand(batch, m),
        teacher_loss=rand(batch, m),
        teacher_entropy=rand(batch, m),
        teacher_confidence=rand(batch, m),
        embeddings=[rand(batch, d) for d in embed_dims],
        logit_summaries=[rand(batch, num_classes) for _ in embed_dims],
        student_loss=rand(batch))


def measure(cfg: Config, interval: int, dtype: str) -> dict:
    """Fill one interval of the buffer and measure it.

    Args:
        cfg (Config): A config whose model is a ``MultiTeacherDistiller`` with MTKD-RL.
        interval (int): Update interval (iterations whose batches are kept).
        dtype (str): ``buffer_dtype``.

    Returns:
        dict: The row.
    """
    model_cfg = cfg.model.copy()
    model_cfg.weighting = dict(
        model_cfg.weighting, interval=interval, buffer_dtype=dtype, warmup_epochs=0)
    for spec in model_cfg.teachers.values():
        spec.checkpoint = None
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        distiller = MODELS.build(model_cfg)
    learner = AgentLearner.attach_to(distiller)  # as MTKDRLAgentHook does
    weighting = distiller.weighting
    weighting.train()
    num_classes = distiller.task.num_classes(distiller.student)
    dims = distiller.teacher_embed_dims
    batch = cfg.train_dataloader.batch_size
    gc.collect()
    before = resident_bytes()
    for _ in range(interval):
        signals = random_signals(batch, dims, num_classes)
        weights = weighting(signals)
        _, kd = weighted_kd(weights.logit, signals.logit_kd, distiller.alpha)
        weighting.record(StepRecord(signals, weights, [kd], signals.student_loss, None, None))
        learner.take_step()
    held = sum(v.nbytes for entry in learner.buffer for v in entry.values())
    grown = resident_bytes() - before
    state_dim = learner.buffer[0]['states'].shape[1]
    return dict(
        config=osp.relpath(cfg.filename),
        buffer_dtype=dtype,
        batch=batch,
        interval=interval,
        state_floats=state_dim,
        buffer_mb=held / 2**20,
        rss_growth_mb=grown / 2**20)


def measure_config(config: str, interval: int, dtype: str) -> dict:
    """:func:`measure` on a config file (runs in a worker process)."""
    import mmtkd  # noqa: F401,F811  (registers mmtkd in the worker)
    return measure(Config.fromfile(config), interval, dtype)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--config', default=DEFAULT_CONFIG)
    parser.add_argument('--interval', type=int, default=1000)
    parser.add_argument('--dtypes', nargs='+', default=['float32', 'bfloat16'])
    parser.add_argument('--out')
    args = parser.parse_args()
    # each dtype in a fresh process: freed host memory is not given back to the system, so a
    # second measurement in the same process would not show its own growth
    context = multiprocessing.get_context('spawn')
    rows = []
    for dtype in args.dtypes:
        with context.Pool(1) as pool:
            rows.append(pool.apply(measure_config, (args.config, args.interval, dtype)))
    print('| buffer_dtype | batch | interval | state floats | buffer MB | RSS growth MB |')
    print('|---|---:|---:|---:|---:|---:|')
    for r in rows:
        print(f"| {r['buffer_dtype']} | {r['batch']} | {r['interval']} | {r['state_floats']} | "
              f"{r['buffer_mb']:.1f} | {r['rss_growth_mb']:.1f} |")
    if args.out:
        os.makedirs(os.path.dirname(args.out) or '.', exist_ok=True)
        with open(args.out, 'w') as f:
            json.dump(rows, f, indent=1)


if __name__ == '__main__':
    main()
