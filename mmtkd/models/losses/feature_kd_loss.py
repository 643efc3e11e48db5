"""Per-sample knowledge-distillation losses on feature maps."""
from typing import Optional

import torch.nn as nn
from mmdet.models.losses.utils import weight_reduce_loss
from torch import Tensor

from mmtkd.registry import MODELS
from .logit_kd_loss import temperature_kl_div


def _check_same_shape(name: str, student: Tensor, teacher: Tensor) -> None:
    if student.shape != teacher.shape:
        raise ValueError(f'{name}: adapted student feature {tuple(student.shape)} and teacher '
                         f'feature {tuple(teacher.shape)} must have the same shape')


@MODELS.register_module()
class FeatureMSELoss(nn.Module):
    """Mean squared error between adapted student and teacher features, one value per sample.

    ``loss[b] = mean over C, H, W of (F_s[b] - F_t[b])^2`` (official MTKD-RL feature KD; the
    student feature is expected to be mapped to the teacher's shape by a connector first).

    Args:
        reduction (str): ``'none'``, ``'mean'`` or ``'sum'``. Defaults to ``'mean'``.
        loss_weight (float): Multiplier of the loss. Defaults to 1.0.
    """

    def __init__(self, reduction: str = 'mean', loss_weight: float = 1.0) -> None:
        super().__init__()
        self.reduction = reduction
        self.loss_weight = loss_weight

    def forward(self, student_feat: Tensor, teacher_feat: Tensor,
                weight: Optional[Tensor] = None, avg_factor: Optional[float] = None,
                reduction_override: Optional[str] = None) -> Tensor:
        """Compute the loss.

        Args:
            student_feat (Tensor): Adapted student features, shape (B, C, H, W).
            teacher_feat (Tensor): Teacher features, same shape.
            weight (Tensor, optional): Per-sample weights of shape (B,).
            avg_factor (float, optional): Denominator of the mean instead of B.
            reduction_override (str, optional): Overrides ``self.reduction``.

        Returns:
            Tensor: Shape (B,) for ``reduction='none'``, a scalar otherwise.
        """
        _check_same_shape(type(self).__name__, student_feat, teacher_feat)
        reduction = reduction_override or self.reduction
        loss = (student_feat - teacher_feat.detach()).pow(2).flatten(1).mean(dim=1)
        return self.loss_weight * weight_reduce_loss(loss, weight, reduction, avg_factor)


@MODELS.register_module()
class ChannelWiseDivergenceLoss(nn.Module):
    """Channel-wise distillation (CWD, Shu et al. 2021), one value per sample.

    Each channel is turned into a distribution over its ``H*W`` positions with a softmax at
    temperature ``T``; the loss is ``T^2 * KL(teacher || student)`` summed over positions and
    averaged over channels.

    Args:
        temperature (float): Softening temperature ``T``. Defaults to 4.0.
        reduction (str): ``'none'``, ``'mean'`` or ``'sum'``. Defaults to ``'mean'``.
        loss_weight (float): Multiplier of the loss. Defaults to 1.0.
    """

    def __init__(self, temperature: float = 4.0, reduction: str = 'mean',
                 loss_weight: float = 1.0) -> None:
        super().__init__()
        self.temperature = temperature
        self.reduction = reduction
        self.loss_weight = loss_weight

    def forward(self, student_feat: Tensor, teacher_feat: Tensor,
                weight: Optional[Tensor] = None, avg_factor: Optional[float] = None,
                reduction_override: Optional[str] = None) -> Tensor:
        """Compute the loss.

        Args:
            student_feat (Tensor): Adapted student features (or logits), shape (B, C, H, W).
            teacher_feat (Tensor): Teacher features, same shape.
            weight (Tensor, optional): Per-sample weights of shape (B,).
            avg_factor (float, optional): Denominator of the mean instead of B.
            reduction_override (str, optional): Overrides ``self.reduction``.

        Returns:
            Tensor: Shape (B,) for ``reduction='none'``, a scalar otherwise.
        """
        _check_same_shape(type(self).__name__, student_feat, teacher_feat)
        reduction = reduction_override or self.reduction
        # (B, C, H*W): positions play the role of classes.
        loss = temperature_kl_div(student_feat.flatten(2), teacher_feat.detach().flatten(2),
                                  self.temperature, class_dim=2).mean(dim=1)
        return self.loss_weight * weight_reduce_loss(loss, weight, reduction, avg_factor)
