"""Teacher-weighting strategies: one interface returning (B, M) weights."""
from .base_weighting import OPTIONAL_SIGNALS, BaseWeighting, TeacherSignals, TeacherWeights
from .heuristic_weighting import (AverageWeighting, ConfidenceWeighting, EntropyWeighting,
                                  FixedWeighting, confidence_weights, entropy_weights)
from .mtkd_rl import MTKDRLWeighting

__all__ = [
    'OPTIONAL_SIGNALS', 'BaseWeighting', 'TeacherSignals', 'TeacherWeights', 'AverageWeighting',
    'ConfidenceWeighting', 'EntropyWeighting', 'FixedWeighting', 'MTKDRLWeighting',
    'confidence_weights', 'entropy_weights'
]
