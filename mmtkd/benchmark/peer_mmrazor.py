"""mmtkd side by side with MMRazor on the same single-teacher FPN distillation, on CPU.

RetinaNet-R18-FPN student, one RetinaNet-R50 teacher (random weights written to disk, the same
for every row), the same student initialisation, optimiser (SGD 0.01, momentum 0.9) and batch
(``speed.make_batch``). The feature-KD loss is the same in every row: the mean squared error on
the five FPN levels, ``beta / 5`` per level with ``beta = 5`` (MMRazor: ``L2Loss(normalize=False,
div_element=True, loss_weight=1)`` per level; mmtkd: ``FeatureMSELoss`` with ``beta=5`` and
identity connectors), and the script checks that the first step's value is equal before it
reports anything. Rows:

* ``floor``: the student's training step plus the teacher's backbone and neck without gradients
  (exactly the teacher work FPN feature KD needs);
* ``mmrazor_fpn``: MMRazor ``FpnTeacherDistill`` (teacher backbone + neck, no grad);
* ``mmrazor_single``: MMRazor ``SingleTeacherDistill`` (it runs the teacher in loss mode);
* ``mmtkd_feature``: ``MultiTeacherDistiller`` with one teacher, AVER, ``logit_kd_loss=None``;
* ``mmtkd_feature_logit``: the same with the detection default logit KD (per-anchor sigmoid KL).

Per row (each in its own process): operators and kernels (not views) and host-device
synchronisations of one step (``host_ops.count_ops``), the step's peak tensor memory
(``step_memory``'s allocation replay, plus the resident parameters, buffers and optimiser state),
and the median wall-clock seconds per step, the rows interleaved over ``--repeats``.

MMRazor is never a dependency of mmtkd: :func:`prepare_mmrazor_env` installs the PyPI wheel
``mmrazor==1.0.0`` with ``--no-deps`` into its own virtual environment (which sees this
interpreter's packages) and applies :data:`LOCAL_CHANGES` there; the MMRazor rows run with that
environment's interpreter.

Usage:
    python tools/benchmark/peer_mmrazor.py [--size 320] [--batch 2] [--iters 5] [--repeats 3]
                                           [--env work_dirs/benchmark/mmrazor_env]
"""
import argparse
import copy
import json
import os
import os.path as osp
import re
import statistics
import subprocess
import sys
import time
from typing import Callable, Dict, List, Tuple

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
STUDENT = 'mmdet::retinanet/retinanet_r18_fpn_1x_coco.py'
TEACHER = 'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py'
BETA = 5.0
FPN_LEVELS = 5
ROWS = ('floor', 'mmrazor_fpn', 'mmrazor_single', 'mmtkd_feature', 'mmtkd_feature_logit')
MMRAZOR_ROWS = ('mmrazor_fpn', 'mmrazor_single')
MMRAZOR_WHEEL = 'mmrazor==1.0.0'
#: (file in the mmrazor package, module whose import it drops): the wheel's quantization
#: modules name ``torch.ao`` symbols that torch 2.14 lacks and fail at import; distillation does
#: not use them. Each dropped ``from .X import a, b`` becomes ``a = b = None``.
LOCAL_CHANGES: Tuple[Tuple[str, str], ...] = (
    ('structures/__init__.py', 'quantization'),
    ('models/algorithms/__init__.py', 'quantization'),
    ('models/__init__.py', 'quantizers'),
    ('engine/runner/__init__.py', 'quantization_loops'),
)


