"""Per-sample KD losses (``reduction='none'`` gives one value per sample)."""
from .feature_kd_loss import ChannelWiseDivergenceLoss, FeatureMSELoss
from .logit_kd_loss import LogitKLDivLoss, temperature_kl_div

__all__ = ['LogitKLDivLoss', 'FeatureMSELoss', 'ChannelWiseDivergenceLoss', 'temperature_kl_div']
