"""Let ``torch.load``'s safe (``weights_only``) mode read checkpoints MMEngine itself writes.

Since torch 2.6, ``torch.load`` defaults to ``weights_only=True``; MMEngine 0.10.7 calls it without
the argument, so resuming from its own checkpoints (message hub with ``HistoryBuffer`` and numpy
scalars, scheduler state with ``Counter``) fails with ``UnpicklingError``. Instead of switching
safety off, the specific trusted types found in MMEngine checkpoints are allow-listed with
``torch.serialization.add_safe_globals``.

One more global is needed: ``HistoryBuffer`` pickles its statistics methods, which protocol 2
writes as ``getattr(HistoryBuffer, 'min')``. Allowing the real ``getattr`` would let a crafted
file reach any attribute of any allowed object, so ``builtins.getattr`` is mapped to
:func:`history_buffer_getattr`, which only resolves ``HistoryBuffer``'s statistics methods.
"""
import pickle
from importlib import import_module
from typing import Any, List

import numpy as np
import torch

#: ``(module, attribute)`` pairs that MMEngine checkpoints pickle.
_TRUSTED = [
    ('mmengine.logging.history_buffer', 'HistoryBuffer'),
    ('numpy', 'ndarray'),
    ('numpy', 'dtype'),
    ('numpy.core.multiarray', '_reconstruct'),
    ('numpy._core.multiarray', '_reconstruct'),
    ('numpy.core.multiarray', 'scalar'),
    ('numpy._core.multiarray', 'scalar'),
    ('collections', 'OrderedDict'),
    ('collections', 'Counter'),
    ('builtins', 'set'),
]


def history_buffer_getattr(obj: Any, name: str) -> Any:
    """``getattr`` restricted to ``HistoryBuffer.<statistics method>``.

    Args:
        obj (Any): Must be the ``HistoryBuffer`` class.
        name (str): A registered statistics method name (``min``, ``max``, ``mean``, ...).

    Returns:
        Any: The method.

    Raises:
        pickle.UnpicklingError: For anything else.
    """
    from mmengine.logging import HistoryBuffer
    allowed = {'min', 'max', 'current', 'mean'} | set(HistoryBuffer._statistics_methods)
    if obj is HistoryBuffer and name in allowed:
        return getattr(obj, name)
    raise pickle.UnpicklingError(
        f'weights-only load: getattr({obj!r}, {name!r}) is not allowed (mmtkd only allows '
        'HistoryBuffer statistics methods)')


def _numpy_dtype_classes() -> List[type]:
    """The per-dtype classes (``numpy.dtypes.Float64DType``, ...) that pickled dtypes use."""
    dtypes = getattr(np, 'dtypes', None)
    if dtypes is None:
        return []
    return [getattr(dtypes, n) for n in dir(dtypes) if n.endswith('DType')]


def allow_mmengine_checkpoints() -> None:
    """Register MMEngine's trusted checkpoint types with torch's safe loader (idempotent)."""
    add_safe_globals = getattr(torch.serialization, 'add_safe_globals', None)
    if add_safe_globals is None:  # torch < 2.4 loads everything anyway
        return
    trusted = _numpy_dtype_classes()
    for module_name, attr in _TRUSTED:
        try:
            trusted.append(getattr(import_module(module_name), attr))
        except (ImportError, AttributeError):
            continue
    add_safe_globals(trusted + [(history_buffer_getattr, 'builtins.getattr')])
