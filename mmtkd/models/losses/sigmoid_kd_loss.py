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
    # KL(p || q) = CE(p, q) - H(p): the cross-entropy of the teacher's probabilities p under
    # the student's logits minus the teacher's own entropy, each one fused (numerically
    # stable) binary cross-entropy with logits: four kernels forward and three backward (the
    # student's term only), where softplus(s) - softplus(t) - p (s - t) takes seven and four
    p = t.sigmoid()
    kl = (
        F.binary_cross_entropy_with_logits(s, p, reduction='none') -
        F.binary_cross_entropy_with_logits(t, p, reduction='none'))
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
        if soft is logits and not inplace:  # T = 1: the caller's tensor, not to be written
            return logits.sigmoid()
        return soft.sigmoid_()
