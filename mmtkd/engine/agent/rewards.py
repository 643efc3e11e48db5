"""Agent rewards: what one training step was worth, per sample, before normalisation.

Each reward is a registered class with one method to implement, :meth:`BaseReward.reward`.
A config selects one by type or by the alias of a shipped one (``reward='official'``,
``'improvement'`` or ``'agreement'``). Rewards read the per-sample loss terms the distiller
computed for the step (:class:`mmtkd.models.distillers.StepRecord`); none re-derives the loss
formula.
"""
from typing import FrozenSet, Optional, Tuple

import torch
from torch import Tensor

from mmtkd.models.distillers.step_record import StepRecord
from mmtkd.models.distillers.task_agreement import AGREEMENT_MEASURES
from mmtkd.registry import AGENT_REWARDS


class BaseReward:
    """One reward of the MTKD-RL agent.

    Attributes:
        after_step (bool): The reward needs the student's per-sample loss on the step's inputs
            after the optimiser step (the learner measures it, see :meth:`reward`).
        per_teacher (bool): The reward is (B, M), one credit per sample and teacher, instead
            of one per sample (B,); the learner centres it over teachers before normalising.
        signals (frozenset): Optional :class:`mmtkd.models.weighting.TeacherSignals` fields the
            reward reads (the weighting asks the distiller for them).
        every (int): The learner stores (and rewards) one step in ``every``; on the others a
            stochastic policy acts with its mean action and nothing is measured.
        channels (tuple): For a per-teacher reward, what each entry of its last dimension is
            when it has one: (B, M, C) rewards, ``channels[c]`` one of ``'credit'`` (the
            credit of both heads, or of the logit head when a ``'feature_credit'`` follows),
            ``'veto'`` (can only take credit away) and ``'feature_credit'`` (the feature
            head's own credit); a (B, M) reward is ``('credit', )``.
    """

    after_step = False
    every = 1
    per_teacher = False
    signals: FrozenSet[str] = frozenset()
    channels: Tuple[str, ...] = ('credit', )

    def reward(self, step: StepRecord, loss_after: Optional[Tensor] = None) -> Tensor:
        """Raw per-sample rewards of a step (the learner normalises them at the update).

        Args:
            step (StepRecord): The step's per-sample losses, weights and inputs.
            loss_after (Tensor, optional): (B,) the student's per-sample task loss on the same
                inputs after the optimiser step, when :attr:`after_step` is True.

        Returns:
            Tensor: (B,) rewards, or (B, M) when :attr:`per_teacher`.
        """
        raise NotImplementedError


@AGENT_REWARDS.register_module(name=['SamePassReward', 'official'])
class SamePassReward(BaseReward):
    """The released code's reward: minus the per-sample loss that was back-propagated, from the
    same forward pass: ``-(L_task[b] + alpha sum_m wl KL_m[b] + beta sum_m wf FEAT_m[b])``."""

    signals = frozenset({'student_loss'})

    def reward(self, step: StepRecord, loss_after: Optional[Tensor] = None) -> Tensor:
        return -step.total_loss


@AGENT_REWARDS.register_module(name=['ImprovementReward', 'improvement'])
class ImprovementReward(BaseReward):
    """The drop of the student's own per-sample task loss over the optimiser step, measured on
    the step's inputs (same augmentation) with frozen normalisation statistics.

    Args:
        every (int): Measure one step in ``every`` (the extra no-grad student forward after the
            step is paid on those only); a stochastic policy samples its actions on those steps
            and acts with its mean action on the others, which are not stored. Defaults to 1.
    """

    after_step = True
    signals = frozenset({'student_loss'})

    def __init__(self, every: int = 1) -> None:
        if every < 1:
            raise ValueError(f'ImprovementReward: every must be >= 1, got {every}')
        self.every = every

    def reward(self, step: StepRecord, loss_after: Optional[Tensor] = None) -> Tensor:
        return step.student_loss - loss_after


