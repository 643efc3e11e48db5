"""The MTKD-RL agent network and its two training objectives."""
from typing import Dict, Optional

import torch
import torch.nn as nn
from torch import Tensor

from .agent_state import RunningNormalizer
from .mixing import WeightMixer
from .policy import LogisticNormalPolicy, PolicyOutput, SoftmaxPolicy


def normalise_reward(reward: Tensor, clamp: bool) -> Tensor:
    """Normalise rewards within a batch: ``(r - mean) / std``, optionally clamped to [0, 1].

    A batch of one, or rewards that are all equal, give zeros instead of NaN.

    Args:
        reward (Tensor): (B,) raw rewards.
        clamp (bool): Clamp to [0, 1] (official: below-average samples get 0).

    Returns:
        Tensor: (B,) normalised rewards.
    """
    if reward.numel() < 2:
        return torch.zeros_like(reward)
    std = reward.std()
    # decided on the device (no host sync on the training hot path)
    valid = torch.isfinite(std) & (std > 1e-12)
    normalised = torch.where(valid, (reward - reward.mean()) / std.clamp(min=1e-12),
                             torch.zeros_like(reward))
    return normalised.clamp(0, 1) if clamp else normalised


class MTKDRLAgent(nn.Module):
    """State normaliser (optional), policy network and weight mixer.

    Args:
        state_dim (int): State size.
        num_teachers (int): Number of teachers M.
        stochastic (bool): Logistic-normal policy (policy gradient) instead of the official
            deterministic softmax policy.
        mixing (str): ``'none'``, ``'static'`` or ``'dynamic'``.
        hidden (int): Hidden units of the policy. Defaults to 128.
        normalize_state (bool): Running mean / std normalisation of states. Defaults to False.
        init_std (float): Initial sigma of the stochastic policy.
    """

    def __init__(self, state_dim: int, num_teachers: int, stochastic: bool, mixing: str,
                 hidden: int = 128, normalize_state: bool = False, init_std: float = 1.0) -> None:
        super().__init__()
        self.normalizer = RunningNormalizer(state_dim) if normalize_state else None
        if stochastic:
            self.policy = LogisticNormalPolicy(state_dim, num_teachers, hidden, init_std)
        else:
            self.policy = SoftmaxPolicy(state_dim, num_teachers, hidden)
        self.mixer = WeightMixer(mixing)

    def normalised(self, states: Tensor) -> Tensor:
        """Apply the running normaliser if there is one."""
        return states if self.normalizer is None else self.normalizer(states)

    def act(self, states: Tensor, heuristics: Tensor, sample: bool = False,
            generator: Optional[torch.Generator] = None) -> Dict[str, Tensor]:
        """Teacher weights for a batch of states.

        Args:
            states (Tensor): (B, S) raw states.
            heuristics (Tensor): (B, 2, 2, M) heuristic weights.
            sample (bool): Sample actions (stochastic policy only).
            generator (torch.Generator, optional): Random source for sampling.

        Returns:
            dict: ``weights`` (B, 2, M) and, when sampling, ``actions`` and ``log_prob``.
        """
        out: PolicyOutput = self.policy(self.normalised(states), sample, generator)
        learned = torch.stack([out.logit, out.feature], dim=1)
        result = dict(weights=self.mixer(learned, heuristics))
        if out.actions is not None:
            result.update(actions=out.actions, log_prob=out.log_prob)
        return result

    def official_loss(self, states: Tensor, heuristics: Tensor, reward: Tensor) -> Tensor:
        """Official objective ``BCE(wl, 1, weight=r) + BCE(wf, 1, weight=r)``.

        Equal to ``mean_b,m(-r[b] * log wl[b,m]) + mean_b,m(-r[b] * log wf[b,m])``.

        Args:
            states (Tensor): (B, S) stored states.
            heuristics (Tensor): (B, 2, 2, M) stored heuristic weights.
            reward (Tensor): (B,) normalised rewards in [0, 1].

        Returns:
            Tensor: Scalar loss.
        """
        weights = self.act(states, heuristics)['weights']
        # BCE with target 1 is -log(w), clamped at -100 like torch's BCE; written out so that a
        # rounding error above 1 is harmless and a diverged agent yields NaN (reported by the
        # caller) instead of an opaque range error
        log_w = weights.log().clamp(min=-100)
        return -(reward[:, None] * log_w[:, 0]).mean() - (reward[:, None] * log_w[:, 1]).mean()

    def ppo_loss(self, states: Tensor, actions: Tensor, old_log_prob: Tensor,
                 advantage: Tensor, clip: float, entropy_coef: float) -> Tensor:
        """PPO's clipped surrogate objective (negated, to minimise), minus an entropy bonus.

        Args:
            states (Tensor): (B, S) stored states.
            actions (Tensor): (B, 2, M) stored sampled actions.
            old_log_prob (Tensor): (B,) their log-probabilities when sampled.
            advantage (Tensor): (B,) advantages.
            clip (float): Clip range epsilon of the probability ratio.
            entropy_coef (float): Weight of the entropy bonus.

        Returns:
            Tensor: Scalar loss.
        """
        log_prob = self.policy.log_prob(self.normalised(states), actions)
        ratio = (log_prob - old_log_prob).exp()
        surrogate = torch.min(ratio * advantage, ratio.clamp(1 - clip, 1 + clip) * advantage)
        return -surrogate.mean() - entropy_coef * self.policy.entropy()
