"""Per-teacher credit from gradients: does distilling from a teacher move the student the way
its own task loss wants?

For sample ``b`` and teacher ``m``, with ``z`` the student's class scores (logits of a
classifier, per-anchor scores of a detector, per-pixel scores of a segmentor)::

    agreement[b, m] = cos(dL_task[b] / dz[b], dKD_m[b] / dz[b])

A plain SGD step on ``KD_m`` changes the task loss by about ``-lr <dL_task/dz, dKD_m/dz>``
(first order, in the student's output space): the agreement is that step's predicted progress
on the student's own task, per teacher and per sample, scale-free. A teacher that points at the
ground truth agrees with the task; one with wrong classes disagrees; an untrained one is
uncorrelated where it matters (the positives a focal loss weighs most).

It costs two backward passes through the loss functions only (not through the network): one for
the task loss and one, vectorised over the teachers (``is_grads_batched``), for the M KD terms;
the gradients are taken with respect to the class scores, which the losses read directly.
"""
from typing import Dict, List, Optional, Sequence, Union

import torch
from torch import Tensor


def _as_list(value: Union[Tensor, Sequence[Tensor]]) -> List[Tensor]:
    return [value] if isinstance(value, Tensor) else list(value)


def summed_task_loss(losses: Dict[str, Union[Tensor, Sequence[Tensor]]]) -> Tensor:
    """The sum of a model's loss terms that carry gradients (MMEngine's ``loss`` keys).

    Args:
        losses (dict): A model's loss dict (values are tensors or lists of tensors).

    Returns:
        Tensor: A scalar.
    """
    terms = [
        term for key, value in losses.items() if 'loss' in key for term in _as_list(value)
        if term.requires_grad
    ]
    if not terms:
        raise ValueError('task_agreement: the student has no loss term with gradients')
    return sum(term.sum() for term in terms)


def _masked(grads: Sequence[Optional[Tensor]],
            masks: Sequence[Optional[Tensor]]) -> List[Optional[Tensor]]:
    return [g if g is None or m is None else g * m for g, m in zip(grads, masks)]


def _per_sample_products(left: Sequence[Tensor], right: Sequence[Tensor]) -> Tensor:
    """(B,) sum over levels of ``<left[b], right[b]>``; a missing gradient (None) counts 0."""
    total = 0
    for a, b in zip(left, right):
        if a is not None and b is not None:
            total = total + (a * b).flatten(1).sum(1)
    return total


def task_agreement(task_loss: Tensor,
                   logit_kd: Tensor,
                   scores: Union[Tensor, Sequence[Tensor]],
                   masks: Optional[Sequence[Tensor]] = None) -> Tensor:
    """Cosine between the task-loss gradient and each teacher's logit-KD gradient, per sample.

    Args:
        task_loss (Tensor): The student's task loss (a scalar, summed or averaged over the batch:
            the cosine does not depend on the scale).
        logit_kd (Tensor): (B, M) the per-sample logit KD to each teacher, with gradients.
        scores (Tensor | Sequence[Tensor]): The student's class scores both losses read (one
            tensor, or one per feature level), each (B, ...).
        masks (Sequence[Tensor], optional): One 0/1 tensor per score tensor, of its shape: the
            agreement is measured where it is 1 only (e.g. a detector's foreground anchors).

    Returns:
        Tensor: (B, M) agreements in [-1, 1], detached (0 where a gradient vanishes).
    """
    scores = _as_list(scores)
    masks = list(masks) if masks is not None else [None] * len(scores)
    kept = [(s, m) for s, m in zip(scores, masks) if s.requires_grad]
    scores, masks = [s for s, _ in kept], [m for _, m in kept]
    batch, num_teachers = logit_kd.shape
    if not scores or not logit_kd.requires_grad:
        return logit_kd.new_zeros(batch, num_teachers)
    task_grads = _masked(
        torch.autograd.grad(task_loss, scores, retain_graph=True, allow_unused=True), masks)
    if all(g is None for g in task_grads):  # the task loss does not read these scores
        return logit_kd.new_zeros(batch, num_teachers)
    task_norm = _per_sample_products(task_grads, task_grads)
    # every teacher's KD gradient in one vectorised backward pass: grad_outputs[m] selects
    # column m of logit_kd, and autograd batches the M vector-Jacobian products
    selectors = torch.eye(num_teachers, dtype=logit_kd.dtype, device=logit_kd.device)
    selectors = selectors[:, None, :].expand(num_teachers, batch, num_teachers)
    kd_grads = _masked(
        torch.autograd.grad(
            logit_kd,
            scores,
            selectors,
            retain_graph=True,
            allow_unused=True,
            is_grads_batched=True), [None if m is None else m[None] for m in masks])
    dot = kd_norm = logit_kd.new_zeros(num_teachers, batch)
    for task_grad, kd_grad in zip(task_grads, kd_grads):  # levels
        if task_grad is not None and kd_grad is not None:
            dot = dot + (kd_grad * task_grad[None]).flatten(2).sum(2)
        if kd_grad is not None:
            kd_norm = kd_norm + kd_grad.square().flatten(2).sum(2)
    return (dot / (task_norm * kd_norm).sqrt().clamp(min=1e-12)).t().detach()
