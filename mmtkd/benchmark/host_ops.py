"""Operators dispatched and host-device synchronisations per training step, measured on CPU.

On a GPU the headline detection step is launch-bound (docs/benchmarks.md): the host queues
kernels more slowly than the GPU runs them, so what a method adds to the iteration time is the
operators it dispatches and the points where the host must wait for the GPU. Both can be
counted on a CPU: every operator that reaches the dispatcher below autograd costs host time,
those that are not views (whose output is not an alias of an input) are one kernel launch each
on a GPU, and the operators whose result the host must read (``item()``, ``bool(tensor)``,
``nonzero``, boolean-mask indexing, ...) are synchronisations there.

The counts are the CPU code path's. Where a library picks another path on CUDA they differ:
mmdet's focal loss runs mmcv's fused kernel on CUDA and a Python fallback on CPU (about 15
operators and two synchronisations, from ``F.one_hot`` checking its labels, per call; the
student's loss here runs 19 of that form per call without the synchronisations, the teachers'
no-grad losses 7 per call on targets built once, ``anchor_head_losses.summed_focal_loss_``).

For each row (the ``speed.py`` rows, same distillers) it runs ``--warmup`` training steps, then
counts one step with a ``TorchDispatchMode``, and prints a table with the counts and their
ratio to AVER, the operators each method dispatches more often than AVER (AVER: than the floor),
and each row's kernels by the phase of the step that launched them
(:mod:`mmtkd.benchmark.kernel_phases`: the teachers' forwards, their losses, the student's
forward, each KD term, the weighting, the backward pass, the optimiser, ...).

Usage:
    python tools/benchmark/host_ops.py [--size 320] [--batch 2] [--rows floor aver mtkd_rl ...]
                                       [--out work_dirs/benchmark/host_ops.json]
"""
import collections

from mmtkd.benchmark import speed
from mmtkd.benchmark.kernel_phases import HOST_PHASE, current_phase

# operators whose CUDA kernels hand a value back to the host (the host waits for the GPU)
SYNC_OPS = ('aten::_local_scalar_dense', 'aten::nonzero', 'aten::is_nonzero', 'aten::masked_select',
            'aten::_unique2', 'aten::unique_dim', 'aten::unique_consecutive',
            'aten::repeat_interleave', 'aten::nonzero_static')
# operators that synchronise when one of their index tensors is a boolean mask
MASK_INDEX_OPS = ('aten::index', 'aten::index_put', 'aten::index_put_', 'aten::_index_put_impl_')


def _op_name(func) -> str:
    """``aten::add_`` for the overload packet of ``func``."""
    return 'aten::' + func.__name__.split('.')[0]


# views whose schema does not say so (``reshape`` of a contiguous tensor dispatches this)
UNANNOTATED_VIEWS = ('aten::_unsafe_view', )


def _is_view(func) -> bool:
    """Whether the operator returns a view of an input (no kernel: an alias it does not
    write)."""
    return _op_name(func) in UNANNOTATED_VIEWS or any(
        r.alias_info is not None and not r.alias_info.is_write for r in func._schema.returns)


def _has_bool_index(args) -> bool:
    """Whether an index argument of an indexing operator is a boolean mask."""
    import torch
    for arg in args[1:]:
        if isinstance(arg, (list, tuple)):
            if any(isinstance(a, torch.Tensor) and a.dtype == torch.bool for a in arg):
                return True
    return False


