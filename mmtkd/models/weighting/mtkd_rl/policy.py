"""Agent networks mapping a state to per-teacher weights for logit KD and feature KD."""
import math
from typing import NamedTuple, Optional

import torch
import torch.nn as nn
from torch import Tensor

from .transfer import to_device_async


class PolicyOutput(NamedTuple):
    """Per-sample teacher weights of the two heads, and what a policy gradient needs."""
    #: (B, 2, M): the logit head's weights, then the feature head's.
    weights: Tensor
    #: Sampled pre-softmax actions (B, 2, M) (stochastic policy in training), else None.
    actions: Optional[Tensor] = None
    #: Log-probability of ``actions`` (B,), else None.
    log_prob: Optional[Tensor] = None


class SoftmaxPolicy(nn.Module):
    """Official MTKD-RL network: ``h = ReLU(Linear(S -> H, bias=False))`` and two softmax heads.

    Args:
        state_dim (int): State size S.
        num_teachers (int): Number of teachers M.
        hidden (int): Hidden units H. Defaults to 128.
    """

    def __init__(self, state_dim: int, num_teachers: int, hidden: int = 128) -> None:
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(state_dim, hidden, bias=False), nn.ReLU())
        self.logit_head = nn.Linear(hidden, num_teachers)
        self.feature_head = nn.Linear(hidden, num_teachers)

    def head_logits(self, states: Tensor) -> Tensor:
        """Pre-softmax outputs of both heads, (B, 2, M)."""
        hidden = self.trunk(states)
        return torch.stack([self.logit_head(hidden), self.feature_head(hidden)], dim=1)

    def forward(self,
                states: Tensor,
                sample: bool = False,
                generator: Optional[torch.Generator] = None) -> PolicyOutput:
        """Deterministic weights (``sample`` is ignored: the official policy never samples).

        Args:
            states (Tensor): (B, S).
            sample (bool): Unused.
            generator (torch.Generator, optional): Unused.

        Returns:
            PolicyOutput: Softmax weights of both heads.
        """
        weights = self.head_logits(states).softmax(dim=2)
        return PolicyOutput(weights)


def gaussian_log_prob(value: Tensor, mean: Tensor, log_std: Tensor) -> Tensor:
    """Element-wise log-density of ``N(mean, exp(log_std)^2)`` at ``value``.

    ``torch.distributions.Normal(...).log_prob`` without its argument validation, whose checks
    (``bool`` of a tensor) each synchronise a GPU with the host.

    Args:
        value (Tensor): Points.
        mean (Tensor): Means, broadcastable with ``value``.
        log_std (Tensor): Log standard deviations, broadcastable with ``value``.

    Returns:
        Tensor: The log-densities, of the broadcast shape.
    """
    return -0.5 * ((value - mean) * (-log_std).exp())**2 - log_std - 0.5 * math.log(2 * math.pi)


class LogisticNormalPolicy(SoftmaxPolicy):
    """Stochastic policy over the simplex: ``y ~ N(mu(s), sigma^2)``, weights ``softmax(y)``.

    The trunk and heads of :class:`SoftmaxPolicy` give the means ``mu``; one learned,
    state-independent log standard deviation per head and teacher gives ``sigma``. The action
    is the Gaussian vector ``y`` (its density is exact, so PPO ratios are exact); in eval mode,
    or with ``sample=False``, the weights are the deterministic ``softmax(mu)``.

    Args:
        state_dim (int): State size S.
        num_teachers (int): Number of teachers M.
        hidden (int): Hidden units. Defaults to 128.
        init_std (float): Initial sigma. Defaults to 1.0.
    """

    def __init__(self,
                 state_dim: int,
                 num_teachers: int,
                 hidden: int = 128,
                 init_std: float = 1.0) -> None:
        super().__init__(state_dim, num_teachers, hidden)
        self.log_std = nn.Parameter(torch.full((2, num_teachers), math.log(init_std)))

    def log_prob(self, states: Tensor, actions: Tensor) -> Tensor:
        """Log-density of ``actions`` (B, 2, M) under the current policy, summed: (B,)."""
        log_prob = gaussian_log_prob(actions, self.head_logits(states), self.log_std)
        return log_prob.flatten(1).sum(1)

    def entropy(self) -> Tensor:
        """Entropy of the Gaussian (state-independent), a scalar."""
        return (0.5 + 0.5 * math.log(2 * math.pi) + self.log_std).sum()

    def forward(self,
                states: Tensor,
                sample: bool = False,
                generator: Optional[torch.Generator] = None) -> PolicyOutput:
        """Sample (``sample=True``) or take the mean action.

        Args:
            states (Tensor): (B, S).
            sample (bool): Draw ``y`` from the Gaussian.
            generator (torch.Generator, optional): Random source (kept in checkpoints so that a
                resumed run draws the same actions).

        Returns:
            PolicyOutput: Weights, and the actions with their log-probabilities when sampling.
        """
        mean = self.head_logits(states)
        if not sample:
            weights = mean.softmax(dim=2)
            return PolicyOutput(weights)
        # drawn on the host (the generator is checkpointed there), copied without blocking
        noise = to_device_async(torch.randn(mean.shape, generator=generator, device='cpu'), mean)
        actions = mean + noise * self.log_std.exp()
        log_prob = gaussian_log_prob(actions, mean, self.log_std)
        weights = actions.softmax(dim=2)
        return PolicyOutput(weights, actions, log_prob.flatten(1).sum(1))
