"""Agent update rules: how a batch of stored experience becomes a loss for the policy.

Each rule is a registered class with one method to implement, :meth:`BaseAgentUpdate.loss`.
A config selects one by type (``update=dict(type='mmtkd.PPOUpdate', clip=0.1)``) or by the
alias of a shipped one (``update='official'`` / ``'ppo'`` / ``'credit'``).
"""
from typing import Dict, Optional, Sequence

import torch
from torch import Tensor

from mmtkd.models.weighting.mtkd_rl.agent import MTKDRLAgent
from mmtkd.registry import AGENT_UPDATES


class BaseAgentUpdate:
    """One update rule of the MTKD-RL agent.

    Attributes:
        passes (int): Passes over the buffer per update (one optimiser step per stored batch).
        clamp_rewards (bool): Normalised rewards clamped to [0, 1] (the official rule) instead
            of signed advantages.
        stochastic (bool): Whether the rule needs a stochastic policy (sampled actions and their
            log-probabilities stored with each batch).
        per_teacher (bool): The rule learns from per-teacher rewards (B, M) (see
            :attr:`mmtkd.engine.agent.rewards.BaseReward.per_teacher`).
        credit_scale (str): How per-teacher rewards are scaled after centring over teachers:
            ``'window_std'`` or ``'none'`` (see
            :func:`~mmtkd.engine.agent.reward_normalisation.normalise_credit`).
        feature_credit_scale (str): The same for a reward's feature-credit channel.
        veto_penalty (float): What a teacher vetoed by a per-teacher reward's veto channel
            loses from its normalised credit (same function).
        default_optimizer (dict): The agent optimiser when the config names none; multi-tensor
            (``foreach``) steps, as torch picks on CUDA by default and now on every device: one
            kernel per step of the optimiser's maths for all parameters, not one per parameter.
    """

    passes = 1
    clamp_rewards = False
    stochastic = False
    per_teacher = False
    credit_scale = 'window_std'
    feature_credit_scale = 'window_std'
    veto_penalty = 3.0
    default_optimizer: dict = dict(type='Adam', lr=3e-3, foreach=True)

    def loss(self, agent: MTKDRLAgent, batch: Dict[str, Tensor]) -> Tensor:
        """The loss of one stored batch, to minimise.

        Args:
            agent (MTKDRLAgent): The agent, in train mode.
            batch (dict): ``states``, ``heuristics``, ``reward`` (normalised; (B,) or (B, M)
                for per-teacher rules) and, for stochastic policies, ``actions`` and
                ``log_prob``.

        Returns:
            Tensor: A scalar.
        """
        raise NotImplementedError


@AGENT_UPDATES.register_module(name=['OfficialUpdate', 'official'])
class OfficialUpdate(BaseAgentUpdate):
    """The released code's update: ``BCE(wl, 1, weight=r) + BCE(wf, 1, weight=r)``, one SGD
    step (lr 0.1) per stored batch, rewards clamped to [0, 1]."""

    clamp_rewards = True
    default_optimizer = dict(type='SGD', lr=0.1, foreach=True)

    def loss(self, agent: MTKDRLAgent, batch: Dict[str, Tensor]) -> Tensor:
        """``mean_b,m(-r[b] * log wl[b,m]) + mean_b,m(-r[b] * log wf[b,m])``."""
        weights = agent.act(batch['states'], batch['heuristics'])['weights']
        # BCE with target 1 is -log(w), clamped at -100 like torch's BCE; written out so that a
        # rounding error above 1 is harmless and a diverged agent yields NaN (reported by the
        # learner) instead of an opaque range error
        log_w = weights.log().clamp(min=-100)
        reward = batch['reward'][:, None]
        return -(reward * log_w[:, 0]).mean() - (reward * log_w[:, 1]).mean()


