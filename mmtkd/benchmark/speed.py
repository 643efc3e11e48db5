"""Speed and memory of multi-teacher distillation on the headline detection setting.

RetinaNet-R18-FPN student, RetinaNet R50 / R101 / X101-32x4d teachers (random weights: the
shipped config with its model-zoo checkpoints replaced), fixed input size and batch;
``--task segmentation`` measures the Cityscapes recipe instead (DeepLabV3-R18-D8 student,
R101-D8 teachers; :mod:`mmtkd.benchmark.step_settings`). Each row runs in its own process so
that peak memory is its own:

* ``student``: the student's training step alone;
* ``floor``: the student's training step plus each teacher's no-grad forward, timed separately
  and added (what any multi-teacher distillation must pay);
* ``aver`` / ``camkd`` / ``ebkd`` / ``mtkd_rl`` / ``mtkd_rl_ppo``: full distiller training steps
  (``train_step``: forward, KD losses, weighting, backward, optimiser step); for MTKD-RL after
  warm-up, plus the agent update amortised over the batches it replays;
* ``aver_feature_only`` / ``floor_feature_only``: AVER with ``logit_kd_loss=None`` (FPN feature
  KD only: the teachers run without their heads) and its floor (the student's step plus each
  teacher's backbone and neck);
* ``floor_teacher_losses``: the floor plus each teacher's own detection loss on the batch
  (mmdet's ``loss_by_feat``, no grad), the teacher work of a weighting that reads the teachers'
  losses (CA-MKD, the official MTKD-RL state).

Prints one table (median seconds per iteration after warm-up, peak memory, ratios to AVER and
to the floor) and writes it as JSON. ``--repeats N`` measures every row N times in interleaved
order and reports the median, for machines whose timings drift.

``--precision-check`` measures instead what reduced-precision teachers (``teacher_autocast``)
buy and cost: the teachers' forward time and the KD loss values in fp32 / bf16 / fp16, on the
same weights and batch.

Usage:
    python tools/benchmark/speed.py [--size 320] [--batch 2] [--iters 8] [--warmup 2]
                                    [--repeats 1] [--teacher-precision fp32|bf16|fp16]
                                    [--out work_dirs/benchmark/speed.json]
    python tools/benchmark/speed.py --precision-check [--size 320] [--batch 2]
"""
import argparse
import copy
import json
import os
import os.path as osp
import platform
import resource
import statistics
import subprocess
import sys
import time
from typing import Any, Callable, Dict, NamedTuple, Optional, Sequence, Tuple

from mmtkd.benchmark.recommended import (BASELINE_WEIGHTINGS, CREDIT_AGENT, RECOMMENDED,
                                         candidate_weightings, measured_every,
                                         recommended_weighting)
from mmtkd.benchmark.step_settings import STEP_SETTINGS, detection_batch, step_config

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG = STEP_SETTINGS['detection'].config
WEIGHTINGS = {
    **copy.deepcopy(BASELINE_WEIGHTINGS),
    'mtkd_rl':
    dict(type='mmtkd.MTKDRLWeighting', warmup_iters=0, normalize_state=True),
    'mtkd_rl_ppo':
    dict(
        type='mmtkd.MTKDRLWeighting', update='ppo', mixing='none', state='compact', warmup_iters=0),
}
#: the credit agents, and the recommended configuration as it is built for the headline
#: detector (the credit agent, ``CREDIT_AGENT``; :func:`row_weighting` builds it per task)
WEIGHTINGS.update(candidate_weightings())
WEIGHTINGS[RECOMMENDED] = recommended_weighting('detection')
#: the first credit agent with the gradient agreement measured (and the step stored) one step
#: in four, and with the teachers' KD gradients taken one at a time (less peak memory)
WEIGHTINGS['mtkd_rl_credit_every4'] = dict(
    WEIGHTINGS['mtkd_rl_credit'], reward=dict(type='mmtkd.TaskAgreementReward', every=4))
WEIGHTINGS['mtkd_rl_credit_unbatched'] = dict(
    WEIGHTINGS['mtkd_rl_credit'], reward=dict(type='mmtkd.TaskAgreementReward', batched=False))