def count_ops(fn) -> dict:
    """Run ``fn`` once under a dispatch mode that counts the operators it dispatches.

    Args:
        fn (Callable): One training step.

    Returns:
        dict: ``ops`` (all operators), ``kernels`` (those that are not views), ``syncs``
        (those that synchronise on a GPU), ``by_op`` (count per operator),
        ``syncs_by_op`` and ``kernels_by_phase`` (:func:`~mmtkd.benchmark.kernel_phases.
        current_phase`: the step's phase that launched each kernel).
    """
    from torch.utils._python_dispatch import TorchDispatchMode

    by_op, syncs_by_op = collections.Counter(), collections.Counter()
    by_phase, syncs_by_phase = collections.Counter(), collections.Counter()
    views = [0]

    class Counter(TorchDispatchMode):

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            name = _op_name(func)
            by_op[name] += 1
            if _is_view(func):
                views[0] += 1
            else:
                phase = current_phase(skip=2)
                by_phase[phase] += 1
                if name in SYNC_OPS or (name in MASK_INDEX_OPS and _has_bool_index(args)):
                    syncs_by_op[name] += 1
                    syncs_by_phase[phase] += 1
            return func(*args, **(kwargs or {}))

    with Counter():
        fn()
    ops = sum(by_op.values())
    return dict(
        ops=ops,
        kernels=ops - views[0],
        syncs=sum(syncs_by_op.values()),
        by_op=dict(by_op),
        syncs_by_op=dict(syncs_by_op),
        kernels_by_phase=dict(by_phase),
        syncs_by_phase=dict(syncs_by_phase))


def per_step(counts: dict, steps: int) -> dict:
    """:func:`count_ops`'s counts of ``steps`` consecutive steps, per step.

    Args:
        counts (dict): What :func:`count_ops` returned.
        steps (int): How many steps it counted.

    Returns:
        dict: Every count divided by ``steps``: the totals and each per-operator and per-phase
        count.
    """
    return {
        key: ({
            k: n / steps
            for k, n in value.items()
        } if isinstance(value, dict) else value / steps)
        for key, value in counts.items()
    }


def measure(row: str, args) -> dict:
    """Counts for one row: ``--warmup`` uncounted steps, then the counted steps (and, for
    MTKD-RL, one agent update over the batches those steps stored). A floor row
    (:data:`speed.FLOORS`) counts the student's step and each teacher's no-grad forward (and,
    for ``floor_teacher_losses``, its own loss).

    A reward that measures one step in ``every`` is counted over ``every`` consecutive steps
    and the counts divided by ``every``: the amortised step (``steps_counted`` says how many).
    """
    training = speed.training_step(row, args)
    step = speed.floor_step(training, args, row) if row in speed.FLOORS else training.step

    for _ in range(args.warmup):
        step()
    period = speed.reward_period(training)
    result = per_step(count_ops(lambda: [step() for _ in range(period)]), period)
    result['steps_counted'] = period
    result['teacher_losses'] = speed.reads_teacher_losses(training.distiller)
    learner = training.learner
    if learner is not None and learner.buffer:
        stored = len(learner.buffer)  # before the update, which empties the buffer
        update = count_ops(learner.update)
        # the learning itself runs on the host whatever the device (kernel_phases.HOST_PHASE):
        # counted apart, as host operations, not as kernels or synchronisations
        host = update['kernels_by_phase'].get(HOST_PHASE, 0)
        result['agent_update'] = dict(
            ops=update['ops'],
            kernels=update['kernels'] - host,
            syncs=update['syncs'] - update['syncs_by_phase'].get(HOST_PHASE, 0),
            host_ops=host,
            batches=stored)
    return result


def format_table(results: dict, args) -> str:
    """Counts per row, their ratios to AVER and the row's kernels over its floor's (``floor``;
    ``floor_feature_only`` for the feature-only rows) and over its floor with the teacher work
    its weighting reads (:func:`speed.floor_of`) where the floor was counted, as Markdown."""
    aver = results.get('aver')
    lines = [
        f'Operators dispatched per training step (one kernel launch each on a GPU) and '
        f'host-device synchronisations, {speed.STEP_SETTINGS[args.task].title}, '
        f'batch {args.batch} x {args.size}x{args.size}', '',
        '| row | operators | vs AVER | kernels (not views) | vs AVER | syncs | '
        'syncs vs AVER | agent update per replayed batch (kernels / syncs; host operations) | '
        'kernels vs floor | '
        'vs floor with its signals |',
        '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |'
    ]

    def ratio(r: dict, key: str, digits: int) -> str:
        return f'{r[key] / aver[key]:.{digits}f}' if aver and aver[key] else '-'

    for row, r in results.items():
        update = r.get('agent_update')
        update_text = (f"{update['kernels'] / update['batches']:.1f} / "
                       f"{update['syncs'] / update['batches']:.1f}; "
                       f"{update['host_ops'] / update['batches']:.0f}") if update else '-'
        vs_floors = speed.format_floor_ratios(results, row, 'kernels')
        lines.append(f"| {row} | {r['ops']:g} | {ratio(r, 'ops', 3)} | {r['kernels']:g} | "
                     f"{ratio(r, 'kernels', 3)} | {r['syncs']:g} | {ratio(r, 'syncs', 2)} | "
                     f'{update_text} | {vs_floors} |')
    return '\n'.join(lines)


