"""Per-sample knowledge-distillation losses on feature maps."""
import torch.nn.functional as F
from torch import Tensor

from mmtkd.registry import MODELS
from .base_kd_loss import BaseKDLoss, TemperatureKDLoss
from .logit_kd_loss import temperature_kl_div


def _check_same_shape(name: str, student: Tensor, teacher: Tensor) -> None:
    if student.shape != teacher.shape:
        raise ValueError(f'{name}: adapted student feature {tuple(student.shape)} and teacher '
                         f'feature {tuple(teacher.shape)} must have the same shape')


@MODELS.register_module()
class FeatureMSELoss(BaseKDLoss):
    """Mean squared error between adapted student and teacher features, one value per sample.

    ``loss[b] = mean over C, H, W of (F_s[b] - F_t[b])^2`` (official MTKD-RL feature KD; the
    student feature is mapped to the teacher's shape by a connector first).

    Args:
        reduction (str): ``'none'``, ``'mean'`` or ``'sum'``. Defaults to ``'mean'``.
        loss_weight (float): Multiplier of the loss. Defaults to 1.0.
    """

    def unreduced(self, student: Tensor, teacher: Tensor) -> Tensor:
        _check_same_shape(type(self).__name__, student, teacher)
        # one fused kernel each way (not a difference, a square and their backward passes)
        return F.mse_loss(student, teacher, reduction='none').flatten(1).mean(dim=1)


@MODELS.register_module()
class ChannelWiseDivergenceLoss(TemperatureKDLoss):
    """Channel-wise distillation (CWD, Shu et al. 2021), one value per sample.

    Each channel is turned into a distribution over its ``H*W`` positions with a softmax at
    temperature ``T``; the loss is ``T^2 * KL(teacher || student)`` summed over positions and
    averaged over channels.

    Args:
        temperature (float): Softening temperature ``T``. Defaults to 4.0.
        reduction (str): ``'none'``, ``'mean'`` or ``'sum'``. Defaults to ``'mean'``.
        loss_weight (float): Multiplier of the loss. Defaults to 1.0.
    """

    def __init__(self,
                 temperature: float = 4.0,
                 reduction: str = 'mean',
                 loss_weight: float = 1.0) -> None:
        super().__init__(temperature, reduction, loss_weight)

    def unreduced(self, student: Tensor, teacher: Tensor) -> Tensor:
        _check_same_shape(type(self).__name__, student, teacher)
        # (B, C, H*W): positions play the role of classes.
        return temperature_kl_div(
            student.flatten(2), teacher.flatten(2), self.temperature, class_dim=2).mean(dim=1)