#: the credit agent with the teachers' KD gradients taken one at a time, and with the
#: agreement measured (and the step stored) one step in four
WEIGHTINGS[f'{CREDIT_AGENT}_unbatched'] = dict(
    WEIGHTINGS[CREDIT_AGENT], reward=dict(WEIGHTINGS[CREDIT_AGENT]['reward'], batched=False))
WEIGHTINGS[f'{CREDIT_AGENT}_every4'] = measured_every(WEIGHTINGS[CREDIT_AGENT], 4)
#: the ranked feature credit measured one step in four (its task-loss backward through the
#: student's head is most of its cost)
FEATURE_CREDIT = f'{CREDIT_AGENT}_feature_credit_ranked'
WEIGHTINGS[f'{FEATURE_CREDIT}_every4'] = measured_every(WEIGHTINGS[FEATURE_CREDIT], 4)
#: rows that change the distiller besides its weighting: feature KD only (no teacher heads),
#: and its floor (the student's step plus each teacher's backbone and neck)
DISTILLER_OPTIONS = {
    'aver_feature_only': dict(logit_kd_loss=None),
    'floor_feature_only': dict(logit_kd_loss=None),
}
#: the floor rows (the student's step plus the teacher work a configuration needs), and the
#: floor with the teachers' own losses for weightings that read them
FLOOR_WITH_LOSSES = 'floor_teacher_losses'
FLOORS = ('floor', 'floor_feature_only', FLOOR_WITH_LOSSES)
TEACHER_LOSS_SIGNALS = frozenset({'teacher_loss', 'teacher_confidence'})
ROWS = ['student', 'floor', FLOOR_WITH_LOSSES] + list(WEIGHTINGS) + list(DISTILLER_OPTIONS)
PRECISIONS = ('fp32', 'bf16', 'fp16')


def synchronize(device: str) -> None:
    """Wait for the GPU's queued work (a no-op on CPU)."""
    import torch
    if device == 'cuda':
        torch.cuda.synchronize()


#: the headline setting's batch (kept under its old name for the MMRazor comparison)
make_batch = detection_batch


def row_weighting(row: str, task: str = 'detection') -> dict:
    """The weighting a row's distiller is built with on a setting: the recommended row builds
    the weighting shipped for the setting's task family, every other row its own
    (:data:`WEIGHTINGS`; AVER for the student and floor rows).

    Args:
        row (str): A row of the table.
        task (str): A :data:`~mmtkd.benchmark.step_settings.STEP_SETTINGS` key.

    Returns:
        dict: A copy of the weighting config.
    """
    if row == RECOMMENDED:
        return recommended_weighting(task)
    return copy.deepcopy(WEIGHTINGS.get(row, WEIGHTINGS['aver']))


def timed(fn, iters: int, warmup: int, device: str) -> list:
    """Seconds per call of ``fn`` (device synchronised around each call), after ``warmup``
    untimed calls.

    Returns:
        list: ``iters`` durations.
    """
    times = []
    for i in range(warmup + iters):
        synchronize(device)
        start = time.perf_counter()
        fn()
        synchronize(device)
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return times


def build_distiller(row: str, args):
    """The setting's distiller (``args.task``, the headline detector by default) with ``row``'s
    weighting, on the available device, in train mode.

    Args:
        row (str): A row of the table (its weighting; AVER for ``student`` / ``floor``).
        args: The parsed command line.

    Returns:
        tuple: The distiller, its config, one raw batch, the device name and the agent's
        learner (None for stateless weightings).
    """
    import torch
    from mmengine.registry import MODELS

    import mmtkd  # noqa: F401
    from mmtkd.engine import AgentLearner
    from mmtkd.testing import offline_distiller_cfg

    torch.manual_seed(0)
    device = 'cuda' if torch.cuda.is_available() else 'cpu'
    task = args.task
    cfg = step_config(task, args.size)
    offline_distiller_cfg(cfg, args.teacher_dir)
    cfg.model.weighting = row_weighting(row, task)
    cfg.model.update(DISTILLER_OPTIONS.get(row, {}))
    if args.teacher_precision != 'fp32':
        cfg.model.teacher_autocast = args.teacher_precision
    if task == 'detection':
        cfg.model.task = dict(type='DetectionTask', loss_batching=args.loss_batching)
    distiller = MODELS.build(cfg.model)
    distiller.init_weights()  # the student's own init, as the runner would do
    distiller = distiller.to(device)
    learner = AgentLearner.attach_to(distiller)  # as MTKDRLAgentHook does
    distiller.train()
    return distiller, cfg, STEP_SETTINGS[task].make_batch(args.size, args.batch), device, learner


