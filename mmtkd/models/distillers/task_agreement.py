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
given in place of the task loss's gradient (a detector's class margin) neither is. The closed
form works on all score tensors at once, flattened per sample and concatenated
(:func:`concat_levels`): one dot product and one norm per teacher, whatever the number of
feature levels.
"""
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Union

import torch
from torch import Tensor

from mmtkd.models.tasks.base_task import concat_levels

#: what :func:`task_agreement` returns per sample and teacher (its ``measure``)
AGREEMENT_MEASURES = ('cosine', 'progress')


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


class TaskLossGradients:
    """The student's task-loss gradient at the tensors a step's agreements read, taken in one
    backward pass when first asked for and shared by them: the logit agreement's (at the class
    scores) and the feature agreement's (at the distilled features, through the head) would
    otherwise back-propagate the task loss twice. Nothing runs if no agreement asks.

    Args:
        losses (dict): The student's loss dict (:func:`summed_task_loss` sums it).
        groups (dict): ``{name: tensors}``: the tensors (one per level, each (B, ...)) at which
            the gradient is taken, e.g. ``scores`` and ``features``.
    """

    def __init__(self, losses: Dict[str, Union[Tensor, Sequence[Tensor]]],
                 groups: Dict[str, Sequence[Tensor]]) -> None:
        self.losses = losses
        self.groups = {name: _as_list(tensors) for name, tensors in groups.items()}
        self._grads: Optional[Dict[str, List[Optional[Tensor]]]] = None

    def __call__(self, name: str, support: Optional[Tensor] = None) -> Tensor:
        """The gradient at group ``name`` in the :func:`concat_levels` layout.

        Args:
            name (str): A group given at construction.
            support (Tensor, optional): (B, n) positions: the gradient is gathered there (see
                :func:`task_agreement`).

        Returns:
            Tensor: (B, N) (or (B, n)), a new tensor the caller may change; zero where the task
            loss does not read a level.
        """
        if self._grads is None:
            self._grads = self._take()
        grad = concat_levels(self._grads[name], like=self.groups[name])
        return grad if support is None else grad.gather(1, support)

    def _take(self) -> Dict[str, List[Optional[Tensor]]]:
        """Each group's gradients, one per tensor (None where the task loss does not read it),
        from one backward pass."""
        wanted = [t for tensors in self.groups.values() for t in tensors if t.requires_grad]
        grads = iter(())
        if wanted:
            task_loss = summed_task_loss(self.losses)
            grads = iter(
                torch.autograd.grad(task_loss, wanted, retain_graph=True, allow_unused=True))
        return {
            group: [next(grads) if t.requires_grad else None for t in tensors]
            for group, tensors in self.groups.items()
        }


def _row_dots(left: Tensor, right: Tensor) -> Tensor:
    """(B,) ``<left[b], right[b]>`` as one (B, 1, N) @ (B, N, 1) product: one kernel and no
    temporary of the inputs' size."""
    return torch.bmm(left.flatten(1)[:, None], right.flatten(1)[..., None]).view(-1)


