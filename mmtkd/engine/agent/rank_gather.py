"""Every rank's stored batches, gathered once per agent update (see
:meth:`mmtkd.engine.AgentLearner.update`)."""
from typing import Dict, List

import torch
from mmengine import dist
from torch import Tensor


def gather_batches(batches: List[Dict[str, Tensor]]) -> List[Dict[str, Tensor]]:
    """Every rank's ``i``-th stored batch, concatenated along the batch dimension in rank order.

    Ranks store batches in lockstep (as many on every rank), but not always of the same size: an
    aspect-ratio batch sampler (mmdet's default) ends an epoch with whatever each rank has left.
    Each stored tensor is gathered once for all batches: every rank lays its batches end to end,
    each padded to the largest rank's size of that batch, and the padding is trimmed after the
    all-gather. mmengine's ``all_gather`` runs on the process group's device (a GPU under NCCL)
    and hands back tensors on the input's (here the host).

    Args:
        batches (list[dict]): This rank's stored batches: tensors whose first dimension is the
            batch, the same keys in every batch.

    Returns:
        list[dict]: The global batches, the same on every rank (``batches`` itself on a single
        process).
    """
    if dist.get_world_size() < 2 or not batches:
        return batches
    sizes = torch.tensor([next(iter(batch.values())).shape[0] for batch in batches])
    sizes = torch.stack(dist.all_gather(sizes)).tolist()  # [rank][batch]
    largest = [max(column) for column in zip(*sizes)]
    gathered: List[Dict[str, Tensor]] = [{} for _ in batches]
    for key in batches[0]:
        padded = torch.cat([_padded(batch[key], n) for batch, n in zip(batches, largest)])
        ranks = [part.split(largest) for part in dist.all_gather(padded)]
        for i, merged in enumerate(gathered):
            merged[key] = torch.cat(
                [parts[i][:rank_sizes[i]] for parts, rank_sizes in zip(ranks, sizes)])
    return gathered


def _padded(value: Tensor, size: int) -> Tensor:
    """``value`` with zero rows appended up to ``size`` rows (itself when it has them)."""
    if value.shape[0] == size:
        return value
    return torch.cat([value, value.new_zeros((size - value.shape[0], *value.shape[1:]))])
