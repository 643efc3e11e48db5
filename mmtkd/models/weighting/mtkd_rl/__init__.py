"""MTKD-RL: state, policy, mixing, agent and the weighting strategy."""
from .agent import MTKDRLAgent
from .agent_state import RunningNormalizer, compact_state, official_state
from .mixing import WeightMixer, heuristic_weights
from .mtkd_rl_weighting import MTKDRLWeighting
from .policy import LogisticNormalPolicy, SoftmaxPolicy

__all__ = [
    'MTKDRLAgent', 'RunningNormalizer', 'compact_state', 'official_state', 'WeightMixer',
    'heuristic_weights', 'MTKDRLWeighting', 'LogisticNormalPolicy', 'SoftmaxPolicy'
]
