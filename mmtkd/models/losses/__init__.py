"""Per-sample KD losses (``reduction='none'`` gives one value per sample or per element)."""
from .base_kd_loss import BaseKDLoss, TemperatureKDLoss
from .feature_kd_loss import ChannelWiseDivergenceLoss, FeatureMSELoss
from .logit_kd_loss import LogitKLDivLoss, temperature_kl_div
from .shared_student_kd import shared_student_kd
from .sigmoid_kd_loss import SigmoidKLDivLoss, sigmoid_kl_div

__all__ = [
    'LogitKLDivLoss', 'FeatureMSELoss', 'ChannelWiseDivergenceLoss', 'SigmoidKLDivLoss',
    'temperature_kl_div', 'sigmoid_kl_div', 'BaseKDLoss', 'TemperatureKDLoss', 'shared_student_kd'
]