class TrainingStep(NamedTuple):
    """One row's training step (``step()`` runs one ``train_step`` and, for MTKD-RL, stores it
    as the agent hook does after the iteration), its distiller, optimiser wrapper, raw batch,
    device name and agent learner (None for stateless weightings)."""
    step: Callable[[], None]
    distiller: Any
    optim_wrapper: Any
    data: dict
    device: str
    learner: Any = None


def training_step(row: str, args) -> TrainingStep:
    """The row's distiller and one training step of it (the student's alone for ``student`` and
    ``floor``), with its own optimiser, on a fixed batch.

    Args:
        row (str): A row of the table.
        args: The parsed command line.

    Returns:
        TrainingStep: The step and what it runs on.
    """
    import copy

    from mmengine.optim import build_optim_wrapper
    distiller, cfg, data, device, learner = build_distiller(row, args)
    student_only = row == 'student' or row in FLOORS
    model = distiller.student if student_only else distiller
    optim = build_optim_wrapper(model, copy.deepcopy(cfg.optim_wrapper))
    learner = None if student_only else learner

    def step():
        model.train_step(copy.copy(data), optim)
        if learner is not None:
            learner.take_step()

    return TrainingStep(step, distiller, optim, data, device, learner)


def reward_period(training: TrainingStep) -> int:
    """Consecutive training steps that make one period of the row's work: the agent's reward
    ``every`` (it measures and stores one step in ``every``), 1 for stateless weightings. A
    measurement of such a row covers a whole period, or it may miss the stored step."""
    return training.learner.reward.every if training.learner is not None else 1


def teacher_forwards(distiller,
                     data: dict,
                     device: str,
                     args,
                     with_losses: bool = False) -> Dict[str, Callable[[], Any]]:
    """The floor's teacher work: each teacher's forward alone, as the distiller runs it (as far
    as its KD needs: no head for feature-only KD), without gradients, at the teachers'
    precision; with ``with_losses`` also the teacher's own detection loss on the batch, as
    mmdet computes it (``bbox_head.loss_by_feat``).

    Args:
        distiller: The row's distiller.
        data (dict): The raw batch.
        device (str): ``'cuda'`` or ``'cpu'``.
        args: The parsed command line (``teacher_precision``).
        with_losses (bool): Add each teacher's own loss (the ``floor_teacher_losses`` row;
            detection only, see :func:`refuse_what_the_task_cannot_measure`).

    Returns:
        dict: ``{teacher name: forward()}``, each returning the teacher's outputs (and its
        losses, with ``with_losses``).
    """
    import torch
    from mmdet.models.utils import unpack_gt_instances

    from mmtkd.models.distillers.multi_teacher_distiller import AUTOCAST_DTYPES
    batch = distiller.data_preprocessor(copy.copy(data), True)
    precision = args.teacher_precision
    if with_losses:
        gts, ignores, metas = unpack_gt_instances(batch['data_samples'])

    def forward(teacher) -> Any:
        with torch.no_grad(), torch.autocast(
                device_type=device,
                enabled=precision != 'fp32',
                dtype=AUTOCAST_DTYPES.get(precision, torch.bfloat16)):
            outputs = distiller.teacher_forward(teacher, batch['inputs'], batch['data_samples'])
            if not with_losses:
                return outputs
            return outputs, teacher.bbox_head.loss_by_feat(*outputs.extras['head_outputs'], gts,
                                                           metas, ignores)

    return {
        name: (lambda teacher=teacher: forward(teacher))
        for name, teacher in distiller.teachers.items()
    }


