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
from typing import Dict, List, Optional, Sequence, Tuple, Union

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
                   masks: Optional[Sequence[Tensor]] = None,
                   batched: bool = True,
                   directions: Optional[Sequence[Tensor]] = None) -> Tensor:
    """Cosine between the task-loss gradient and each teacher's logit-KD gradient, per sample.

    Args:
        task_loss (Tensor): The student's task loss (a scalar, summed or averaged over the batch:
            the cosine does not depend on the scale).
        logit_kd (Tensor): (B, M) the per-sample logit KD to each teacher, with gradients.
        scores (Tensor | Sequence[Tensor]): The student's class scores both losses read (one
            tensor, or one per feature level), each (B, ...).
        masks (Sequence[Tensor], optional): One 0/1 tensor per score tensor, of its shape: the
            agreement is measured where it is 1 only (e.g. a detector's foreground anchors).
        batched (bool): All M KD gradients in one batched backward pass (fewer kernels), or
            one teacher at a time (less peak memory). Same values up to rounding.
        directions (Sequence[Tensor], optional): One tensor per score tensor that replaces the
            task loss's gradient (e.g. a class margin's, negated); ``task_loss`` is then
            unused.

    Returns:
        Tensor: (B, M) agreements in [-1, 1], detached (0 where a gradient vanishes).
    """
    scores = _as_list(scores)
    masks = list(masks) if masks is not None else [None] * len(scores)
    directions = list(directions) if directions is not None else [None] * len(scores)
    kept = [(s, m, d) for s, m, d in zip(scores, masks, directions) if s.requires_grad]
    scores, masks, directions = ([k[i] for k in kept] for i in range(3))
    batch, num_teachers = logit_kd.shape
    if not scores or not logit_kd.requires_grad:
        return logit_kd.new_zeros(batch, num_teachers)
    if any(d is not None for d in directions):
        task_grads = _masked(directions, masks)
    else:
        task_grads = _masked(
            torch.autograd.grad(task_loss, scores, retain_graph=True, allow_unused=True), masks)
    if all(g is None for g in task_grads):  # the task loss does not read these scores
        return logit_kd.new_zeros(batch, num_teachers)
    task_norm = _per_sample_products(task_grads, task_grads)
    if batched:
        dot, kd_norm = _dots_and_norms(
            task_grads, _batched_kd_gradients(logit_kd, scores), masks, lead=2)
    else:  # one teacher at a time: one teacher's gradients alive at once
        columns = [
            _dots_and_norms(
                task_grads,
                torch.autograd.grad(
                    logit_kd[:, m].sum(), scores, retain_graph=True, allow_unused=True),
                masks,
                lead=1) for m in range(num_teachers)
        ]
        dot, kd_norm = (torch.stack(c) for c in zip(*columns))
    return (dot / (task_norm * kd_norm).sqrt().clamp(min=1e-12)).t().detach()


def _batched_kd_gradients(logit_kd: Tensor, scores: List[Tensor]) -> List[Optional[Tensor]]:
    """Each level's (M, B, ...) gradients of the M teachers' KD terms in one backward pass
    (None where unused): ``grad_outputs[m]`` selects column ``m`` of ``logit_kd`` and autograd
    batches the M vector-Jacobian products."""
    batch, num_teachers = logit_kd.shape
    selectors = torch.eye(num_teachers, dtype=logit_kd.dtype, device=logit_kd.device)
    return list(
        torch.autograd.grad(
            logit_kd,
            scores,
            selectors[:, None, :].expand(num_teachers, batch, num_teachers),
            retain_graph=True,
            allow_unused=True,
            is_grads_batched=True))


def _dots_and_norms(task_grads: Sequence[Optional[Tensor]], kd_grads: Sequence[Optional[Tensor]],
                    masks: Sequence[Optional[Tensor]], lead: int) -> Tuple[Tensor, Tensor]:
    """Per-sample ``<task, kd>`` and ``|kd|^2`` summed over levels, where the masks are 1.

    Args:
        task_grads (Sequence[Tensor]): Per level (B, ...), masked already (None: unused).
        kd_grads (Sequence[Tensor]): Per level (B, ...) or, batched over teachers,
            (M, B, ...) (None: unused).
        masks (Sequence[Tensor]): Per level (B, ...) or None.
        lead (int): Leading dimensions of ``kd_grads`` kept: 1 (B) or 2 (M, B).

    Returns:
        tuple[Tensor, Tensor]: Both of the ``lead`` leading shape.
    """
    dot = kd_norm = None
    for task_grad, kd_grad, mask in zip(task_grads, kd_grads, masks):  # levels
        if kd_grad is None:
            continue
        if mask is not None:
            kd_grad = kd_grad * mask
        level_norm = kd_grad.square().flatten(lead).sum(-1)
        kd_norm = level_norm if kd_norm is None else kd_norm + level_norm
        level_dot = (
            torch.zeros_like(level_norm) if task_grad is None else
            (kd_grad * task_grad).flatten(lead).sum(-1))
        dot = level_dot if dot is None else dot + level_dot
    if dot is None:
        raise ValueError('task_agreement: the logit-KD terms do not read the class scores')
    return dot, kd_norm
