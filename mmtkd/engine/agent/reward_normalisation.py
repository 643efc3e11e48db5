"""Rewards of the stored batches normalised over the global batch (all ranks) or a window.

The official code normalises each batch's rewards within the batch:
``clamp((r - mean) / std, 0, 1)``. With one image per process that is 0 for every sample, and
the agent never learns; detectors and segmentors train at 1-2 images per GPU. Here the raw
rewards are stored and normalised when the agent is updated, with statistics merged across
ranks (two all-reduces per update, none per step):

* ``'batch'``: each stored batch against the statistics of the same iteration's global batch
  (every rank's samples). Single-process with two or more samples this is the official rule.
  A global batch of one sample is normalised against the window instead.
* ``'window'``: every stored batch against the statistics of all rewards stored since the last
  update on every rank (the last ``interval`` iterations).
"""
from typing import List

import torch
from mmengine import dist
from torch import Tensor

REWARD_NORMS = ('batch', 'window')


def _all_reduce_sum(tensor: Tensor) -> Tensor:
    if dist.get_world_size() > 1:
        dist.all_reduce(tensor, op='sum')
    return tensor


def _standardise(reward: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    # decided on the device: std of 0 (or of a single sample) gives zeros, never NaN
    valid = torch.isfinite(std) & (std > 1e-12)
    return torch.where(valid, (reward - mean) / std.clamp(min=1e-12), torch.zeros_like(reward))


def normalise_rewards(rewards: List[Tensor], mode: str, clamp: bool) -> List[Tensor]:
    """Normalise the raw rewards of the stored batches.

    Every rank must call this with the same number of batches (the buffer fills in lockstep).

    Args:
        rewards (list[Tensor]): One (B,) tensor of raw rewards per stored batch, in order.
        mode (str): ``'batch'`` or ``'window'`` (see the module docstring).
        clamp (bool): Clamp to [0, 1] (official: below-average samples get 0).

    Returns:
        list[Tensor]: The normalised rewards, same shapes.
    """
    if mode not in REWARD_NORMS:
        raise ValueError(f'reward_norm must be one of {REWARD_NORMS}, got {mode!r}')
    if not rewards:
        return []
    stats = torch.stack([
        torch.stack([r.double().sum(),
                     r.new_tensor(r.numel(), dtype=torch.double)]) for r in rewards
    ])  # (N, 2): sum, count
    _all_reduce_sum(stats)
    batch_mean = stats[:, 0] / stats[:, 1].clamp(min=1)
    window_mean = stats[:, 0].sum() / stats[:, 1].sum().clamp(min=1)
    # second pass: squared deviations from the global means (no cancellation of large means)
    squares = torch.stack([
        torch.stack([(r.double() - m).pow(2).sum(), (r.double() - window_mean).pow(2).sum()])
        for r, m in zip(rewards, batch_mean)
    ])  # (N, 2)
    _all_reduce_sum(squares)
    count = stats[:, 1]
    batch_std = (squares[:, 0] / (count - 1).clamp(min=1)).sqrt()
    window_std = (squares[:, 1].sum() / (count.sum() - 1).clamp(min=1)).sqrt()
    batch_std = torch.where(count > 1, batch_std, torch.zeros_like(batch_std))
    window_std = torch.where(count.sum() > 1, window_std, torch.zeros_like(window_std))
    use_batch = (count > 1) if mode == 'batch' else torch.zeros_like(count, dtype=torch.bool)
    normalised = []
    for i, reward in enumerate(rewards):
        mean = torch.where(use_batch[i], batch_mean[i], window_mean)
        std = torch.where(use_batch[i], batch_std[i], window_std)
        out = _standardise(reward.double(), mean, std).to(reward.dtype)
        normalised.append(out.clamp(0, 1) if clamp else out)
    return normalised
