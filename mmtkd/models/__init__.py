"""Models: distiller, task adapters, KD losses, connectors and teacher weighting."""
from .connectors import FeatureAdapter, ResizeOnlyAdapter
from .distillers import MultiTeacherDistiller
from .losses import ChannelWiseDivergenceLoss, FeatureMSELoss, LogitKLDivLoss
from .tasks import BaseTaskAdapter, ClassificationTask, DistillOutputs
from .weighting import (AverageWeighting, BaseWeighting, ConfidenceWeighting, EntropyWeighting,
                        MTKDRLWeighting, TeacherSignals, TeacherWeights)

__all__ = [
    'FeatureAdapter', 'ResizeOnlyAdapter', 'MultiTeacherDistiller', 'ChannelWiseDivergenceLoss',
    'FeatureMSELoss', 'LogitKLDivLoss', 'BaseTaskAdapter', 'ClassificationTask', 'DistillOutputs',
    'AverageWeighting', 'BaseWeighting', 'ConfidenceWeighting', 'EntropyWeighting',
    'TeacherSignals', 'TeacherWeights', 'MTKDRLWeighting'
]