@AGENT_UPDATES.register_module(name=['PPOUpdate', 'ppo'])
class PPOUpdate(BaseAgentUpdate):
    """PPO's clipped surrogate over ``epochs`` passes of the buffer, with an entropy bonus.

    Args:
        epochs (int): Passes over the buffer per update. Defaults to 4.
        clip (float): Clip range of the probability ratio. Defaults to 0.2.
        entropy_coef (float): Weight of the entropy bonus. Defaults to 1e-3.
    """

    stochastic = True

    def __init__(self, epochs: int = 4, clip: float = 0.2, entropy_coef: float = 1e-3) -> None:
        self.passes, self.clip, self.entropy_coef = epochs, clip, entropy_coef

    def loss(self, agent: MTKDRLAgent, batch: Dict[str, Tensor]) -> Tensor:
        """``-mean(min(ratio * A, clip(ratio) * A)) - entropy_coef * H``."""
        log_prob = agent.policy.log_prob(agent.normalised(batch['states']), batch['actions'])
        ratio = (log_prob - batch['log_prob']).exp()
        advantage = batch['reward']
        surrogate = torch.min(ratio * advantage,
                              ratio.clamp(1 - self.clip, 1 + self.clip) * advantage)
        return -surrogate.mean() - self.entropy_coef * agent.policy.entropy()