@AGENT_REWARDS.register_module(name=['TaskAgreementReward', 'agreement'])
class TaskAgreementReward(BaseReward):
    """Per-teacher credit: the cosine between each teacher's logit-KD gradient and the
    student's task-loss gradient on the student's class scores, per sample
    (:mod:`mmtkd.models.distillers.task_agreement`). A first-order estimate of how much a KD
    step towards that teacher advances the student's own task, from the same pass: no extra
    network forward or backward.

    Args:
        every (int): Measure (and store) one step in ``every``; the gradients are computed on
            those steps only. Defaults to 1.
        region (str): Where on the student's scores the gradients are compared: ``'all'``
            (default), ``'foreground'`` (a detector's anchors assigned to an object, where
            the task says which class is there) or ``'foreground_class'`` (on those anchors,
            the score of the assigned class only); everywhere for tasks without such a region.
        direction (str): What each teacher's KD gradient is compared with: ``'task_loss'``
            (default: the student's task-loss gradient) or ``'class_margin'``: on an anchor-based
            detector, the gradient of each foreground anchor's margin between its assigned
            class and the others (:meth:`DetectionTask.agreement_direction`; use with
            ``region='foreground'``), where the focal loss's gradient is nearly zero on the
            other classes; on the other tasks, whose softmax cross-entropy gradient already
            couples the classes (classifiers, segmentors, two-stage RoI heads) or which have no
            anchor targets (DETR), the task-loss gradient.
        batched (bool): Take the M teachers' KD gradients in one batched backward pass
            (default: fewer kernels, for launch-bound GPUs) or one teacher at a time (less
            peak memory: the batched pass holds all M gradients and its intermediates at once;
            docs/agent_behaviour.md has both measured).
        veto (dict, optional): A second agreement, ``dict(region=..., direction=...)`` with
            the options above, that can only take weight away: the reward is then (B, M, 2),
            the credit and the veto agreement per sample and teacher, and the update rule
            penalises a teacher whose mean veto agreement over its window is negative
            (:func:`~mmtkd.engine.agent.reward_normalisation.normalise_credit`). E.g. the
            credit measured against the task loss's gradient everywhere (which ranks good
            teachers) and the veto against a detector's class margin on its foreground (which
            says, by its sign, which teachers teach the wrong class). Defaults to None.
        features (bool): Credit the feature-KD weights apart, by the agreement of each
            teacher's feature-KD gradient with the task loss's gradient at the student's
            distilled features (one backward through the student's head and the connectors;
            ``TeacherSignals.feature_agreement``); the reward gains a ``'feature_credit'``
            channel and the logit credit moves only the logit weights. A teacher whose
            predictions mislead and whose features help (a class-permuted one) can then keep
            its features, and one whose features mislead lose them. Defaults to False.
        measure (str): What the logit credit (and its veto) is per sample: ``'cosine'``
            (default) or ``'progress'``, the cosine times the sample's task-gradient norm over
            its batch's mean (:func:`~mmtkd.models.distillers.task_agreement.task_agreement`):
            the samples the student still gets wrong weigh most. The feature credit stays a
            cosine.
    """

    per_teacher = True
    signals = frozenset({'task_agreement'})
    REGIONS = ('all', 'foreground', 'foreground_class')
    DIRECTIONS = ('task_loss', 'class_margin')
    #: the :class:`TeacherSignals` field each channel of the reward is
    SIGNAL_OF_CHANNEL = dict(
        credit='task_agreement', veto='veto_agreement', feature_credit='feature_agreement')

    def __init__(self,
                 every: int = 1,
                 region: str = 'all',
                 direction: str = 'task_loss',
                 batched: bool = True,
                 veto: Optional[dict] = None,
                 features: bool = False,
                 measure: str = 'cosine') -> None:
        if every < 1:
            raise ValueError(f'TaskAgreementReward: every must be >= 1, got {every}')
        if region not in self.REGIONS:
            raise ValueError(f'TaskAgreementReward: region must be one of {self.REGIONS}, '
                             f'got {region!r}')
        if direction not in self.DIRECTIONS:
            raise ValueError(f'TaskAgreementReward: direction must be one of '
                             f'{self.DIRECTIONS}, got {direction!r}')
        if measure not in AGREEMENT_MEASURES:
            raise ValueError(f'TaskAgreementReward: measure must be one of {AGREEMENT_MEASURES}, '
                             f'got {measure!r}')
        if veto is not None:
            unknown = set(veto) - {'region', 'direction'}
            if unknown or veto.get('region', 'all') not in self.REGIONS or veto.get(
                    'direction', 'task_loss') not in self.DIRECTIONS:
                raise ValueError(f'TaskAgreementReward: veto must be dict(region=R, '
                                 f'direction=D) with R in {self.REGIONS} and D in '
                                 f'{self.DIRECTIONS}, got {veto!r}')
        self.every, self.region, self.batched = every, region, batched
        self.direction, self.veto, self.features = direction, veto, features
        self.measure = measure
        channels = ['credit']
        if veto is not None:
            channels.append('veto')
        if features:
            channels.append('feature_credit')
            self.signals = self.signals | {'feature_agreement'}
        self.channels = tuple(channels)

    def reward(self, step: StepRecord, loss_after: Optional[Tensor] = None) -> Tensor:
        values = []
        for channel in self.channels:
            signal = self.SIGNAL_OF_CHANNEL[channel]
            value = getattr(step.signals, signal)
            if value is None:
                raise ValueError(f'TaskAgreementReward: its {channel!r} channel reads the '
                                 f'{signal} signal, which the step lacks')
            values.append(value)
        return values[0] if len(values) == 1 else torch.stack(values, -1)


def build_reward(cfg) -> BaseReward:
    """Build a reward from a type name / alias or a config dict.

    Args:
        cfg (str | dict | BaseReward): ``'official'``, ``'improvement'``, ``'agreement'``, a
            registered type or a config dict.

    Returns:
        BaseReward: The reward.
    """
    if isinstance(cfg, BaseReward):
        return cfg
    cfg = dict(type=cfg) if isinstance(cfg, str) else dict(cfg)
    # mmtkd's own scope: these registries have no counterpart in the config's default scope
    return AGENT_REWARDS.build(dict(cfg, _scope_='mmtkd'))
