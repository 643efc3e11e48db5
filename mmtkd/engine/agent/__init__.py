"""The MTKD-RL agent's learning (owned by :class:`mmtkd.engine.MTKDRLAgentHook`)."""
from .learner import AgentLearner, AgentPolicy
from .rewards import BaseReward, ImprovementReward, SamePassReward, build_reward
from .updates import BaseAgentUpdate, OfficialUpdate, PPOUpdate, build_update

__all__ = [
    'AgentLearner', 'AgentPolicy', 'BaseReward', 'SamePassReward', 'ImprovementReward',
    'build_reward', 'BaseAgentUpdate', 'OfficialUpdate', 'PPOUpdate', 'build_update'
]