def drop_relative_import(path: str, module: str) -> bool:
    """Replace ``from .module import ...`` in ``path`` by placeholders (``*`` by nothing).

    Args:
        path (str): A Python file.
        module (str): The relative module whose import is dropped.

    Returns:
        bool: Whether the file was changed (False when already changed).
    """
    with open(path) as f:
        source = f.read()
    pattern = re.compile(rf'^from \.{re.escape(module)} import (\([^)]*\)|[^\n]*)$', re.M)
    match = pattern.search(source)
    if match is None:
        return False
    names = re.sub(r'#[^\n]*', '', match.group(1)).strip('()').replace('\n', ' ')
    names = [name.strip() for name in names.split(',') if name.strip()]
    marker = '  # mmtkd peer benchmark: quantization disabled (torch.ao on torch 2.14)'
    replacement = ('pass' if names == ['*'] else ' = '.join(names) + ' = None') + marker
    with open(path, 'w') as f:
        f.write(source[:match.start()] + replacement + source[match.end():])
    return True


def prepare_mmrazor_env(env_dir: str) -> str:
    """A virtual environment with MMRazor's wheel and :data:`LOCAL_CHANGES` (idempotent).

    Args:
        env_dir (str): Where the environment lives.

    Returns:
        str: Its Python interpreter.
    """
    python = osp.join(env_dir, 'bin', 'python')
    if not osp.isfile(python):
        subprocess.run([sys.executable, '-m', 'venv', '--system-site-packages', env_dir],
                       check=True)
    site = subprocess.run(
        [python, '-c', "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True).stdout.strip()
    package = osp.join(site, 'mmrazor')
    if not osp.isdir(package):
        subprocess.run([python, '-m', 'pip', 'install', '-q', '--no-deps', MMRAZOR_WHEEL],
                       check=True)
    for relative, module in LOCAL_CHANGES:
        if drop_relative_import(osp.join(package, relative), module):
            print(f'[peer] mmrazor: dropped `from .{module} import` in {relative}')
    return python


def fixtures(work_dir: str) -> Dict[str, str]:
    """The student's initial weights and the teacher's weights, written once."""
    import torch

    from mmtkd.testing import save_model_checkpoint, stock_model, strip_pretrained
    os.makedirs(work_dir, exist_ok=True)
    paths = dict(
        student=osp.join(work_dir, 'student_init.pth'),
        teacher=osp.join(work_dir, 'teacher_r50.pth'))
    for role, config, seed in (('student', STUDENT, 0), ('teacher', TEACHER, 1)):
        if not osp.isfile(paths[role]):
            torch.manual_seed(seed)
            save_model_checkpoint(strip_pretrained(stock_model(config)), paths[role], seed)
    return paths


def _mmrazor_model(row: str, paths: Dict[str, str]):
    import mmrazor.models  # noqa: F401  (registers the algorithms)
    from mmengine.registry import MODELS

    from mmtkd.testing import stock_model, strip_pretrained
    recorder = dict(fpn=dict(type='ModuleOutputs', source='neck'))
    losses, mappings = {}, {}
    for level in range(FPN_LEVELS):
        name = f'loss_fpn{level}'
        losses[name] = dict(
            type='L2Loss', normalize=False, div_element=True, loss_weight=BETA / FPN_LEVELS)
        mappings[name] = dict(
            s_feature=dict(from_student=True, recorder='fpn', data_idx=level),
            t_feature=dict(from_student=False, recorder='fpn', data_idx=level))
    return MODELS.build(
        dict(
            type='mmrazor.FpnTeacherDistill'
            if row == 'mmrazor_fpn' else 'mmrazor.SingleTeacherDistill',
            architecture=strip_pretrained(stock_model(STUDENT)),
            teacher=strip_pretrained(stock_model(TEACHER)),
            teacher_ckpt=paths['teacher'],
            distiller=dict(
                type='mmrazor.ConfigurableDistiller',
                student_recorders=recorder,
                teacher_recorders=copy.deepcopy(recorder),
                distill_losses=losses,
                loss_forward_mappings=mappings)))


def _mmtkd_model(row: str, paths: Dict[str, str]):
    from mmengine.registry import MODELS

    import mmtkd  # noqa: F401
    from mmtkd.testing import stock_model, strip_pretrained
    return MODELS.build(
        dict(
            type='mmtkd.MultiTeacherDistiller',
            student=strip_pretrained(stock_model(STUDENT)),
            teachers=dict(r50=dict(config=stock_model(TEACHER), checkpoint=paths['teacher'])),
            weighting=dict(type='mmtkd.AverageWeighting'),
            logit_kd_loss=None if row == 'mmtkd_feature' else 'task_default',
            feature_kd_loss=dict(type='mmtkd.FeatureMSELoss'),
            adapt_equal_channels=False,
            beta=BETA))


def build_row(row: str, paths: Dict[str, str],
              args: argparse.Namespace) -> Tuple[Callable[[], dict], list]:
    """One training step of ``row`` on the fixed batch, and the tensors it keeps resident.

    Returns:
        tuple: ``step()`` (returns the step's logged values) and the model's parameters,
        buffers and optimiser (for the resident memory).
    """
    import torch
    from mmengine.optim import build_optim_wrapper
    from mmengine.runner.checkpoint import load_checkpoint

    from mmtkd.benchmark.speed import make_batch
    if row in MMRAZOR_ROWS:
        model = _mmrazor_model(row, paths)
        student = model.architecture
    else:
        model = _mmtkd_model(row, paths)
        student = model.student
    load_checkpoint(student, paths['student'], map_location='cpu', logger='silent')
    data = make_batch(args.size, args.batch)
    if row == 'floor':
        teacher = model.teachers['r50']
        optim = build_optim_wrapper(student, _optim_cfg())

        def step():
            batch = student.data_preprocessor(copy.copy(data), True)
            with torch.no_grad():
                teacher.extract_feat(batch['inputs'])
            return student.train_step(copy.copy(data), optim)

        # resident: the student, its optimiser and the teacher, as in the distilling rows
        return step, [torch.nn.ModuleList([student, teacher]), optim]
    model.train()
    optim = build_optim_wrapper(model, _optim_cfg())
    return (lambda: model.train_step(copy.copy(data), optim)), [model, optim]


def _optim_cfg() -> dict:
    return dict(optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=1e-4))


def feature_kd_value(log: dict) -> float:
    """The step's feature-KD loss, as each system logs it."""
    if 'loss_feat_kd' in log:
        return float(log['loss_feat_kd'])
    return float(sum(v for k, v in log.items() if k.startswith('distill.loss_fpn')))


def worker(row: str, args: argparse.Namespace) -> dict:
    """Measure ``row`` in this process."""
    import torch

    from mmtkd.benchmark.host_ops import count_ops
    from mmtkd.benchmark.speed import timed
    from mmtkd.benchmark.step_memory import peak_allocated_bytes, resident_bytes
    torch.manual_seed(0)
    paths = fixtures(args.work_dir)
    step, kept = build_row(row, paths, args)
    first = step()  # also the warm-up
    model, optim = kept
    from mmtkd.benchmark.step_memory import module_tensors, optimizer_state_tensors
    resident = resident_bytes(module_tensors(model) + optimizer_state_tensors(optim))
    counts = count_ops(step)
    replay = peak_allocated_bytes(step)
    times = timed(step, args.iters, 0, 'cpu')
    return dict(
        row=row,
        feature_kd=None if row == 'floor' else feature_kd_value(first),
        kernels=counts['kernels'],
        ops=counts['ops'],
        syncs=counts['syncs'],
        resident_mb=resident / 2**20,
        step_peak_mb=replay['peak'] / 2**20,
        peak_mb=(resident + replay['peak']) / 2**20,
        median_s=statistics.median(times))


def run_worker(row: str, python: str, args: argparse.Namespace) -> dict:
    cmd = [
        python,
        osp.abspath(__file__), '--worker', row, '--size',
        str(args.size), '--batch',
        str(args.batch), '--iters',
        str(args.iters), '--work-dir', args.work_dir
    ]
    env = dict(os.environ, PYTHONPATH=ROOT)  # this checkout's mmtkd in either interpreter
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env)
    lines = [line for line in out.stdout.splitlines() if line.startswith('RESULT ')]
    if out.returncode != 0 or not lines:
        sys.exit(f'[peer] {row} failed:\n{out.stderr[-3000:]}')
    return json.loads(lines[-1][len('RESULT '):])


