"""Rewards of the stored batches normalised over the global batch (all ranks) or a window.

The official code normalises each batch's rewards within the batch:
``clamp((r - mean) / std, 0, 1)``. With one image per process that is 0 for every sample, and
the agent never learns; detectors and segmentors train at 1-2 images per GPU. Here the raw
rewards are stored and normalised when the agent is updated, on the stored batches of every rank
(the learner gathers them first, :meth:`~mmtkd.engine.AgentLearner.update`):

* ``'batch'``: each stored batch against the statistics of the same iteration's global batch
  (every rank's samples). Single-process with two or more samples this is the official rule.
  A global batch of one sample is normalised against the window instead.
* ``'window'``: every stored batch against the statistics of all rewards stored since the last
  update on every rank (the last ``interval`` iterations).
"""
from typing import List, Optional, Sequence

import torch
from torch import Tensor
from torch.nn.utils.rnn import pad_sequence

from mmtkd.models.weighting.mtkd_rl.mtkd_rl_weighting import REWARD_NORMS


def _standardise(reward: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    # decided on the device: std of 0 (or of a single sample) gives zeros, never NaN
    valid = torch.isfinite(std) & (std > 1e-12)
    return torch.where(valid, (reward - mean) / std.clamp(min=1e-12), torch.zeros_like(reward))


def normalise_credit(rewards: List[Tensor],
                     scale: str = 'window_std',
                     veto_penalty: float = 3.0,
                     channels: Optional[Sequence[str]] = None,
                     feature_scale: Optional[str] = None) -> List[Tensor]:
    """Normalise per-teacher rewards: each sample's credits centred over its teachers (the
    baseline of a full-information policy gradient), then, with ``scale='window_std'``, scaled
    by their standard deviation over the window on every rank.

    Rewards with more than one channel (B, M, C) (:attr:`BaseReward.channels`) are normalised
    per channel: the ``'credit'`` and, if any, the ``'feature_credit'`` each as above; a
    teacher whose ``'veto'`` agreement is negative on average over the window (every rank)
    then loses ``veto_penalty`` from every credit of the ``'credit'`` channel, in the
    normalised credit's units: with ``window_std`` and the credit update's ``tau`` = 0.5, a
    penalty of 3 divides its optimal weight by ``e^6`` (about 400).

    Args:
        rewards (list[Tensor]): One (B, M) (or (B, M, C)) tensor per stored batch.
        scale (str): ``'window_std'``, ``'none'`` (centred only, the reward's own units) or
            ``'hinge'`` (:func:`hinged_at_zero` first, then centred, in the reward's units).
        veto_penalty (float): What a vetoed teacher loses. Defaults to 3.
        channels (Sequence[str], optional): The rewards' channels; None: ``('credit', )`` for
            (B, M) rewards, ``('credit', 'veto')`` for (B, M, 2) ones.
        feature_scale (str, optional): ``scale`` of the ``'feature_credit'`` channel; None: the
            same as the credit's.

    Returns:
        list[Tensor]: The normalised credits: (B, M), the credit of both heads, or (B, 2, M),
        the logit head's and the feature head's, with a ``'feature_credit'`` channel.
    """
    if not rewards:
        return []
    if channels is None:
        channels = ('credit', 'veto') if rewards[0].dim() == 3 else ('credit', )
    given = rewards[0].shape[-1] if rewards[0].dim() == 3 else 1
    if given != len(channels):
        raise ValueError(f'normalise_credit: the rewards have {given} channel(s), the reward '
                         f'declares {tuple(channels)}; a per-teacher reward returning (B, M, C) '
                         'sets its channels attribute (BaseReward.channels)')
    if len(channels) == 1:
        return _centred_credit(rewards, scale)
    by_channel = {name: [r[..., c] for r in rewards] for c, name in enumerate(channels)}
    credit = _centred_credit(by_channel['credit'], scale)
    if 'veto' in by_channel:
        vetoed = window_means(by_channel['veto']) < 0
        penalty = vetoed.to(credit[0].dtype) * veto_penalty
        credit = [c - penalty for c in credit]
    if 'feature_credit' not in by_channel:
        return credit
    feature = _centred_credit(by_channel['feature_credit'], feature_scale or scale)
    return [torch.stack([logit, feat], 1) for logit, feat in zip(credit, feature)]


def _centred_credit(rewards: List[Tensor], scale: str) -> List[Tensor]:
    """One channel of (B, M) credits, hinged if asked, centred over teachers, and scaled by
    their window's standard deviation if asked (:func:`normalise_credit`)."""
    if scale == 'hinge':
        rewards = hinged_at_zero(rewards)
    centred = [r - r.mean(1, keepdim=True) for r in rewards]
    if scale == 'window_std':
        flat = normalise_rewards([c.flatten() for c in centred], 'window', clamp=False)
        centred = [f.view_as(c) for f, c in zip(flat, centred)]
    return centred


def window_means(rewards: List[Tensor]) -> Tensor:
    """Each teacher's mean credit over the window.

    Args:
        rewards (list[Tensor]): One (B, M) tensor per stored batch.

    Returns:
        Tensor: (M,) the means, in the rewards' dtype.
    """
    flat = torch.cat(rewards).double()
    sums = torch.cat([flat.sum(0), flat.new_tensor([flat.shape[0]])])
    return (sums[:-1] / sums[-1].clamp(min=1)).to(rewards[0].dtype)


def hinged_at_zero(rewards: List[Tensor]) -> List[Tensor]:
    """Shift each teacher's credits so that a positive mean over the window (every rank) becomes
    zero and a negative one stays: teachers that agree with the task on average are not ranked
    against each other by how much (a soft teacher is not a bad one), only a teacher that pulls
    against the task loses credit.

    Args:
        rewards (list[Tensor]): One (B, M) tensor of raw per-teacher credit per stored batch.

    Returns:
        list[Tensor]: The shifted credits, same shapes.
    """
    mean = window_means(rewards)
    return [r - mean.clamp(min=0) for r in rewards]


def normalise_rewards(rewards: List[Tensor], mode: str, clamp: bool) -> List[Tensor]:
    """Normalise the raw rewards of the stored batches.

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
    # every stored batch a row of one padded (N, B_max) matrix: a few kernels per update, not
    # a few per batch, and deterministic sums (no atomics) so a resumed run stays exact
    sizes = [r.numel() for r in rewards]
    padded = pad_sequence([r.double() for r in rewards], batch_first=True)
    valid = torch.arange(padded.shape[1], device=padded.device) < padded.new_tensor(sizes)[:, None]
    stats = torch.stack([padded.sum(1), padded.new_tensor(sizes)], 1)  # (N, 2): sum, count
    count = stats[:, 1]
    batch_mean = stats[:, 0] / count.clamp(min=1)
    window_mean = stats[:, 0].sum() / count.sum().clamp(min=1)
    # second pass: squared deviations from the global means (no cancellation of large means)
    squares = torch.stack([((padded - batch_mean[:, None]).pow(2) * valid).sum(1),
                           ((padded - window_mean).pow(2) * valid).sum(1)], 1)  # (N, 2)
    batch_std = torch.where(count > 1, (squares[:, 0] / (count - 1).clamp(min=1)).sqrt(), 0.0)
    window_std = (squares[:, 1].sum() / (count.sum() - 1).clamp(min=1)).sqrt()
    window_std = torch.where(count.sum() > 1, window_std, 0.0)
    use_batch = (count > 1) if mode == 'batch' else torch.zeros_like(valid[:, 0])
    mean = torch.where(use_batch, batch_mean, window_mean)[:, None]
    std = torch.where(use_batch, batch_std, window_std)[:, None]
    out = _standardise(padded, mean, std)
    if clamp:
        out = out.clamp(0, 1)
    return [row[:size].to(r.dtype) for row, size, r in zip(out, sizes, rewards)]
