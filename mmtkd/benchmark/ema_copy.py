"""What an averaged copy of the distiller costs: MMEngine's ``EMAHook``.

``EMAHook`` averages a deep copy of ``runner.model``. For a distiller the copy shares the frozen
teachers (``MultiTeacherDistiller.__deepcopy__``) and the averaging leaves them alone (its
``parameters()`` and ``buffers()`` are what it trains). For each row of ``speed.py`` this prints
the bytes of the distiller's tensors, the teachers' share of them, the bytes a copy allocates
that the distiller does not already hold, and the kernels of one averaging step
(``ExponentialMovingAverage.update_parameters``) with ``update_buffers`` True (RTMDet's, YOLOX's
recipes) and False (mmengine's default), against the same for the student alone.

Usage:
    python tools/benchmark/ema_copy.py [--rows aver mtkd_rl ...]
                                       [--out work_dirs/benchmark/ema_copy.json]
"""
import copy

import torch
from mmengine.model import ExponentialMovingAverage

from mmtkd.benchmark import speed
from mmtkd.benchmark.host_ops import count_ops
from mmtkd.benchmark.step_memory import module_tensors, resident_bytes

MIB = 2**20


def averaging_kernels(model: torch.nn.Module, update_buffers: bool) -> int:
    """Kernels of one ``ExponentialMovingAverage`` step of ``model`` (after its first, a copy).

    Args:
        model (nn.Module): The averaged model.
        update_buffers (bool): ``EMAHook``'s setting.

    Returns:
        int: The kernels the step dispatches.
    """
    averaged = ExponentialMovingAverage(model, update_buffers=update_buffers)
    averaged.update_parameters(model)
    return count_ops(lambda: averaged.update_parameters(model))['kernels']


def measure(row: str, args) -> dict:
    """The distiller's, its teachers' and one deep copy's own bytes (MiB), and the kernels of
    averaging the distiller and its student.

    Args:
        row (str): A ``speed.py`` row.
        args: ``speed.py``'s step arguments.

    Returns:
        dict: ``distiller``, ``teachers``, ``copy`` (what a copy allocates anew) in MiB, and
        ``kernels`` ``{model: {update_buffers: kernels}}`` for ``distiller`` and ``student``.
    """
    distiller = speed.build_distiller(row, args)[0]
    held = {t.untyped_storage().data_ptr() for t in module_tensors(distiller)}
    twin = copy.deepcopy(distiller)
    new = [t for t in module_tensors(twin) if t.untyped_storage().data_ptr() not in held]
    return dict(
        distiller=resident_bytes(module_tensors(distiller)) / MIB,
        teachers=resident_bytes(module_tensors(distiller.teachers)) / MIB,
        copy=resident_bytes(new) / MIB,
        kernels={
            name: {
                str(flag): averaging_kernels(model, flag)
                for flag in (True, False)
            }
            for name, model in (('distiller', distiller), ('student', distiller.student))
        })


def main() -> None:
    args = speed.parse_step_args(__doc__.splitlines()[0], 'ema_copy.json')
    results = {row: measure(row, args) for row in args.rows}
    lines = [
        '| row | distiller MiB | of which teachers | a deep copy (EMAHook) allocates MiB | '
        'averaging kernels, update_buffers True / False | the student alone |',
        '| --- | ---: | ---: | ---: | ---: | ---: |'
    ] + [
        f"| {row} | {r['distiller']:.1f} | {r['teachers']:.1f} | {r['copy']:.1f} | "
        f"{r['kernels']['distiller']['True']} / {r['kernels']['distiller']['False']} | "
        f"{r['kernels']['student']['True']} / {r['kernels']['student']['False']} |"
        for row, r in results.items()
    ]
    table = '\n'.join(lines)
    print(table)
    speed.write_results(results, table, args)


if __name__ == '__main__':
    main()