def floor_step(training: TrainingStep, args, row: str = 'floor') -> Callable[[], None]:
    """A floor row's step (:data:`FLOORS`): every teacher's no-grad forward (and, for
    ``floor_teacher_losses``, its own loss), its outputs held while the student's own step runs
    (distillation needs them then), as the distiller orders them.

    Args:
        training (TrainingStep): The floor row's training step (the student's alone).
        args: The parsed command line (``teacher_precision``).
        row (str): The floor row.

    Returns:
        Callable: The step.
    """
    forwards = teacher_forwards(training.distiller, training.data, training.device, args,
                                row == FLOOR_WITH_LOSSES)

    def step() -> None:
        outputs = [forward() for forward in forwards.values()]
        training.step()
        del outputs

    return step


def reads_teacher_losses(distiller) -> bool:
    """Whether ``distiller``'s weighting reads the teachers' own losses (its floor is then
    ``floor_teacher_losses``)."""
    return bool(distiller.weighting.required_signals & TEACHER_LOSS_SIGNALS)


def floor_of(results: dict, row: str, with_signals: bool = False) -> Optional[dict]:
    """The measured floor ``row`` is compared with (``floor``; ``floor_feature_only`` for the
    feature-only rows), None where it was not measured or ``row`` is the student alone.

    Args:
        results (dict): Measured rows; a row whose weighting reads the teachers' losses says so
            (``teacher_losses: True``).
        row (str): The row.
        with_signals (bool): Count the teacher work the row's weighting reads too: the floor
            with the teachers' own losses (``floor_teacher_losses``) for such a row, where it
            was measured.
    """
    if row == 'student':
        return None
    if with_signals and results[row].get('teacher_losses'):
        return results.get(FLOOR_WITH_LOSSES)
    return results.get('floor_feature_only' if row.endswith('feature_only') else 'floor')


def format_floor_ratios(results: dict, row: str, key: str) -> str:
    """``row``'s ``key`` over its floor's and over its floor with the teacher work its
    weighting reads (:func:`floor_of`), as two Markdown cells (``-`` where not measured)."""
    return ' | '.join(f'{results[row][key] / floor[key]:.3f}' if floor else '-'
                      for floor in (floor_of(results, row),
                                    floor_of(results, row, with_signals=True)))


def worker(row: str, args) -> dict:
    """Measure one row in this process; returns its timings."""
    import torch

    step, distiller, _, data, device, learner = training_step(row, args)
    result = dict(row=row, device=device, teacher_losses=reads_teacher_losses(distiller))
    times = timed(step, args.iters, args.warmup, device)
    if row in FLOORS:
        forwards = teacher_forwards(distiller, data, device, args, row == FLOOR_WITH_LOSSES)
        for name, forward in forwards.items():
            teacher_times = timed(forward, args.iters, args.warmup, device)
            result[f'teacher_{name}'] = statistics.median(teacher_times)
            times = [t + tt for t, tt in zip(times, teacher_times)]
    elif row != 'student':
        if learner is not None and learner.buffer:
            stored = len(learner.buffer)
            synchronize(device)
            start = time.perf_counter()
            learner.update()
            synchronize(device)
            result['agent_update_per_batch'] = (time.perf_counter() - start) / stored
            times = [t + result['agent_update_per_batch'] for t in times]
    result['median_s'] = statistics.median(times)
    if device == 'cuda':
        result['peak_mb'] = torch.cuda.max_memory_allocated() / 2**20
    else:
        result['peak_mb'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if args.profile_dir and row not in FLOORS:
        _, gpu_kernels = profile(step, row, args, device)
        if gpu_kernels is not None:
            result['gpu_kernels_per_step'] = gpu_kernels
    return result


def profile(step, row: str, args, device: str, steps: int = 3) -> Tuple[str, Optional[float]]:
    """Profile ``steps`` calls of ``step`` with torch.profiler and write the operators sorted by
    their own device (GPU) or CPU time to ``PROFILE_DIR/profile_<row>.txt``.

    Returns:
        tuple[str, float | None]: Path of the written table, and on a GPU the device events
        (kernels, copies, fills) the profiler recorded per step: the measured counterpart of
        ``host_ops.py``'s CPU count (None on CPU).
    """
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == 'cuda' else [])
    with torch_profile(activities=activities) as prof:
        for _ in range(steps):
            step()
        synchronize(device)
    sort_by = 'self_cuda_time_total' if device == 'cuda' else 'self_cpu_time_total'
    os.makedirs(args.profile_dir, exist_ok=True)
    path = osp.join(args.profile_dir, f'profile_{row}.txt')
    averages = prof.key_averages()
    gpu_kernels = None
    if device == 'cuda':
        gpu_kernels = sum(e.count for e in averages if e.device_type == DeviceType.CUDA) / steps
    with open(path, 'w') as f:
        f.write(f'{row}: {steps} training steps, sorted by {sort_by}')
        f.write('\n' if gpu_kernels is None else f'; {gpu_kernels:g} GPU events per step\n')
        f.write(averages.table(sort_by=sort_by, row_limit=30, max_name_column_width=60))
    return path, gpu_kernels


