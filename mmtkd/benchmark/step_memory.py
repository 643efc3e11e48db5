"""Peak tensor memory of one training step, measured on CPU.

The memory target (MTKD-RL at most 1.03x AVER's peak) is about what the step keeps alive at
once, which does not depend on the device: the same operators allocate the same tensors. This
script measures it without a GPU. It runs ``--warmup`` training steps of each ``speed.py`` row
(same distillers, teacher losses batched as on a GPU), then profiles one step with
``torch.profiler`` (``profile_memory=True``), replays its allocations and frees in time order and
reports the highest total of live tensor bytes, added to what is resident before the step
(parameters, buffers and optimiser state).

What it is not: a GPU's ``max_memory_allocated``. The caching allocator rounds allocations up,
cuDNN adds workspaces, and where a library picks another path on CUDA the intermediates differ
(mmdet's focal loss: mmcv's fused kernel on CUDA, a Python fallback on CPU). Each allocation
and free is replayed at its own time, also inside an operator.

Usage:
    python tools/benchmark/step_memory.py [--size 320] [--batch 2] [--rows aver mtkd_rl ...]
                                          [--out work_dirs/benchmark/step_memory.json]
"""
import itertools
from typing import Callable, Iterable, List

import torch

from mmtkd.benchmark import speed


def peak_allocated_bytes(fn: Callable[[], object]) -> dict:
    """Run ``fn`` once under ``torch.profiler`` and replay its CPU allocations and frees, each
    at its own time.

    Every allocation and free is a ``[memory]`` record of the profiler's trace, with its time
    and size (negative for a free), also those made inside an operator. (Summing each
    operator's net usage instead, as this function did before 2026-12-04, saw a Python
    ``autograd.Function``'s temporaries as alive until the function returned: it is one
    operator whose children allocate and whose Python code frees.)

    Args:
        fn (Callable): The code to measure.

    Returns:
        dict: ``peak`` (the highest total of bytes allocated since the start and not yet freed)
        and ``end`` (that total when ``fn`` returned).
    """
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    # the trace's raw records (the public ``prof.events()`` folds those inside an operator
    # into its net usage)
    records = [(record.start_ns(), record.nbytes())
               for record in prof.profiler.kineto_results.events()
               if record.name() == '[memory]' and record.device_type() == DeviceType.CPU]
    live = peak = 0
    for _, change in sorted(records, key=lambda item: item[0]):
        live += change
        peak = max(peak, live)
    return dict(peak=peak, end=live)


def module_tensors(model: torch.nn.Module) -> List[torch.Tensor]:
    """Every parameter and buffer a model holds, module by module: a distiller's frozen teachers
    included, which its ``parameters()`` (what it trains) leave out."""
    return [
        t for m in model.modules()
        for t in itertools.chain(m.parameters(recurse=False), m.buffers(recurse=False))
    ]


def resident_bytes(tensors: Iterable[torch.Tensor]) -> int:
    """Bytes of the distinct storages behind ``tensors`` (shared storages counted once)."""
    storages = {}
    for tensor in tensors:
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
    return sum(storages.values())


def optimizer_state_tensors(optim_wrapper) -> list:
    """Every tensor in the optimiser's state (momentum buffers, Adam moments, ...)."""
    return [
        value for state in optim_wrapper.optimizer.state.values() for value in state.values()
        if isinstance(value, torch.Tensor)
    ]


def period_peak(step: Callable[[], object], period: int) -> dict:
    """:func:`peak_allocated_bytes` of ``period`` consecutive calls of ``step``: the highest
    peak of any of them (a reward measured one step in ``every`` stores, and allocates more on,
    one step of each period; :func:`speed.reward_period`).

    Args:
        step (Callable): One training step.
        period (int): Consecutive steps replayed.

    Returns:
        dict: ``peak`` and ``end``, as :func:`peak_allocated_bytes`.
    """
    return peak_allocated_bytes(lambda: [step() for _ in range(period)])


def measure(row: str, args) -> dict:
    """Peak tensor memory of the training steps of ``row`` after ``--warmup`` steps (a floor
    row: the student's step with every teacher's outputs held, :func:`speed.floor_step`): one
    step, or a whole period of a reward that measures one step in ``every``
    (``steps_replayed``)."""
    training = speed.training_step(row, args)
    step = speed.floor_step(training, args, row) if row in speed.FLOORS else training.step
    for _ in range(args.warmup):
        step()
    resident = resident_bytes(
        module_tensors(training.distiller) + optimizer_state_tensors(training.optim_wrapper))
    period = speed.reward_period(training)
    replay = period_peak(step, period)
    return dict(
        resident_mb=resident / 2**20,
        step_peak_mb=replay['peak'] / 2**20,
        peak_mb=(resident + replay['peak']) / 2**20,
        steps_replayed=period,
        teacher_losses=speed.reads_teacher_losses(training.distiller))


def format_table(results: dict, args) -> str:
    """Peak memory per row and its ratios to AVER, to its floor (``floor``;
    ``floor_feature_only`` for the feature-only rows) and to its floor with the teacher work its
    weighting reads (:func:`speed.floor_of`) where those were measured, as Markdown."""
    aver = results.get('aver')
    lines = [
        f'Peak tensor memory of one training step, {speed.STEP_SETTINGS[args.task].title}, '
        f'batch {args.batch} x '
        f'{args.size}x{args.size}, CPU code path', '',
        '| row | resident MB | step peak MB | peak MB | vs AVER | vs floor | '
        'vs floor with its signals |', '| --- | ---: | ---: | ---: | ---: | ---: | ---: |'
    ]
    for row, r in results.items():
        ratio = f"{r['peak_mb'] / aver['peak_mb']:.3f}" if aver else '-'
        vs_floors = speed.format_floor_ratios(results, row, 'peak_mb')
        lines.append(f"| {row} | {r['resident_mb']:.1f} | {r['step_peak_mb']:.1f} | "
                     f"{r['peak_mb']:.1f} | {ratio} | {vs_floors} |")
    return '\n'.join(lines)


def main() -> None:
    args = speed.parse_step_args(__doc__.splitlines()[0], 'step_memory.json', floors=True)
    results = {}
    for row in args.rows:
        print(f'[step_memory] measuring {row} ...', flush=True)
        results[row] = measure(row, args)
    table = format_table(results, args)
    print(table)
    speed.write_results(results, table, args)


if __name__ == '__main__':
    main()
