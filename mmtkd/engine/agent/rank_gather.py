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
    A batch smaller than the largest rank's is padded for the all-gather and trimmed after it.
    mmengine's ``all_gather`` runs on the process group's device (a GPU under NCCL) and hands
    back tensors on the input's (here the host).

    Args:
        batches (list[dict]): This rank's stored batches: tensors whose first dimension is the
            batch.

    Returns:
        list[dict]: The global batches, the same on every rank (``batches`` itself on a single
        process).
    """
    if dist.get_world_size() < 2 or not batches:
        return batches
    sizes = torch.tensor([next(iter(batch.values())).shape[0] for batch in batches])
    sizes = torch.stack(dist.all_gather(sizes)).tolist()  # [rank][batch]
    gathered = []
    for i, batch in enumerate(batches):
        largest = max(rank_sizes[i] for rank_sizes in sizes)
        merged = {}
        for key, value in batch.items():
            if value.shape[0] < largest:
                padding = value.new_zeros((largest - value.shape[0], *value.shape[1:]))
                value = torch.cat([value, padding])
            parts = dist.all_gather(value)
            merged[key] = torch.cat(
                [part[:rank_sizes[i]] for part, rank_sizes in zip(parts, sizes)])
        gathered.append(merged)
    return gathered