def format_excess(results: dict, row: str, base: str = 'aver', top: int = 15) -> str:
    """The operators ``row`` dispatches more often than ``base`` (AVER, or the floor for AVER
    itself), most first: where its extra kernels go.

    Args:
        results (dict): Counts per row (``by_op`` and ``syncs_by_op`` of each).
        row (str): The row explained.
        base (str): The row it is compared with. Defaults to ``'aver'``.
        top (int): The most operators listed. Defaults to 15.

    Returns:
        str: A Markdown table ('' when either row was not counted or nothing is extra).
    """
    if base not in results or row not in results:
        return ''
    ours, theirs = results[row]['by_op'], results[base]['by_op']
    excess = sorted(((n - theirs.get(op, 0), op) for op, n in ours.items()), reverse=True)
    if not excess or excess[0][0] <= 0:
        return ''
    lines = [
        f'\n{row}: operators dispatched more often than by {base} (per step)', '',
        '| operator | extra calls | of which syncs |', '| --- | ---: | ---: |'
    ]
    syncs, base_syncs = results[row]['syncs_by_op'], results[base]['syncs_by_op']
    for extra, op in excess[:top]:
        if extra <= 0:
            break
        lines.append(f'| {op} | {extra:.4g} | {syncs.get(op, 0) - base_syncs.get(op, 0):.4g} |')
    return '\n'.join(lines)


def format_excesses(results: dict) -> str:
    """:func:`format_excess` of AVER over the floor and of every other method over AVER."""
    tables = [format_excess(results, 'aver', base='floor')]
    tables += [
        format_excess(results, row) for row in results
        if row not in ('aver', 'student') and row not in speed.FLOORS
    ]
    return ''.join(tables)


def format_phases(results: dict, least: int = 5) -> str:
    """Kernels per step by the phase that launched them (``kernels_by_phase``), one column per
    row: where each method's kernels go.

    Args:
        results (dict): Counts per row.
        least (int): Phases with fewer kernels than this in every row are summed into one
            ``(smaller phases)`` line. Defaults to 5.

    Returns:
        str: A Markdown table, phases with the most kernels first ('' when no row has
        ``kernels_by_phase``).
    """
    rows = [row for row, r in results.items() if 'kernels_by_phase' in r]
    if not rows:
        return ''
    phases = collections.Counter()
    for row in rows:
        for phase, n in results[row]['kernels_by_phase'].items():
            phases[phase] = max(phases[phase], n)
    lines = [
        '\nKernels per step by the phase that launched them (mmtkd.benchmark.kernel_phases)', '',
        '| phase | ' + ' | '.join(rows) + ' |', '| --- |' + ' ---: |' * len(rows)
    ]
    small = collections.Counter()
    for phase, most in phases.most_common():
        counts = [results[row]['kernels_by_phase'].get(phase, 0) for row in rows]
        if most < least:
            for row, n in zip(rows, counts):
                small[row] += n
            continue
        lines.append(f'| {phase} | ' + ' | '.join(f'{n:g}' for n in counts) + ' |')
    if small:
        lines.append('| (smaller phases) | ' + ' | '.join(f'{small[row]:g}' for row in rows) + ' |')
    lines.append('| total | ' + ' | '.join(f"{results[row]['kernels']:g}" for row in rows) + ' |')
    return '\n'.join(lines)


def main() -> None:
    args = speed.parse_step_args(__doc__.splitlines()[0], 'host_ops.json', floors=True)
    results = {}
    for row in args.rows:
        print(f'[host_ops] counting {row} ...', flush=True)
        results[row] = measure(row, args)
    table = format_table(results, args) + format_excesses(results) + '\n' + format_phases(results)
    print(table)
    speed.write_results(results, table, args)


if __name__ == '__main__':
    main()