def precision_check(distiller,
                    data: dict,
                    iters: int,
                    warmup: int,
                    device: str,
                    precisions: Sequence[str] = PRECISIONS) -> dict:
    """Teacher forward time and KD loss values with the teachers in each precision.

    The same distiller (same weights), the same batch and the same student outputs are used for
    every precision; only ``teacher_autocast`` changes.

    Args:
        distiller (MultiTeacherDistiller): A built distiller on ``device``.
        data (dict): One raw batch (``inputs`` and ``data_samples``).
        iters (int): Timed teacher forwards per precision.
        warmup (int): Untimed forwards before them.
        device (str): ``'cuda'`` or ``'cpu'``.
        precisions (Sequence[str]): Teacher precisions, ``'fp32'`` first (the reference).

    Returns:
        dict: Per precision: ``teacher_forward_s`` (median, all teachers), ``loss_logit_kd``,
        ``loss_feat_kd``, and their relative changes against fp32 (``*_rel_change``).
    """
    import copy

    import torch
    batch = distiller.data_preprocessor(copy.copy(data), True)
    inputs, samples = batch['inputs'], batch['data_samples']
    results, configured = {}, distiller.teacher_autocast
    try:
        for precision in precisions:
            distiller.teacher_autocast = None if precision == 'fp32' else precision
            times = timed(lambda: distiller.teacher_forwards(inputs, samples), iters, warmup,
                          device)
            torch.manual_seed(0)
            with torch.no_grad():
                losses = distiller.loss(inputs, samples)
            row = dict(teacher_forward_s=statistics.median(times))
            for key in ('loss_logit_kd', 'loss_feat_kd'):
                row[key] = float(losses[key])
                reference = results.get(precisions[0], row)[key]
                row[f'{key}_rel_change'] = abs(row[key] - reference) / max(abs(reference), 1e-12)
            results[precision] = row
    finally:
        distiller.teacher_autocast = configured
    return results


def run_worker(row: str, args) -> dict:
    """Run one row in a fresh process (so that its peak memory is its own) and parse it."""
    cmd = [
        sys.executable, __file__, '--worker', row, '--size',
        str(args.size), '--batch',
        str(args.batch), '--iters',
        str(args.iters), '--warmup',
        str(args.warmup), '--teacher-precision', args.teacher_precision, '--loss-batching',
        args.loss_batching, '--teacher-dir', args.teacher_dir, '--task', args.task
    ] + (['--profile-dir', args.profile_dir] if args.profile_dir else [])
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    lines = [line for line in out.stdout.splitlines() if line.startswith('RESULT ')]
    if out.returncode != 0 or not lines:
        sys.exit(f'[speed] {row} failed:\n{out.stderr[-3000:]}')
    return json.loads(lines[-1][len('RESULT '):])


