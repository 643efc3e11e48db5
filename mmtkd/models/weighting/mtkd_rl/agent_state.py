"""The agent's input: per-sample states built from :class:`TeacherSignals`."""
from typing import Callable, Dict

import torch
import torch.nn as nn
from torch import Tensor

from ..base_weighting import TeacherSignals


def official_state(signals: TeacherSignals) -> Tensor:
    """Official MTKD-RL state: per teacher ``[cos_m, KL_m, CE_m, e_m, z_m]``, concatenated.

    Args:
        signals (TeacherSignals): The batch's signals.

    Returns:
        Tensor: (B, sum_m (D_m + K + 3)).
    """
    parts = []
    for m, (embedding, summary) in enumerate(zip(signals.embeddings, signals.logit_summaries)):
        parts += [
            signals.feature_cos[:, m:m + 1], signals.logit_kd[:, m:m + 1],
            signals.teacher_loss[:, m:m + 1], embedding, summary
        ]
    return torch.cat(parts, dim=1)


def compact_state(signals: TeacherSignals) -> Tensor:
    """Compact per-teacher statistics ``[KL_m, CE_m, p_m(label), H_m]``, concatenated.

    It lets a policy-gradient agent separate good from poisoned teachers where the official
    state, dominated by raw logits and embeddings, does not (measured in
    docs/agent_behaviour.md).

    Args:
        signals (TeacherSignals): The batch's signals.

    Returns:
        Tensor: (B, 4 * M).
    """
    stats = torch.stack([
        signals.logit_kd, signals.teacher_loss, signals.teacher_confidence, signals.teacher_entropy
    ],
                        dim=2)  # (B, M, 4)
    return stats.flatten(1)


def constant_state(signals: TeacherSignals) -> Tensor:
    """A state that is the same for every sample (ones): the policy learns one weight per
    teacher, not per sample (the per-sample ablation of a learned weighting).

    Args:
        signals (TeacherSignals): The batch's signals (only their size is read).

    Returns:
        Tensor: (B, 1) ones.
    """
    return signals.logit_kd.new_ones(signals.logit_kd.shape[0], 1)


STATE_BUILDERS: Dict[str, Callable[[TeacherSignals], Tensor]] = dict(
    official=official_state, compact=compact_state, constant=constant_state)


def state_dim(kind: str, embed_dims, num_classes: int) -> int:
    """Size of the state vector.

    Args:
        kind (str): ``'official'``, ``'compact'`` or ``'constant'``.
        embed_dims (Sequence[int]): Embedding size of each teacher.
        num_classes (int): Size of each teacher's logit summary.

    Returns:
        int: The state size.
    """
    if kind == 'official':
        return sum(d + num_classes + 3 for d in embed_dims)
    if kind == 'constant':
        return 1
    return 4 * len(embed_dims)


class RunningNormalizer(nn.Module):
    """Running mean / std of states (Chan's parallel update), optional; off in the official code.

    Args:
        dim (int): State size.
        eps (float): Floor of the standard deviation.
    """

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.register_buffer('mean', torch.zeros(dim))
        self.register_buffer('var', torch.ones(dim))
        self.register_buffer('count', torch.zeros(()))
        #: ``count`` on the host (refreshed when a state dict is loaded): the new batch's
        #: share of the states is a Python number, so an update reads nothing off the device
        self._host_count = 0.0

    @torch.no_grad()
    def update(self, states: Tensor) -> None:
        """Fold a batch of states into the running statistics: with ``s`` the batch's share
        of all states so far and ``d`` its mean minus the running mean, ``mean += s d`` and
        ``var = (1 - s) var + s var_batch + s (1 - s) d^2`` (Chan et al.), six kernels.

        Args:
            states (Tensor): (B, dim).
        """
        total = self._host_count + states.shape[0]
        share = states.shape[0] / total
        batch_var, batch_mean = torch.var_mean(states, 0, correction=0)
        delta = batch_mean - self.mean
        self.mean.lerp_(batch_mean, share)
        self.var.lerp_(batch_var, share).addcmul_(delta, delta, value=share * (1 - share))
        self.count.fill_(total)
        self._host_count = total

    def _load_from_state_dict(self, *args, **kwargs) -> None:
        """Load the buffers, then the host copy of ``count`` (one read, at load time)."""
        super()._load_from_state_dict(*args, **kwargs)
        self._host_count = float(self.count)

    @torch.no_grad()
    def sync(self) -> None:
        """Merge the statistics of all ranks (each rank saw the same number of states)."""
        from mmengine import dist
        if dist.get_world_size() < 2:
            return
        second_moment = self.var + self.mean.pow(2)
        dist.all_reduce(self.mean, op='mean')
        dist.all_reduce(second_moment, op='mean')
        self.var.copy_((second_moment - self.mean.pow(2)).clamp(min=0))

    def forward(self, states: Tensor) -> Tensor:
        """Normalise states with the running statistics.

        Args:
            states (Tensor): (B, dim).

        Returns:
            Tensor: (B, dim).
        """
        return (states - self.mean) / (self.var.sqrt() + self.eps)
