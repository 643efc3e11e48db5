"""One student's KD to several teachers at once, differentiated in closed form.

Autograd differentiates each teacher's KD term on its own: a sigmoid or softmax KL keeps its
teacher's soft targets (``sigmoid(t / T)``, one tensor of the scores' size per teacher) for the
backward pass, and adds the teachers' gradients one by one. With the losses' closed form (the
gradient with respect to the student's input is ``gradient_scale * (p(s) - p(t))``,
:meth:`BaseKDLoss.soft_predictions`), the same gradient needs only the student's and the
teachers' inputs, which the distiller holds anyway: the soft targets are recomputed in the
backward pass, one teacher at a time, and the student's soft predictions once for all teachers.
At 8 x 640x640 a RetinaNet's class scores are 187 MiB per model; three teachers' soft targets
were the largest part of the logit KD's memory.
"""
from typing import Sequence, Tuple

import torch
from torch import Tensor

from .base_kd_loss import BaseKDLoss, scaled


class _SharedStudentKD(torch.autograd.Function):
    """Per-sample sums of ``loss(student, teacher_m)`` for every teacher, (B, M); the gradient
    reaches ``student`` only."""

    generate_vmap_rule = True  # autograd's batched gradients (``is_grads_batched``) work

    @staticmethod
    def forward(loss: BaseKDLoss, student: Tensor, *teachers: Tensor) -> Tensor:
        return torch.stack([
            loss(student, teacher, reduction_override='none').reshape(student.shape[0], -1).sum(1)
            for teacher in teachers
        ], 1)

    @staticmethod
    def setup_context(ctx, inputs: Tuple, output: Tensor) -> None:
        loss, *tensors = inputs
        ctx.loss = loss
        # the inputs themselves, no tensor made for the backward pass
        ctx.save_for_backward(*tensors)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tuple:
        # d/ds sum_m g_m KD_m = c (p(s) sum_m g_m - sum_m g_m p(t_m)), c = gradient_scale;
        # out of place, so that batched gradients (vmap over ``grad``) work
        student, *teachers = ctx.saved_tensors
        loss = ctx.loss
        per_sample = (-1, ) + (1, ) * (student.dim() - 1)
        coef = scaled(grad, loss.gradient_scale)
        student_grad = loss.soft_predictions(student) * coef.sum(1).view(per_sample)
        for m, teacher in enumerate(teachers):
            student_grad = torch.addcmul(
                student_grad,
                loss.soft_predictions(teacher),
                coef[:, m].reshape(per_sample),
                value=-1)
        return (None, student_grad) + (None, ) * len(teachers)


def shared_student_kd(loss: BaseKDLoss, student: Tensor, teachers: Sequence[Tensor]) -> Tensor:
    """Each sample's KD to each teacher, summed over its elements, with the closed-form
    gradient (no soft targets kept for the backward pass, the student's computed once).

    Args:
        loss (BaseKDLoss): A KD loss with :attr:`BaseKDLoss.has_student_gradient`.
        student (Tensor): The student's inputs of the loss, (B, ...), with gradient.
        teachers (Sequence[Tensor]): Each teacher's, of the student's shape.

    Returns:
        Tensor: (B, M): ``loss(student, teachers[m], reduction_override='none')`` summed over
        all but the batch dimension, in column ``m``.
    """
    if not loss.has_student_gradient:
        raise TypeError(f'{type(loss).__name__} has no closed-form student gradient '
                        '(soft_predictions); compute its KD per teacher with autograd')
    for teacher in teachers:
        if teacher.shape != student.shape:
            raise ValueError(f'teacher inputs {tuple(teacher.shape)} differ from the '
                             f"student's {tuple(student.shape)}")
    return _SharedStudentKD.apply(loss, student, *(t.detach() for t in teachers))