def measure_rows(args) -> dict:
    """Every row, ``args.repeats`` times in interleaved order; the median of the medians."""
    runs = {row: [] for row in args.rows}
    for repeat in range(args.repeats):
        for row in args.rows:
            print(f'[speed] measuring {row} ({repeat + 1}/{args.repeats}) ...', flush=True)
            runs[row].append(run_worker(row, args))
    results = {}
    for row, measured in runs.items():
        results[row] = dict(measured[-1])
        results[row]['median_s'] = statistics.median(r['median_s'] for r in measured)
        results[row]['peak_mb'] = max(r['peak_mb'] for r in measured)
        results[row]['repeats_s'] = [r['median_s'] for r in measured]
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--size', type=int, default=320)
    parser.add_argument('--batch', type=int, default=2)
    parser.add_argument('--iters', type=int, default=8)
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument(
        '--repeats',
        type=int,
        default=1,
        help='measure every row this many times, interleaved; report medians')
    parser.add_argument('--rows', nargs='+', default=ROWS, choices=ROWS)
    add_task_argument(parser)
    parser.add_argument('--teacher-precision', default='fp32', choices=PRECISIONS)
    parser.add_argument(
        '--loss-batching',
        default='auto',
        choices=('auto', 'image', 'batch'),
        help="DetectionTask's loss_batching for the per-image teacher losses")
    parser.add_argument(
        '--precision-check',
        action='store_true',
        help='instead of the rows: teacher forward time and KD loss values '
        'with the teachers in fp32 / bf16 / fp16')
    parser.add_argument(
        '--profile-dir',
        help='also profile each row (torch.profiler) and '
        'write its top operators here')
    parser.add_argument('--teacher-dir', default=osp.join('work_dirs', 'benchmark', 'teachers'))
    parser.add_argument('--out', default=osp.join('work_dirs', 'benchmark', 'speed.json'))
    parser.add_argument('--worker', help=argparse.SUPPRESS)
    args = parser.parse_args()
    refuse_what_the_task_cannot_measure(parser, args)
    if args.worker:
        print('RESULT ' + json.dumps(worker(args.worker, args)))
        return
    if args.precision_check:
        distiller, _, data, device, _ = build_distiller('aver', args)
        results = precision_check(distiller, data, args.iters, args.warmup, device)
        table = format_precision_table(
            results, f'Teacher forwards (R50 + R101 + X101-32x4d), batch {args.batch} x '
            f'{args.size}x{args.size}, median of {args.iters} after {args.warmup}, {device}')
    else:
        results = measure_rows(args)
        table = format_table(results, args)
    print(table)
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    with open(args.out, 'w') as f:
        json.dump(
            dict(
                results=results,
                table=table,
                args=vars(args),
                machine=machine(),
                date=time.strftime('%Y-%m-%d')),
            f,
            indent=2)


def add_task_argument(parser: argparse.ArgumentParser) -> None:
    """``--task``: the setting whose training step is measured (:data:`STEP_SETTINGS`)."""
    parser.add_argument(
        '--task',
        default='detection',
        choices=sorted(STEP_SETTINGS),
        help='the shipped recipe measured: detection (RetinaNet, the headline) or segmentation '
        '(DeepLabV3 on Cityscapes)')


def refuse_what_the_task_cannot_measure(parser: argparse.ArgumentParser,
                                        args: argparse.Namespace) -> None:
    """Stop a command line that asks a non-detection setting for what only the detection
    setting measures (the teachers' own losses of mmdet heads, ``loss_by_feat``; the teachers'
    precision check), before anything is built.

    Args:
        parser (argparse.ArgumentParser): The script's parser (its ``error`` exits with 2).
        args (argparse.Namespace): Its parsed arguments (``task``, ``rows``, and
            ``precision_check`` where the script has it).
    """
    if args.task == 'detection':
        return
    if FLOOR_WITH_LOSSES in args.rows:
        parser.error(f'{FLOOR_WITH_LOSSES} is measured on the detection setting only; leave it '
                     f'out of --rows for --task {args.task}')
    if getattr(args, 'precision_check', False):
        parser.error('--precision-check measures the detection setting only')


