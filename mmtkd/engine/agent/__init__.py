"""The MTKD-RL agent's learning (owned by :class:`mmtkd.engine.MTKDRLAgentHook`)."""
from .learner import AgentLearner, AgentPolicy
from .rewards import (BaseReward, ImprovementReward, SamePassReward, TaskAgreementReward,
                      build_reward)
from .updates import BaseAgentUpdate, CreditUpdate, OfficialUpdate, PPOUpdate, build_update

__all__ = [
    'AgentLearner', 'AgentPolicy', 'BaseReward', 'SamePassReward', 'ImprovementReward',
    'TaskAgreementReward', 'build_reward', 'BaseAgentUpdate', 'OfficialUpdate', 'PPOUpdate',
    'CreditUpdate', 'build_update'
]
