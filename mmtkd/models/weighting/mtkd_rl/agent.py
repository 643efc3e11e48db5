"""The MTKD-RL agent network: state normaliser, policy and weight mixer (trained by the update
rules of :mod:`mmtkd.engine.agent.updates`)."""
from typing import Dict, Optional

import torch
import torch.nn as nn
from torch import Tensor

from .agent_state import RunningNormalizer
from .mixing import WeightMixer
from .policy import LogisticNormalPolicy, PolicyOutput, SoftmaxPolicy


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

    def __init__(self,
                 state_dim: int,
                 num_teachers: int,
                 stochastic: bool,
                 mixing: str,
                 hidden: int = 128,
                 normalize_state: bool = False,
                 init_std: float = 1.0) -> None:
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

    def act(self,
            states: Tensor,
            heuristics: Tensor,
            sample: bool = False,
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
        result = dict(weights=self.mixer(out.weights, heuristics))
        if out.actions is not None:
            result.update(actions=out.actions, log_prob=out.log_prob)
        return result