def check_same_loss(results: Dict[str, dict], rtol: float = 1e-5) -> None:
    """Every distilling row must start from the same feature-KD value (same work)."""
    values = {row: r['feature_kd'] for row, r in results.items() if r['feature_kd'] is not None}
    reference = values['mmrazor_fpn']
    for row, value in values.items():
        if abs(value - reference) > rtol * abs(reference):
            sys.exit(f'[peer] the rows do not do the same work: feature KD {values}')


def format_table(results: Dict[str, dict], args: argparse.Namespace) -> str:
    """The rows as Markdown, with ratios to the floor and to MMRazor's FPN distiller."""
    floor, razor = results['floor'], results['mmrazor_fpn']
    lines = [
        f'One training step, RetinaNet-R18 student, one RetinaNet-R50 teacher, batch '
        f'{args.batch} x {args.size}x{args.size}, CPU; first-step feature KD '
        f"{razor['feature_kd']:.6g} in every distilling row", '',
        '| row | kernels | vs floor | vs MMRazor FPN | syncs | step peak MB | peak MB | '
        'vs floor | vs MMRazor FPN | s / step (median) |',
        '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |'
    ]
    for row, r in results.items():
        lines.append(f"| {row} | {r['kernels']} | {r['kernels'] / floor['kernels']:.3f} | "
                     f"{r['kernels'] / razor['kernels']:.3f} | {r['syncs']} | "
                     f"{r['step_peak_mb']:.1f} | {r['peak_mb']:.1f} | "
                     f"{r['peak_mb'] / floor['peak_mb']:.3f} | "
                     f"{r['peak_mb'] / razor['peak_mb']:.3f} | {r['median_s']:.3f} |")
    return '\n'.join(lines)


