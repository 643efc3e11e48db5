"""Per-sample knowledge-distillation losses on class logits."""
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmdet.models.losses.utils import weight_reduce_loss
from torch import Tensor

from mmtkd.registry import MODELS


def temperature_kl_div(student_logits: Tensor, teacher_logits: Tensor, temperature: float,
                       class_dim: int = 1) -> Tensor:
    """``T^2 * KL(softmax(teacher/T) || softmax(student/T))`` summed over the class dimension.

    Args:
        student_logits (Tensor): Student logits, classes along ``class_dim``.
        teacher_logits (Tensor): Teacher logits of the same shape.
        temperature (float): Softening temperature ``T``.
        class_dim (int): Dimension holding the classes. Defaults to 1.

    Returns:
        Tensor: The divergence with ``class_dim`` reduced, e.g. shape (B,) for (B, K) logits or
        (B, H, W) for (B, K, H, W) segmentation logits.
    """
    log_p_s = F.log_softmax(student_logits / temperature, dim=class_dim)
    log_p_t = F.log_softmax(teacher_logits / temperature, dim=class_dim)
    kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum(dim=class_dim)
    return kl * temperature**2


@MODELS.register_module()
class LogitKLDivLoss(nn.Module):
    """Temperature-scaled KL divergence between teacher and student class logits (Hinton KD).

    One value per sample: ``T^2 * sum_k p_t[k] * (log p_t[k] - log p_s[k])`` with
    ``p = softmax(z / T)``. Follows mmdet's loss contract (``weight``, ``avg_factor``,
    ``reduction_override``); ``reduction='none'`` returns shape (B,), which is what the distiller
    uses to apply per-sample teacher weights.

    Args:
        temperature (float): Softening temperature ``T``. Defaults to 4.0 (official MTKD-RL).
        reduction (str): ``'none'``, ``'mean'`` or ``'sum'``. Defaults to ``'mean'``.
        loss_weight (float): Multiplier of the loss. Defaults to 1.0.
    """

    def __init__(self, temperature: float = 4.0, reduction: str = 'mean',
                 loss_weight: float = 1.0) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f'LogitKLDivLoss: temperature must be > 0, got {temperature}')
        self.temperature = temperature
        self.reduction = reduction
        self.loss_weight = loss_weight

    def forward(self, student_logits: Tensor, teacher_logits: Tensor,
                weight: Optional[Tensor] = None, avg_factor: Optional[float] = None,
                reduction_override: Optional[str] = None) -> Tensor:
        """Compute the loss.

        Args:
            student_logits (Tensor): Shape (B, K).
            teacher_logits (Tensor): Shape (B, K); detached by the caller or not, it is never
                back-propagated into here.
            weight (Tensor, optional): Per-sample weights of shape (B,).
            avg_factor (float, optional): Denominator of the mean instead of B.
            reduction_override (str, optional): Overrides ``self.reduction``.

        Returns:
            Tensor: Shape (B,) for ``reduction='none'``, a scalar otherwise.
        """
        reduction = reduction_override or self.reduction
        loss = temperature_kl_div(student_logits, teacher_logits.detach(), self.temperature)
        return self.loss_weight * weight_reduce_loss(loss, weight, reduction, avg_factor)
