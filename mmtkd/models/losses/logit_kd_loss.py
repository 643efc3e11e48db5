"""Per-sample knowledge-distillation loss on class logits."""
import torch.nn.functional as F
from torch import Tensor

from mmtkd.registry import MODELS
from .base_kd_loss import TemperatureKDLoss, scaled, softened


def temperature_kl_div(student_logits: Tensor,
                       teacher_logits: Tensor,
                       temperature: float,
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
    log_p_s = F.log_softmax(softened(student_logits, temperature), dim=class_dim)
    log_p_t = F.log_softmax(softened(teacher_logits, temperature), dim=class_dim)
    kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum(dim=class_dim)
    return scaled(kl, temperature**2)


@MODELS.register_module()
class LogitKLDivLoss(TemperatureKDLoss):
    """Temperature-scaled KL divergence between teacher and student class logits (Hinton KD).

    One value per sample: ``T^2 * sum_k p_t[k] * (log p_t[k] - log p_s[k])`` with
    ``p = softmax(z / T)`` over dimension 1; (B, K, H, W) logits give one value per pixel.

    Args:
        temperature (float): Softening temperature ``T``. Defaults to 4.0 (official MTKD-RL).
        reduction (str): ``'none'``, ``'mean'`` or ``'sum'``. Defaults to ``'mean'``.
        loss_weight (float): Multiplier of the loss. Defaults to 1.0.
    """

    def __init__(self,
                 temperature: float = 4.0,
                 reduction: str = 'mean',
                 loss_weight: float = 1.0) -> None:
        super().__init__(temperature, reduction, loss_weight)

    def unreduced(self, student: Tensor, teacher: Tensor) -> Tensor:
        return temperature_kl_div(student, teacher, self.temperature)

    def soft_predictions(self, logits: Tensor, inplace: bool = False) -> Tensor:
        """``softmax(z / T)`` over dimension 1 (the gradient is ``loss_weight * T * (p_s -
        p_t)``)."""
        return softened(logits, self.temperature, inplace).softmax(1)
