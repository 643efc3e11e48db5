"""Memory an averaged copy of the distiller holds: what MMEngine's ``EMAHook`` allocates.

``EMAHook`` averages a deep copy of ``runner.model``. For a distiller that copy shares the frozen
teachers (``MultiTeacherDistiller.__deepcopy__``); this prints, for each row of ``speed.py``, the
bytes of the distiller's parameters and buffers, the teachers' share of them, and the bytes a
copy allocates that the distiller does not already hold.

Usage:
    python tools/benchmark/ema_copy.py [--rows aver mtkd_rl ...]
                                       [--out work_dirs/benchmark/ema_copy.json]
"""
import copy
from typing import Iterable

import torch

from mmtkd.benchmark import speed

MIB = 2**20


def storage_bytes(tensors: Iterable[torch.Tensor]) -> int:
    """Bytes of the distinct storages behind ``tensors``."""
    unique = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in tensors}
    return sum(unique.values())


def measure(row: str, args) -> dict:
    """The distiller's, its teachers' and one deep copy's own bytes, in MiB.

    Args:
        row (str): A ``speed.py`` row.
        args: ``speed.py``'s step arguments.

    Returns:
        dict: ``distiller``, ``teachers`` and ``copy`` (what the copy allocates anew) in MiB.
    """
    distiller = speed.build_distiller(row, args)[0]
    tensors = list(distiller.parameters()) + list(distiller.buffers())
    held = {t.untyped_storage().data_ptr() for t in tensors}
    twin = copy.deepcopy(distiller)
    new = [
        t for t in list(twin.parameters()) + list(twin.buffers())
        if t.untyped_storage().data_ptr() not in held
    ]
    teachers = list(distiller.teachers.parameters()) + list(distiller.teachers.buffers())
    return dict(
        distiller=storage_bytes(tensors) / MIB,
        teachers=storage_bytes(teachers) / MIB,
        copy=storage_bytes(new) / MIB)


def main() -> None:
    args = speed.parse_step_args(__doc__.splitlines()[0], 'ema_copy.json')
    results = {row: measure(row, args) for row in args.rows}
    lines = [
        '| row | distiller MiB | of which teachers | a deep copy (EMAHook) allocates MiB |',
        '| --- | ---: | ---: | ---: |'
    ] + [
        f"| {row} | {r['distiller']:.1f} | {r['teachers']:.1f} | {r['copy']:.1f} |"
        for row, r in results.items()
    ]
    table = '\n'.join(lines)
    print(table)
    speed.write_results(results, table, args)


if __name__ == '__main__':
    main()