def parse_step_args(description: str, out_name: str, floors: bool = False) -> argparse.Namespace:
    """Command line of the scripts that measure one training step of each row on CPU
    (``host_ops.py``, ``step_memory.py``): the GPU setting's teachers (fp32) and teacher-loss
    batching.

    Args:
        description (str): The script's description.
        out_name (str): File name of the default JSON output.
        floors (bool): Whether the script can measure the floor rows (:data:`FLOORS`).

    Returns:
        argparse.Namespace: The parsed arguments.
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument('--size', type=int, default=320)
    parser.add_argument('--batch', type=int, default=2)
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument(
        '--rows',
        nargs='+',
        default=['student', 'aver', 'camkd', 'ebkd', 'mtkd_rl', 'mtkd_rl_ppo'],
        choices=[r for r in ROWS if floors or r not in FLOORS])
    add_task_argument(parser)
    parser.add_argument('--teacher-dir', default=osp.join('work_dirs', 'benchmark', 'teachers'))
    parser.add_argument('--out', default=osp.join('work_dirs', 'benchmark', out_name))
    args = parser.parse_args()
    refuse_what_the_task_cannot_measure(parser, args)
    args.teacher_precision, args.loss_batching = 'fp32', 'batch'
    return args


def write_results(results: dict, table: str, args: argparse.Namespace) -> None:
    """Write ``results`` with their table, arguments, machine and date to ``args.out``."""
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    with open(args.out, 'w') as f:
        json.dump(
            dict(
                results=results,
                table=table,
                args=vars(args),
                machine=machine(),
                date=time.strftime('%Y-%m-%d')),
            f,
            indent=2)


def machine() -> str:
    """The platform, and the GPU when there is one."""
    import torch
    name = platform.platform() + ', ' + (platform.processor() or platform.machine())
    if torch.cuda.is_available():
        name += f', {torch.cuda.get_device_name()}, torch {torch.__version__}'
    return name


def format_table(results: dict, args) -> str:
    """The rows as a Markdown table with ratios to AVER and to the floor."""
    aver = results.get('aver')
    device = next(iter(results.values()))['device']
    lines = [
        f'{STEP_SETTINGS[args.task].title}, batch {args.batch} x '
        f'{args.size}x{args.size}, median of {args.iters} timed iterations after '
        f'{args.warmup}, {args.repeats} interleaved repeat(s), {device}, teachers '
        f'{args.teacher_precision}, loss batching {args.loss_batching}',
        '| row | s / iter | vs AVER | vs floor | vs floor with its signals | peak MB | '
        'mem vs AVER |', '| --- | --- | --- | --- | --- | --- | --- |'
    ]
    for row, r in results.items():
        t, m = r['median_s'], r['peak_mb']
        vs_aver = f'{t / aver["median_s"]:.3f}' if aver else '-'
        vs_floors = format_floor_ratios(results, row, 'median_s')
        mem_aver = f'{m / aver["peak_mb"]:.3f}' if aver else '-'
        lines.append(f'| {row} | {t:.4f} | {vs_aver} | {vs_floors} | {m:.0f} | {mem_aver} |')
    return '\n'.join(lines) + format_gpu_kernels(results)


def format_gpu_kernels(results: dict) -> str:
    """The GPU events per step of the profiled rows (``--profile-dir`` on a GPU) and their
    ratio to AVER's, as a Markdown table ('' when no row has them)."""
    counted = {
        row: r['gpu_kernels_per_step']
        for row, r in results.items() if 'gpu_kernels_per_step' in r
    }
    if not counted:
        return ''
    aver = counted.get('aver')
    lines = ['', '', '| row | GPU events per step (profiler) | vs AVER |', '| --- | ---: | ---: |']
    for row, n in counted.items():
        lines.append(f"| {row} | {n:g} | {f'{n / aver:.3f}' if aver else '-'} |")
    return '\n'.join(lines)


def format_precision_table(results: dict, title: str) -> str:
    """The precision check as a Markdown table (speed-up and KD loss change against fp32).

    Args:
        results (dict): :func:`precision_check`'s result.
        title (str): The line above the table (setting, machine).

    Returns:
        str: The table.
    """
    reference = results['fp32']['teacher_forward_s']
    lines = [
        title, '| teachers | forward s | speed-up | loss_logit_kd | change | loss_feat_kd | '
        'change |', '| --- | --- | --- | --- | --- | --- | --- |'
    ]
    for precision, r in results.items():
        lines.append(f"| {precision} | {r['teacher_forward_s']:.4f} | "
                     f"{reference / r['teacher_forward_s']:.2f}x | {r['loss_logit_kd']:.5g} | "
                     f"{100 * r['loss_logit_kd_rel_change']:.3g}% | {r['loss_feat_kd']:.5g} | "
                     f"{100 * r['loss_feat_kd_rel_change']:.3g}% |")
    return '\n'.join(lines)


if __name__ == '__main__':
    main()
