"""The reduction contract shared by mmtkd's KD losses (mmdet's weight / avg_factor / reduction)."""
from typing import Optional

import torch
import torch.nn as nn
from mmdet.models.losses.utils import weight_reduce_loss
from torch import Tensor


def scaled(tensor: Tensor, factor: float) -> Tensor:
    """``tensor * factor``, or ``tensor`` itself for a factor of 1: a unit loss weight or
    temperature costs no kernel, forward or backward (one per loss call, level and teacher).

    Args:
        tensor (Tensor): Any tensor.
        factor (float): A Python number.

    Returns:
        Tensor: The product (``tensor`` unchanged when ``factor == 1``).
    """
    return tensor if factor == 1 else tensor * factor


def softened(logits: Tensor, temperature: float, inplace: bool = False) -> Tensor:
    """``logits / temperature`` (in place if asked), or ``logits`` itself at ``T = 1``.

    Args:
        logits (Tensor): Any logits.
        temperature (float): The softening temperature.
        inplace (bool): Divide in place. Defaults to False.

    Returns:
        Tensor: The softened logits.
    """
    if temperature == 1:
        return logits
    return logits.div_(temperature) if inplace else logits / temperature


class BaseKDLoss(nn.Module):
    """A KD loss computed per sample (or per element), then weighted and reduced like mmdet's.

    Subclasses implement :meth:`unreduced`; ``reduction='none'`` returns its output unchanged
    (times ``loss_weight``), which is what the distiller needs to apply per-sample teacher
    weights.

    Args:
        reduction (str): ``'none'``, ``'mean'`` or ``'sum'``. Defaults to ``'mean'``.
        loss_weight (float): Multiplier of the loss. Defaults to 1.0.
    """

    #: whether the loss of each element depends on that element only (then it can be computed,
    #: and differentiated, on the inputs reshaped or concatenated any way)
    elementwise: bool = False

    def __init__(self, reduction: str = 'mean', loss_weight: float = 1.0) -> None:
        super().__init__()
        self.reduction = reduction
        self.loss_weight = loss_weight

    def unreduced(self, student: Tensor, teacher: Tensor) -> Tensor:
        """The loss before weighting and reduction.

        Args:
            student (Tensor): Student predictions or features.
            teacher (Tensor): Teacher predictions or features (already detached).

        Returns:
            Tensor: One value per sample (or per element).
        """
        raise NotImplementedError

    @property
    def has_student_gradient(self) -> bool:
        """Whether the loss's gradient has the closed form of :meth:`student_gradient` (a
        subclass that implements :meth:`soft_predictions`)."""
        return type(self).soft_predictions is not BaseKDLoss.soft_predictions

    def soft_predictions(self, logits: Tensor, inplace: bool = False) -> Optional[Tensor]:
        """``p(z)``, where the loss's gradient with respect to the student's input is
        ``gradient_scale * (p(student) - p(teacher))`` (a KL between softened predictions, an
        MSE on logits); None where the loss has no such form (callers then use autograd).

        Args:
            logits (Tensor): Student or teacher inputs of the loss, detached.
            inplace (bool): Overwrite ``logits`` (made for this call only).

        Returns:
            Tensor | None: Of the input's shape.
        """
        return None

    @property
    def gradient_scale(self) -> float:
        """The factor of :meth:`student_gradient`."""
        return self.loss_weight

    def gradient_between(self,
                         student_soft: Tensor,
                         teacher_soft: Tensor,
                         factor: float = 1.0) -> Tensor:
        """``factor * gradient_scale * (student_soft - teacher_soft)``, written over
        ``teacher_soft``: the gradient from the :meth:`soft_predictions` of both, one student's
        shared by many teachers.

        Args:
            student_soft (Tensor): The student's soft predictions.
            teacher_soft (Tensor): The teacher's, made for this call (overwritten).
            factor (float): An extra factor (e.g. a mean's ``1 / count``).

        Returns:
            Tensor: ``teacher_soft``, now the gradient.
        """
        grad = torch.sub(student_soft, teacher_soft, out=teacher_soft)
        return grad.mul_(factor * self.gradient_scale)

    def student_gradient(self, student: Tensor, teacher: Tensor) -> Optional[Tensor]:
        """The gradient of the loss (``reduction='none'``, summed) with respect to the student's
        input, in closed form: no backward pass. None where a loss gives none (callers then use
        autograd).

        Args:
            student (Tensor): Student predictions.
            teacher (Tensor): Teacher predictions of the same shape.

        Returns:
            Tensor | None: Of the student's shape.
        """
        if not self.has_student_gradient:
            return None
        return self.gradient_between(
            self.soft_predictions(student.detach()), self.soft_predictions(teacher.detach()))

    def forward(self,
                student: Tensor,
                teacher: Tensor,
                weight: Optional[Tensor] = None,
                avg_factor: Optional[float] = None,
                reduction_override: Optional[str] = None) -> Tensor:
        """Compute, weight and reduce the loss; the teacher never receives gradients.

        Args:
            student (Tensor): Student predictions or features.
            teacher (Tensor): Teacher predictions or features.
            weight (Tensor, optional): Weights broadcastable to the unreduced loss.
            avg_factor (float, optional): Denominator of the mean.
            reduction_override (str, optional): Overrides ``self.reduction``.

        Returns:
            Tensor: The unreduced loss for ``'none'``, a scalar otherwise.
        """
        loss = self.unreduced(student, teacher.detach())
        reduction = reduction_override or self.reduction
        return scaled(weight_reduce_loss(loss, weight, reduction, avg_factor), self.loss_weight)


class TemperatureKDLoss(BaseKDLoss):
    """A :class:`BaseKDLoss` with a softening temperature ``T > 0``.

    Args:
        temperature (float): Softening temperature.
        reduction (str): ``'none'``, ``'mean'`` or ``'sum'``.
        loss_weight (float): Multiplier of the loss.
    """

    def __init__(self,
                 temperature: float,
                 reduction: str = 'mean',
                 loss_weight: float = 1.0) -> None:
        super().__init__(reduction, loss_weight)
        if temperature <= 0:
            raise ValueError(f'{type(self).__name__}: temperature must be > 0, got '
                             f'{temperature}')
        self.temperature = temperature

    @property
    def gradient_scale(self) -> float:
        """``loss_weight * T``: the ``T^2`` of the softened KL over the ``T`` of ``z / T``."""
        return self.loss_weight * self.temperature
