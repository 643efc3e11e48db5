"""Agent rewards: what one training step was worth, per sample, before normalisation.

Each reward is a registered class with one method to implement, :meth:`BaseReward.reward`.
A config selects one by type or by the alias of a shipped one (``reward='official'`` /
``'improvement'``). Rewards read the per-sample loss terms the distiller computed for the step
(:class:`mmtkd.models.distillers.StepRecord`); none re-derives the loss formula.
"""
from typing import Optional

from torch import Tensor

from mmtkd.models.distillers.step_record import StepRecord
from mmtkd.registry import AGENT_REWARDS


class BaseReward:
    """One reward of the MTKD-RL agent.

    Attributes:
        after_step (bool): The reward needs the student's per-sample loss on the step's inputs
            after the optimiser step (the learner measures it, see :meth:`reward`).
    """

    after_step = False

    def reward(self, step: StepRecord, loss_after: Optional[Tensor] = None) -> Tensor:
        """Raw per-sample rewards of a step (the learner normalises them at the update).

        Args:
            step (StepRecord): The step's per-sample losses, weights and inputs.
            loss_after (Tensor, optional): (B,) the student's per-sample task loss on the same
                inputs after the optimiser step, when :attr:`after_step` is True.

        Returns:
            Tensor: (B,) rewards.
        """
        raise NotImplementedError


@AGENT_REWARDS.register_module(name=['SamePassReward', 'official'])
class SamePassReward(BaseReward):
    """The released code's reward: minus the per-sample loss that was back-propagated, from the
    same forward pass: ``-(L_task[b] + alpha sum_m wl KL_m[b] + beta sum_m wf FEAT_m[b])``."""

    def reward(self, step: StepRecord, loss_after: Optional[Tensor] = None) -> Tensor:
        return -step.total_loss


@AGENT_REWARDS.register_module(name=['ImprovementReward', 'improvement'])
class ImprovementReward(BaseReward):
    """The drop of the student's own per-sample task loss over the optimiser step, measured on
    the step's inputs (same augmentation) with frozen normalisation statistics."""

    after_step = True

    def reward(self, step: StepRecord, loss_after: Optional[Tensor] = None) -> Tensor:
        return step.student_loss - loss_after


def build_reward(cfg) -> BaseReward:
    """Build a reward from a type name / alias or a config dict.

    Args:
        cfg (str | dict | BaseReward): ``'official'``, ``'improvement'``, a registered type or a
            config dict.

    Returns:
        BaseReward: The reward.
    """
    if isinstance(cfg, BaseReward):
        return cfg
    cfg = dict(type=cfg) if isinstance(cfg, str) else dict(cfg)
    # mmtkd's own scope: these registries have no counterpart in the config's default scope
    return AGENT_REWARDS.build(dict(cfg, _scope_='mmtkd'))
