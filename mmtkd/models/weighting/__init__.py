"""Teacher-weighting strategies: one interface returning (B, M) weights."""
from .base_weighting import OPTIONAL_SIGNALS, BaseWeighting, TeacherSignals, TeacherWeights
from .mtkd_rl import MTKDRLWeighting
from .heuristic_weighting import (AverageWeighting, ConfidenceWeighting, EntropyWeighting,
                                  confidence_weights, entropy_weights)

__all__ = [
    'BaseWeighting', 'TeacherSignals', 'TeacherWeights', 'AverageWeighting',
    'ConfidenceWeighting', 'EntropyWeighting', 'MTKDRLWeighting', 'confidence_weights', 'entropy_weights'
]
