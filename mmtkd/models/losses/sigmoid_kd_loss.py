"""Knowledge distillation for sigmoid (one-vs-all) classifiers, as in dense detectors."""
import torch.nn.functional as F
from torch import Tensor

from mmtkd.registry import MODELS
from .base_kd_loss import TemperatureKDLoss, scaled, softened


def sigmoid_kl_div(student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    """Element-wise ``T^2 * KL(Bernoulli(sigmoid(t/T)) || Bernoulli(sigmoid(s/T)))``.

    Args:
        student_logits (Tensor): Student logits, any shape.
        teacher_logits (Tensor): Teacher logits, same shape.
        temperature (float): Softening temperature ``T``.

    Returns:
        Tensor: Same shape as the inputs, non-negative.
    """
    s, t = softened(student_logits, temperature), softened(teacher_logits, temperature)
    # With log q = -softplus(-x) and log(1 - q) = -softplus(x), the Bernoulli KL
    # p log p/q + (1-p) log (1-p)/(1-q) simplifies to softplus(s) - softplus(t) - p (s - t):
    # two softplus and one sigmoid per element instead of four log-sigmoids.
    kl = F.softplus(s) - F.softplus(t) - t.sigmoid() * (s - t)
    return scaled(kl, temperature**2)


@MODELS.register_module()
class SigmoidKLDivLoss(TemperatureKDLoss):
    """Binary KL between teacher and student sigmoid scores, per element.

    ``reduction='none'`` returns the element-wise loss (same shape as the inputs); the detection
    task adapter sums it over classes and averages it over anchors to get one value per image.

    Args:
        temperature (float): Softening temperature ``T``. Defaults to 1.0.
        reduction (str): ``'none'``, ``'mean'`` or ``'sum'``. Defaults to ``'mean'``.
        loss_weight (float): Multiplier of the loss. Defaults to 1.0.
    """

    elementwise = True

    def __init__(self,
                 temperature: float = 1.0,
                 reduction: str = 'mean',
                 loss_weight: float = 1.0) -> None:
        super().__init__(temperature, reduction, loss_weight)

    def unreduced(self, student: Tensor, teacher: Tensor) -> Tensor:
        return sigmoid_kl_div(student, teacher, self.temperature)

    def soft_predictions(self, logits: Tensor, inplace: bool = False) -> Tensor:
        """``sigmoid(z / T)``, element-wise (the gradient is ``loss_weight * T * (p_s -
        p_t)``)."""
        soft = softened(logits, self.temperature, inplace)
        # in place on a tensor of our own (or the caller's, if allowed), never on another's
        return soft.sigmoid_() if inplace or soft is not logits else soft.sigmoid()
