"""Run a model in train mode without touching its normalisation statistics."""
from contextlib import contextmanager
from typing import Iterator

import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm


@contextmanager
def frozen_norm_stats(model: nn.Module) -> Iterator[None]:
    """Inside the block, batch-norm layers normalise with batch statistics (train mode) but do
    not update their running statistics.

    Args:
        model (nn.Module): Any model.

    Yields:
        None
    """
    saved = []
    for module in model.modules():
        if isinstance(module, _BatchNorm) and module.track_running_stats:
            tracked = None if module.num_batches_tracked is None else \
                module.num_batches_tracked.clone()
            saved.append((module, module.momentum, tracked))
            module.momentum = 0.0
    try:
        yield
    finally:
        for module, momentum, tracked in saved:
            module.momentum = momentum
            if tracked is not None:
                module.num_batches_tracked.copy_(tracked)