@AGENT_UPDATES.register_module(name=['CreditUpdate', 'credit'])
class CreditUpdate(BaseAgentUpdate):
    """Full-information policy gradient on per-teacher credit, with an entropy bonus.

    Every sample's reward is known for every teacher (``A[b, m]``, centred over teachers and
    normalised, e.g. :class:`~mmtkd.engine.agent.rewards.TaskAgreementReward`), so no action
    needs sampling: the deterministic weights are trained to maximise the expected credit of
    the weighted KD step, ``sum_m w[b,m] A[b,m] + tau * H(w[b])`` for both heads. Its optimum
    is ``softmax(E[A | state] / tau)``: teachers whose credit is consistently below the others'
    lose their weight, teachers of equal credit keep equal weights (``tau`` stops noise from
    picking one of them).

    Args:
        entropy_coef (float): ``tau``, in the units of the credit (see ``scale``).
            Defaults to 0.5.
        epochs (int): Passes over the buffer per update. Defaults to 2.
        scale (str): ``'window_std'``: the centred credit divided by its standard deviation
            over the window (``tau`` in standard deviations); ``'none'``: the centred credit in
            the reward's own units (cosines for the agreement reward), so that small gaps
            between good teachers stay small against ``tau``; ``'hinge'``: as ``'none'``, after
            each teacher's positive mean credit over the window is shifted to zero (only
            teachers that pull against the task on average lose weight). Defaults to
            ``'window_std'``.
        veto_penalty (float): Subtracted from the normalised credit of a teacher whose mean
            veto agreement over the window is negative (rewards with a veto channel only, see
            :class:`~mmtkd.engine.agent.rewards.TaskAgreementReward`). Defaults to 3.
        heads (Sequence[str]): The weights the credit moves, of ``'logit'`` (logit KD) and
            ``'feature'`` (feature KD); a head left out keeps only the entropy bonus, so its
            weights stay equal (AVER's). The agreement reward is measured on the logit-KD
            gradient, so ``('logit', )`` applies it where it was measured and leaves every
            teacher's features in. Defaults to both.
        feature_scale (str, optional): ``scale`` of a reward's feature credit (one of
            :attr:`SCALES`; rewards with a ``'feature_credit'`` channel only), e.g. ``'none'``
            to rank the teachers' features by how much they agree with the task where the
            logit credit is hinged. None (default): ``scale``.
        feature_entropy_coef (float, optional): ``tau`` of the feature weights, in the units
            of the feature credit (``feature_scale``): a feature credit in cosines whose gaps
            are smaller than the logit credit's (a detector's FPN features) needs a smaller
            ``tau`` to drop the same teacher. None (default): ``entropy_coef``.
    """

    per_teacher = True
    default_optimizer = dict(type='Adam', lr=3e-2, foreach=True)
    SCALES = ('window_std', 'none', 'hinge')
    HEADS = ('logit', 'feature')

    def __init__(self,
                 entropy_coef: float = 0.5,
                 epochs: int = 2,
                 scale: str = 'window_std',
                 veto_penalty: float = 3.0,
                 heads: Sequence[str] = HEADS,
                 feature_scale: Optional[str] = None,
                 feature_entropy_coef: Optional[float] = None) -> None:
        for name, value in (('scale', scale), ('feature_scale', feature_scale or scale)):
            if value not in self.SCALES:
                raise ValueError(f'CreditUpdate: {name} must be one of {self.SCALES}, got '
                                 f'{value!r}')
        if veto_penalty < 0:
            raise ValueError(f'CreditUpdate: veto_penalty must be >= 0, got {veto_penalty}')
        if not heads or set(heads) - set(self.HEADS):
            raise ValueError(f'CreditUpdate: heads must be a non-empty subset of {self.HEADS}, '
                             f'got {heads!r}')
        if feature_entropy_coef is None:
            feature_entropy_coef = entropy_coef
        for name, value in (('entropy_coef', entropy_coef), ('feature_entropy_coef',
                                                             feature_entropy_coef)):
            if value < 0:
                raise ValueError(f'CreditUpdate: {name} (tau) must be >= 0, got {value}')
        self.entropy_coef, self.passes, self.credit_scale = entropy_coef, epochs, scale
        self.feature_entropy_coef = feature_entropy_coef
        self.feature_credit_scale = feature_scale or scale
        self.veto_penalty = veto_penalty
        self.credited = torch.tensor([float(head in heads) for head in self.HEADS])

    def loss(self, agent: MTKDRLAgent, batch: Dict[str, Tensor]) -> Tensor:
        """``-mean_b sum_m (w A + tau * -w log w)`` over both heads (the credit term only on
        the credited ``heads``, each head's own ``tau``); ``A`` is one credit for both heads
        (B, M) or each head's own (B, 2, M), from a reward with a feature-credit channel."""
        weights = agent.act(batch['states'], batch['heuristics'])['weights']  # (B, 2, M)
        reward = batch['reward']
        if reward.dim() == 2:  # one credit for both heads
            reward = reward[:, None]
        reward = reward * self.credited.to(weights)[None, :, None]
        credit = (weights * reward).sum(2)
        entropy = -(weights * weights.clamp(min=1e-12).log()).sum(2)
        # each head's tau, in the order of the policy's heads (logit, feature)
        taus = entropy.new_tensor([self.entropy_coef, self.feature_entropy_coef])
        return -(credit + taus * entropy).mean()


def build_update(cfg, **legacy) -> BaseAgentUpdate:
    """Build an update rule from a type name / alias or a config dict.

    Args:
        cfg (str | dict | BaseAgentUpdate): ``'official'``, ``'ppo'``, ``'credit'``, a
            registered type or a config dict.
        **legacy: Options given the old way on the weighting (``ppo_epochs`` ...), used when
            ``cfg`` is the ``'ppo'`` alias.

    Returns:
        BaseAgentUpdate: The rule.
    """
    if isinstance(cfg, BaseAgentUpdate):
        return cfg
    cfg = dict(type=cfg) if isinstance(cfg, str) else dict(cfg)
    if cfg['type'] in ('ppo', 'PPOUpdate', 'mmtkd.PPOUpdate'):
        for new, old in (('epochs', 'ppo_epochs'), ('clip', 'ppo_clip'), ('entropy_coef',
                                                                          'entropy_coef')):
            if legacy.get(old) is not None:
                cfg.setdefault(new, legacy[old])
    # mmtkd's own scope: these registries have no counterpart in the config's default scope
    return AGENT_UPDATES.build(dict(cfg, _scope_='mmtkd'))
