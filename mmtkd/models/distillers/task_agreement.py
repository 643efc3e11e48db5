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
the gradients are taken with respect to the class scores, which the losses read directly. Where
the task and the KD loss know the KD gradient in closed form (``kd_grads``: sigmoid or softmax KL
on a detector's or a classifier's scores) the second pass is not needed, and with a direction
given in place of the task loss's gradient (a detector's class margin) neither is.
"""
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

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
            masks: Sequence[Optional[Tensor]],
            in_place: bool = False) -> List[Optional[Tensor]]:
    """``grads * masks`` per level; ``in_place`` for tensors made for this call only."""
    return [
        g if g is None or m is None else g.mul_(m) if in_place else g * m
        for g, m in zip(grads, masks)
    ]


def _row_dots(left: Tensor, right: Tensor) -> Tensor:
    """(B,) ``<left[b], right[b]>`` as one (B, 1, N) @ (B, N, 1) product: one kernel and no
    temporary of the inputs' size."""
    return torch.bmm(left.flatten(1)[:, None], right.flatten(1)[..., None]).view(-1)


def _squared_norms(grads: Sequence[Optional[Tensor]], lead: int = 1) -> Tensor:
    """Sum over levels of each sample's ``|grad|^2`` (``lead`` leading dimensions kept), with
    no temporary of the gradients' size; a missing gradient (None) counts 0."""
    total = 0
    for grad in grads:
        if grad is not None:
            total = total + (
                _row_dots(grad, grad) if lead == 1 else torch.linalg.vector_norm(
                    grad.flatten(lead), dim=-1).square())
    return total


def task_agreement(task_loss: Tensor,
                   logit_kd: Tensor,
                   scores: Union[Tensor, Sequence[Tensor]],
                   masks: Optional[Sequence[Tensor]] = None,
                   batched: bool = True,
                   directions: Optional[Sequence[Tensor]] = None,
                   kd_grads: Optional[Iterable[Optional[Sequence[Tensor]]]] = None) -> Tensor:
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
        kd_grads (Iterable, optional): Each teacher's gradients of its column of ``logit_kd``
            with respect to ``scores`` (one per score tensor; None for a teacher without logit
            KD), known in closed form and read one teacher at a time: no backward pass through
            the KD terms is needed and ``batched`` is unused.

    Returns:
        Tensor: (B, M) agreements in [-1, 1], detached (0 where a gradient vanishes).
    """
    scores = _as_list(scores)
    masks = list(masks) if masks is not None else [None] * len(scores)
    directions = list(directions) if directions is not None else [None] * len(scores)
    used = [i for i, s in enumerate(scores) if s.requires_grad]
    scores, masks, directions = ([values[i] for i in used]
                                 for values in (scores, masks, directions))
    batch, num_teachers = logit_kd.shape
    if not scores or not logit_kd.requires_grad:
        return logit_kd.new_zeros(batch, num_teachers)
    if any(d is not None for d in directions):
        task_grads = _masked(directions, masks, in_place=True)
    else:
        task_grads = _masked(
            torch.autograd.grad(task_loss, scores, retain_graph=True, allow_unused=True), masks)
    if all(g is None for g in task_grads):  # the task loss does not read these scores
        return logit_kd.new_zeros(batch, num_teachers)
    task_norm = _squared_norms(task_grads)
    if kd_grads is not None:  # closed form: one teacher's gradients at a time, no backward
        zeros = logit_kd.new_zeros(batch)
        columns = [(zeros, zeros) if grads is None else _dots_and_norms(
            task_grads, [grads[i] for i in used], masks, lead=1, owned=True) for grads in kd_grads]
        dot, kd_norm = (torch.stack(c) for c in zip(*columns))
    elif batched:
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


def _dots_and_norms(task_grads: Sequence[Optional[Tensor]],
                    kd_grads: Sequence[Optional[Tensor]],
                    masks: Sequence[Optional[Tensor]],
                    lead: int,
                    owned: bool = False) -> Tuple[Tensor, Tensor]:
    """Per-sample ``<task, kd>`` and ``|kd|^2`` summed over levels, where the masks are 1.

    Args:
        task_grads (Sequence[Tensor]): Per level (B, ...), masked already (None: unused).
        kd_grads (Sequence[Tensor]): Per level (B, ...) or, batched over teachers,
            (M, B, ...) (None: unused).
        masks (Sequence[Tensor]): Per level (B, ...) or None.
        lead (int): Leading dimensions of ``kd_grads`` kept: 1 (B) or 2 (M, B).
        owned (bool): ``kd_grads`` were made for this call (used nowhere else): they are
            masked in place.

    Returns:
        tuple[Tensor, Tensor]: Both of the ``lead`` leading shape.
    """
    dot = kd_norm = None
    for task_grad, kd_grad, mask in zip(task_grads, kd_grads, masks):  # levels
        if kd_grad is None:
            continue
        if mask is not None:
            kd_grad = kd_grad.mul_(mask) if owned else kd_grad * mask
        level_norm = _squared_norms([kd_grad], lead)
        kd_norm = level_norm if kd_norm is None else kd_norm + level_norm
        if task_grad is None:
            level_dot = torch.zeros_like(level_norm)
        elif lead == 1:
            level_dot = _row_dots(kd_grad, task_grad)
        else:
            level_dot = (kd_grad * task_grad).flatten(lead).sum(-1)
        dot = level_dot if dot is None else dot + level_dot
    if dot is None:
        raise ValueError('task_agreement: the logit-KD terms do not read the class scores')
    return dot, kd_norm
