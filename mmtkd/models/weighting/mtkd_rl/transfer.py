"""Host <-> GPU copies that do not make the training loop wait for the GPU.

A plain ``tensor.cpu()`` of a CUDA tensor, or ``tensor.to('cuda')`` of a pageable host tensor,
blocks the Python thread until every kernel queued before it has run. The distiller's step is
launch-bound on fast GPUs (the host queues kernels barely faster than the GPU runs them), so one
such copy per iteration leaves the GPU idle while the host catches up. Copies through pinned
host memory with ``non_blocking=True`` are queued like kernels instead.
"""
import torch
from torch import Tensor


def to_host_async(tensor: Tensor) -> Tensor:
    """A host copy of ``tensor``, queued on the current stream when ``tensor`` is on a GPU.

    The copy's values are only valid once the stream has reached it: synchronise the stream
    (``torch.cuda.current_stream(device).synchronize()``) before reading them.

    Args:
        tensor (Tensor): Any tensor (already detached).

    Returns:
        Tensor: A CPU tensor (pinned when ``tensor`` is on a GPU).
    """
    if tensor.device.type != 'cuda':
        return tensor.cpu()
    host = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True)
    host.copy_(tensor, non_blocking=True)
    return host


def to_device_async(tensor: Tensor, like: Tensor) -> Tensor:
    """``tensor.to(like)`` (device and dtype), queued without blocking when ``like`` is on a GPU.

    Args:
        tensor (Tensor): A CPU tensor.
        like (Tensor): Gives the target device and dtype.

    Returns:
        Tensor: ``tensor`` on ``like``'s device, with its dtype.
    """
    if like.device.type != 'cuda':
        return tensor.to(like)
    return tensor.pin_memory().to(like.device, dtype=like.dtype, non_blocking=True)