def parse_args(argv: List[str] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--size', type=int, default=320)
    parser.add_argument('--batch', type=int, default=2)
    parser.add_argument('--iters', type=int, default=5, help='timed steps per repeat')
    parser.add_argument('--repeats', type=int, default=3, help='interleaved repeats per row')
    parser.add_argument('--rows', nargs='+', default=list(ROWS), choices=ROWS)
    parser.add_argument('--env', default=osp.join('work_dirs', 'benchmark', 'mmrazor_env'))
    parser.add_argument('--work-dir', default=osp.join('work_dirs', 'benchmark', 'peer'))
    parser.add_argument('--out', default=osp.join('work_dirs', 'benchmark', 'peer_mmrazor.json'))
    parser.add_argument('--worker', help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main() -> None:
    args = parse_args()
    args.work_dir = osp.abspath(args.work_dir)
    if args.worker:
        print('RESULT ' + json.dumps(worker(args.worker, args)))
        return
    razor_python = prepare_mmrazor_env(args.env)
    fixtures(args.work_dir)
    runs = {row: [] for row in args.rows}
    for repeat in range(args.repeats):
        for row in args.rows:
            print(f'[peer] {row} ({repeat + 1}/{args.repeats}) ...', flush=True)
            python = razor_python if row in MMRAZOR_ROWS else sys.executable
            runs[row].append(run_worker(row, python, args))
    results = {}
    for row, measured in runs.items():
        results[row] = dict(
            measured[-1], median_s=statistics.median(r['median_s'] for r in measured))
        results[row]['repeats_s'] = [r['median_s'] for r in measured]
    check_same_loss(results)
    table = format_table(results, args)
    print(table)
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    with open(args.out, 'w') as f:
        json.dump(
            dict(
                results=results,
                table=table,
                args=vars(args),
                local_changes=[f'{p}: from .{m} import dropped' for p, m in LOCAL_CHANGES],
                date=time.strftime('%Y-%m-%d')),
            f,
            indent=2)


if __name__ == '__main__':
    main()