def task_agreement(task_loss: Optional[Tensor],
                   logit_kd: Tensor,
                   scores: Union[Tensor, Sequence[Tensor]],
                   mask: Optional[Tensor] = None,
                   batched: bool = True,
                   direction: Optional[Tensor] = None,
                   kd_grads: Optional[Iterable[Optional[Tensor]]] = None,
                   support: Optional[Tensor] = None,
                   measure: str = 'cosine') -> Tensor:
    """Cosine between the task-loss gradient and each teacher's logit-KD gradient, per sample.

    Masks, directions and closed-form gradients are (B, N) in the :func:`concat_levels` layout
    of ``scores`` (all levels flattened per sample and concatenated; a single score tensor's
    may have its shape) or, with ``support``, (B, n) at those positions only.

    The same cosine one layer lower, at the student's features against each teacher's
    feature-KD gradient, is :func:`feature_agreement`.

    Args:
        task_loss (Tensor, optional): The student's task loss (a scalar, summed or averaged
            over the batch: the cosine does not depend on the scale); unused, and may be None,
            when ``direction`` is given.
        logit_kd (Tensor): (B, M) the per-sample logit KD to each teacher, with gradients.
        scores (Tensor | Sequence[Tensor]): The student's class scores both losses read (one
            tensor, or one per feature level), each (B, ...).
        mask (Tensor, optional): 0/1 (or bool): the agreement is measured where it is 1 only
            (e.g. a detector's foreground anchors).
        batched (bool): All M KD gradients in one batched backward pass (fewer kernels), or
            one teacher at a time (less peak memory). Same values up to rounding.
        direction (Tensor, optional): Replaces the task loss's gradient (e.g. a class
            margin's, negated); made for this call: changed in place.
        kd_grads (Iterable, optional): Each teacher's gradient of its column of ``logit_kd``
            (None for a teacher without logit KD; changed in place), known in closed form and
            read one teacher at a time: no backward pass through the KD terms is needed and
            ``batched`` is unused.
        support (Tensor, optional): (B, n) positions in the (B, N) layout outside which
            ``mask`` is 0 (e.g. every class score of a detector's foreground anchors, padded
            with positions where the mask is 0): the mask, direction and closed-form gradients
            are given there only, gradients taken by autograd are gathered there, and nothing
            of the scores' size is kept.
        measure (str): ``'cosine'`` (default): the cosine of the two gradients; ``'progress'``:
            the cosine times the sample's task-gradient norm over the batch's mean norm, i.e.
            the first-order progress of the sample's task loss under a unit KD step towards
            each teacher, in units of the batch's mean. A sample the student already fits (its
            task gradient near zero) then says little about a teacher, one it still gets wrong
            says most: where the student fits its training set better than a teacher softened
            to the KD temperature, the cosine turns negative for every sample the teacher is
            less sure of than the student, the progress stays ruled by where the task pulls.

    Returns:
        Tensor: (B, M) agreements in [-1, 1] (``'progress'``: in [-B, B], mean norm 1),
        detached (0 where a gradient vanishes).
    """
    if measure not in AGREEMENT_MEASURES:
        raise ValueError(f'task_agreement: measure must be one of {AGREEMENT_MEASURES}, got '
                         f'{measure!r}')
    scores = _as_list(scores)
    batch, num_teachers = logit_kd.shape
    if not any(s.requires_grad for s in scores) or not logit_kd.requires_grad:
        return logit_kd.new_zeros(batch, num_teachers)
    if direction is not None:
        task = direction.reshape(batch, -1)
    else:
        if task_loss is None:
            raise ValueError('task_agreement: give the task loss or the direction')
        task = TaskLossGradients(dict(loss=task_loss), dict(scores=scores))('scores', support)
    mask = None if mask is None else mask.reshape(batch, -1)
    if mask is not None:
        task = task.mul_(mask)
    if kd_grads is None:
        kd_grads = _autograd_kd_gradients(logit_kd, scores, batched)
        if support is not None:
            kd_grads = (None if g is None else g.gather(1, support) for g in kd_grads)
    dots, norms = [], []
    zeros = logit_kd.new_zeros(batch)
    for grad in kd_grads:  # one teacher's gradient alive at a time, unless batched
        if grad is None:  # a teacher without logits
            dots.append(zeros)
            norms.append(zeros)
            continue
        if mask is not None:
            grad = grad.mul_(mask)
        dots.append(_row_dots(grad, task))
        norms.append(_row_dots(grad, grad))
    dot, kd_norm = torch.stack(dots), torch.stack(norms)
    task_sq = _row_dots(task, task)
    # each measure in the arithmetic its recorded runs used, to the last bit (the cosine as
    # before the progress measure existed; the progress as in session 39's runs of it)
    if measure == 'cosine':
        return (dot / (task_sq * kd_norm).sqrt().clamp(min=1e-12)).t().detach()
    task_norm = task_sq.sqrt()
    cosine = dot / (kd_norm.sqrt() * task_norm).clamp(min=1e-12)
    return (cosine * (task_norm / task_norm.mean().clamp(min=1e-12))).t().detach()


def feature_agreement(task_loss: Optional[Tensor],
                      feature_kd: Tensor,
                      features: Sequence[Tensor],
                      batched: bool = True,
                      direction: Optional[Tensor] = None) -> Tensor:
    """Cosine between the task-loss gradient and each teacher's feature-KD gradient at the
    student's distilled features, per sample: :func:`task_agreement` one layer below the
    scores. ``dL_task / dF`` flows back through the student's head, ``dFEAT_m / dF`` through
    teacher ``m``'s connectors; a feature-KD step towards a teacher whose features carry what
    the student's task needs moves ``F`` where the task loss goes down (agreement > 0), one
    towards features that pull elsewhere does not.

    Args:
        task_loss (Tensor, optional): The student's task loss (a scalar); unused, and may be
            None, when ``direction`` is given.
        feature_kd (Tensor): (B, M) the per-sample feature KD to each teacher, with gradients.
        features (Sequence[Tensor]): The student's features both losses read (one per level,
            each (B, C, H, W) or (B, C)); levels the head does not read count as zero task
            gradient.
        batched (bool): All M KD gradients in one batched backward pass, or one teacher at a
            time (see :func:`task_agreement`).
        direction (Tensor, optional): The task loss's gradient at ``features`` already taken
            (:class:`TaskLossGradients`), (B, N) in the :func:`concat_levels` layout; changed
            in place.

    Returns:
        Tensor: (B, M) agreements in [-1, 1], detached (0 where a gradient vanishes).
    """
    return task_agreement(task_loss, feature_kd, features, batched=batched, direction=direction)


def _autograd_kd_gradients(logit_kd: Tensor, scores: List[Tensor],
                           batched: bool) -> Iterator[Tensor]:
    """Each teacher's KD gradient with respect to ``scores`` by autograd, (B, N) each: all M in
    one batched backward pass, or one teacher at a time (computed as they are read)."""
    used = [s for s in scores if s.requires_grad]
    num_teachers = logit_kd.shape[1]
    if batched:
        per_level = iter(_batched_kd_gradients(logit_kd, used))  # each (M, B, ...) or None
        levels = [next(per_level) if s.requires_grad else None for s in scores]
        for m in range(num_teachers):
            yield concat_levels([None if g is None else g[m] for g in levels], like=scores)
        return
    for m in range(num_teachers):
        grads = iter(
            torch.autograd.grad(logit_kd[:, m].sum(), used, retain_graph=True, allow_unused=True))
        yield concat_levels([next(grads) if s.requires_grad else None for s in scores], like=scores)


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
