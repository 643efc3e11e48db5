"""mmdet's ``AnchorHead`` loss, per image and shared between detectors.

``AnchorHead.loss_by_feat`` assigns anchor targets image by image and averages the losses over
the batch. Multi-teacher KD needs each model's loss *per image* (teacher performance, the
student's reward term), for several models on the same batch. This module writes the same
computation out so that (a) detectors whose heads would assign identical targets share one
assignment per batch (:class:`AnchorTargets`, :func:`assign_anchor_targets`,
:func:`share_anchor_targets`), (b) one loss call covers all levels and as many images as memory
allows (:func:`summed_anchor_losses`, :func:`copy_anchor_rows`), (c) losses are summed per
image before any batch average, and (d) on CPU the models' no-grad focal losses on the same rows
read targets built once for them all (:class:`FocalTargets`, :func:`summed_focal_loss_`).
The values equal mmdet's (tests compare losses and gradients with ``loss_by_feat``). It reads
only public attributes of mmdet's heads (``loss_cls``, ``loss_bbox``, ``bbox_coder``,
``prior_generator``, ``get_targets``, ``train_cfg``).
"""
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from functools import cached_property
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor


def sum_losses(losses: Dict[str, object]) -> Tensor:
    """Sum every ``loss*`` entry of an mmdet loss dict (values may be per-level lists)."""
    total = 0
    for key, value in losses.items():
        if 'loss' in key:
            total = total + (sum(value) if isinstance(value, (list, tuple)) else value)
    return total


def summed_anchor_losses(
        head: nn.Module,
        scores: Tensor,
        deltas: Tensor,
        anchors: Optional[Tensor],
        labels: Tensor,
        label_weights: Tensor,
        bbox_targets: Tensor,
        bbox_weights: Tensor,
        focal_targets: Optional[Dict[tuple, 'FocalTargets']] = None) -> Tuple[Tensor, Tensor]:
    """Classification and box losses of ``AnchorHead.loss_by_feat_single``, summed over each
    row's anchors instead of averaged over the batch, without gradients: one call per loss for
    all the rows (:func:`summed_class_loss_`, then :func:`summed_box_loss`).

    Args:
        head (nn.Module): An mmdet ``AnchorHead`` (its ``loss_cls``, ``loss_bbox``, box coder).
        scores (Tensor): (R, n, K) class scores of n anchors per row (an image, or an image of
            one model); a copy the call may overwrite.
        deltas (Tensor): (R, n, E) box predictions.
        anchors (Tensor, optional): (R, n, 4) anchors (read by decoded-box losses only; None
            for the others).
        labels (Tensor): (R, n) assigned labels.
        label_weights (Tensor): (R, n) label weights.
        bbox_targets (Tensor): (R, n, D) box targets.
        bbox_weights (Tensor): (R, n, D) box weights.
        focal_targets (dict, optional): The rows' focal-loss targets, shared by the calls of
            every model scored on these rows (:func:`summed_class_loss_`). Defaults to None
            (built for this call alone).

    Returns:
        tuple[Tensor, Tensor]: (R, ) summed classification and (R, ) summed box losses, with
        the losses' ``loss_weight`` applied, as mmdet sums them before dividing by the average
        factor.
    """
    return (summed_class_loss_(head, scores, labels, label_weights,
                               {} if focal_targets is None else focal_targets),
            summed_box_loss(head, deltas, anchors, bbox_targets, bbox_weights))


def is_sigmoid_focal_loss(loss: nn.Module) -> bool:
    """Whether ``loss`` is mmdet's ``FocalLoss`` on sigmoid scores from logits."""
    from mmdet.models.losses import FocalLoss
    return type(loss) is FocalLoss and loss.use_sigmoid and not loss.activated


def assigned_class_mask(labels: Tensor, num_classes: int) -> Tensor:
    """(..., num_classes) bool: True at each label's class (``F.one_hot`` without its host
    synchronisation, which checks the range, and without the background column: the labels are
    an assigner's, in ``[0, num_classes]``, and ``num_classes``, the background, matches none).

    Args:
        labels (Tensor): (...) labels in ``[0, num_classes]``.
        num_classes (int): The classes scored.

    Returns:
        Tensor: (..., num_classes) bool mask.
    """
    return labels[..., None] == torch.arange(num_classes, device=labels.device)


def summed_class_loss_(head: nn.Module, scores: Tensor, labels: Tensor, label_weights: Tensor,
                       focal_targets: Dict[tuple, 'FocalTargets']) -> Tensor:
    """:func:`summed_class_loss` of no-grad scores that it may overwrite: (R, ).

    On CPU, mmdet's sigmoid ``FocalLoss`` runs as :func:`summed_focal_loss_`, in place of the
    scores, on :class:`FocalTargets` built once for the rows and kept in ``focal_targets`` for
    the next model's call (mmdet's Python form builds its one-hot targets and every element's
    weight again in each call: 19 kernels a call, against 7 here and 9 once per rows). On CUDA
    mmdet calls mmcv's one-kernel focal loss, which stays.

    Args:
        head (nn.Module): An mmdet ``AnchorHead``.
        scores (Tensor): (R, n, K) class scores, overwritten by the CPU focal loss.
        labels (Tensor): (R, n) labels in ``[0, K]`` (``K``: background).
        label_weights (Tensor): (R, n) label weights.
        focal_targets (dict): Focal targets of these rows by ``(alpha, dtype)``, filled here.

    Returns:
        Tensor: (R, ) summed losses, the ``loss_weight`` applied.
    """
    loss = head.loss_cls
    if scores.is_cuda or scores.requires_grad or not is_sigmoid_focal_loss(loss):
        return summed_class_loss(head, scores, labels, label_weights)
    key = (loss.alpha, scores.dtype)
    if key not in focal_targets:
        focal_targets[key] = FocalTargets.build(labels, label_weights, scores.shape[-1], loss.alpha,
                                                scores.dtype)
    sums = summed_focal_loss_(scores, focal_targets[key], loss.gamma)
    return sums if loss.loss_weight == 1 else sums * loss.loss_weight


@dataclass
class FocalTargets:
    """A sigmoid focal loss's targets for some rows of anchors, in the form
    :func:`summed_focal_loss_` reads them: built once for every model scored on the same rows
    (teachers that share an anchor assignment).

    Attributes:
        sign (Tensor): (R, n, K) int8: -1 at each anchor's assigned class, 1 elsewhere (a
            background anchor: 1 at every class).
        coefficient (Tensor): (R, n, K): the loss's ``alpha`` at an assigned class and
            ``1 - alpha`` elsewhere, times the anchor's label weight (mmdet's focal weight
            without its ``pt ** gamma``, times the element's weight).
    """
    sign: Tensor
    coefficient: Tensor

    @classmethod
    def build(cls, labels: Tensor, label_weights: Tensor, num_classes: int, alpha: float,
              dtype: torch.dtype) -> 'FocalTargets':
        """The targets of labels assigned to anchors.

        Args:
            labels (Tensor): (R, n) labels in ``[0, num_classes]`` (``num_classes``: the
                background, which matches no class).
            label_weights (Tensor): (R, n) label weights.
            num_classes (int): K, the classes scored.
            alpha (float): The focal loss's ``alpha``.
            dtype (torch.dtype): The scores' dtype.

        Returns:
            FocalTargets: Its sign and coefficient, (R, n, K) each.
        """
        assigned = assigned_class_mask(labels, num_classes)
        return cls(
            sign=assigned.to(torch.int8).mul_(-2).add_(1),
            coefficient=assigned.to(dtype).mul_(2 * alpha - 1).add_(1 - alpha).mul_(
                label_weights[..., None]))


def summed_focal_loss_(scores: Tensor, targets: FocalTargets, gamma: float) -> Tensor:
    """mmdet's sigmoid focal loss (``py_sigmoid_focal_loss``, before its ``loss_weight``)
    summed over each row's elements, in seven kernels computed in place of ``scores`` (no grad).

    With ``u`` the score negated at an element's assigned class, the binary cross-entropy of
    the element is ``softplus(u)`` and mmdet's ``pt`` (one minus the probability the score
    gives the target) is ``sigmoid(u)``, so the element's loss is
    ``coefficient * sigmoid(u) ** gamma * softplus(u)``.

    Args:
        scores (Tensor): (R, n, K) logits, contiguous, overwritten.
        targets (FocalTargets): The rows' targets.
        gamma (float): The focal loss's ``gamma``.

    Returns:
        Tensor: (R, ) each row's summed loss.
    """
    rows = scores.shape[0]
    flipped = scores.mul_(targets.sign)
    cross_entropy = F.softplus(flipped)
    loss = flipped.sigmoid_().pow_(gamma).mul_(cross_entropy)
    return loss.mul_(targets.coefficient).view(rows, -1).sum(1)


def summed_class_loss(head: nn.Module, scores: Tensor, labels: Tensor,
                      label_weights: Tensor) -> Tensor:
    """The classification half of :func:`summed_anchor_losses` (same arguments): (R, ).

    mmdet's sigmoid ``FocalLoss`` is summed before its ``loss_weight`` is applied
    (:func:`unscaled_focal_loss`): its element-wise output is not copied once more to be
    scaled, as mmdet's own reduced call does not copy it either.
    """
    pred, target, weight = (scores.reshape(-1, scores.size(-1)), labels.reshape(-1),
                            label_weights.reshape(-1))
    unscaled = unscaled_focal_loss(head.loss_cls, pred, target, weight)
    if unscaled is None:
        return sum_per_row(
            head.loss_cls(pred, target, weight, reduction_override='none'), scores.shape[0])
    sums = sum_per_row(unscaled, scores.shape[0])
    return sums if head.loss_cls.loss_weight == 1 else sums * head.loss_cls.loss_weight


def unscaled_focal_loss(loss: nn.Module, pred: Tensor, labels: Tensor,
                        weight: Tensor) -> Optional[Tensor]:
    """mmdet ``FocalLoss``'s element-wise loss (``reduction_override='none'``) before its
    ``loss_weight``, computed by the function the module picks (mmcv's kernel on CUDA, mmdet's
    Python form elsewhere); None for any other loss.

    On CPU the labels' one-hot targets are :func:`assigned_class_mask` copied to floats (mmdet
    uses ``F.one_hot``: a host synchronisation and int64 targets with a background column).

    Args:
        loss (nn.Module): A classification loss module.
        pred (Tensor): (N, K) logits.
        labels (Tensor): (N, ) labels in ``[0, K]`` (``K``: background).
        weight (Tensor): (N, ) weights.

    Returns:
        Tensor, optional: (N, K) losses, not multiplied by ``loss.loss_weight``.
    """
    from mmdet.models.losses.focal_loss import py_sigmoid_focal_loss, sigmoid_focal_loss
    if not is_sigmoid_focal_loss(loss):
        return None
    options = dict(gamma=loss.gamma, alpha=loss.alpha, reduction='none')
    if pred.is_cuda:
        return sigmoid_focal_loss(pred, labels, weight, **options)
    one_hot = assigned_class_mask(labels, pred.shape[1]).to(pred.dtype)
    return py_sigmoid_focal_loss(pred, one_hot, weight, **options)


def summed_box_loss(head: nn.Module, deltas: Tensor, anchors: Optional[Tensor],
                    bbox_targets: Tensor, bbox_weights: Tensor) -> Tensor:
    """The box half of :func:`summed_anchor_losses` (same arguments): (R, )."""
    rows = deltas.shape[0]
    deltas = deltas.reshape(-1, deltas.size(-1))
    if head.reg_decoded_bbox:
        from mmdet.structures.bbox import get_box_tensor
        deltas = get_box_tensor(
            head.bbox_coder.decode(anchors.reshape(-1, anchors.size(-1)), deltas))
    # the box weights are applied here rather than by the loss: given weights, mmdet's box losses
    # first test ``torch.any(weight > 0)`` on the host, a GPU synchronisation per call
    loss = head.loss_bbox(
        deltas, bbox_targets.reshape(-1, bbox_targets.size(-1)), reduction_override='none')
    bbox_weights = bbox_weights.reshape(-1, bbox_weights.size(-1))
    if loss.dim() < bbox_weights.dim():  # IoU-type losses: one value per box, as mmdet
        bbox_weights = bbox_weights.mean(-1)
    return sum_per_row(loss * bbox_weights, rows)


def sum_per_row(loss: Tensor, rows: int) -> Tensor:
    """Sum an element-wise loss over each row's elements (a scalar, which some losses return
    when nothing carries weight, is that value for every row)."""
    if loss.dim() == 0:
        return loss.expand(rows)
    return loss.reshape(rows, -1).sum(1)


def copy_anchor_rows(level_outputs: Sequence[Tensor], images: slice, out: Tensor) -> Tensor:
    """Copy a head's outputs for some images into ``out`` in mmdet's anchor order.

    Args:
        level_outputs (Sequence[Tensor]): One (B, A*C, H, W) output per level.
        images (slice): The images to copy.
        out (Tensor): (rows, anchors of every level, C), filled and returned: one copy per
            level, where flattening each level and concatenating would copy twice.

    Returns:
        Tensor: ``out``.
    """
    start = 0
    for level in level_outputs:
        part = level[images].permute(0, 2, 3, 1)  # (rows, H, W, A*C)
        count = part[0].numel() // out.shape[-1]
        out[:, start:start + count].view(part.shape).copy_(part)
        start += count
    return out


@dataclass
class AnchorTargets:
    """The anchor targets of a batch as mmdet's ``AnchorHead.get_targets`` assigns them, one
    tensor per level of shape (B, anchors, ...), the batch's average factor, and the heads they
    were assigned for (any head that shares targets with those may use them)."""
    anchors: List[Tensor]
    labels: List[Tensor]
    label_weights: List[Tensor]
    bbox_targets: List[Tensor]
    bbox_weights: List[Tensor]
    avg_factor: float
    heads: Tuple[nn.Module, ...]

    @cached_property
    def per_image(self) -> Tuple[Tensor, ...]:
        """Anchors, labels, label weights, box targets and box weights with every level of an
        image side by side: (B, anchors of all levels, ...), mmdet's anchor order."""
        return tuple(
            torch.cat(levels, 1) for levels in (self.anchors, self.labels, self.label_weights,
                                                self.bbox_targets, self.bbox_weights))

    @cached_property
    def per_image_avg_factor(self) -> Tensor:
        """Each image's average factor as for the image alone, (B, ): its positive anchors, at
        least 1 (mmdet's ``SamplingResult`` with ``PseudoSampler``)."""
        labels = self.per_image[1]
        return ((labels >= 0) & (labels < self.heads[0].num_classes)).sum(1).clamp(min=1)


class AnchorCache:
    """The anchors and valid flags ``AnchorHead.get_anchors`` returns, kept for the most recent
    batch layouts: they depend only on the feature-map sizes, each image's padded shape and the
    device, and mmdet computes them again every step (about 130 kernels for five levels and two
    images; none on a hit). Inputs of a fixed padded size (most benchmarks, fixed-size
    pipelines) hit every step; multi-scale training misses and pays what mmdet pays.

    Only heads with mmdet's own ``get_anchors`` are cached (an override may read more of the
    metas); the cached tensors are never written to (``get_targets`` concatenates and indexes
    them into new tensors).

    Args:
        entries (int): Layouts kept, least recently used dropped first (each about 1.2 MB of
            anchors per 640 x 640 image layout for RetinaNet). Defaults to 4.
    """

    def __init__(self, entries: int = 4) -> None:
        if entries < 1:
            raise ValueError(f'AnchorCache: entries must be >= 1, got {entries}')
        self.entries = entries
        self._layouts: 'OrderedDict[tuple, tuple]' = OrderedDict()

    def get_anchors(self, head: nn.Module, featmap_sizes: List[tuple], metas: Sequence[dict],
                    device: torch.device) -> Tuple[List[List[Tensor]], List[List[Tensor]]]:
        """``head.get_anchors(featmap_sizes, metas, device)``, from the cache when it has them.

        Args:
            head (nn.Module): An mmdet ``AnchorHead``.
            featmap_sizes (list[tuple]): (H, W) of every level.
            metas (Sequence[dict]): Image metas (their ``pad_shape``).
            device (torch.device): The device of the anchors.

        Returns:
            tuple: Anchors and valid flags per image and level, as ``get_anchors`` returns.
        """
        from mmdet.models.dense_heads import AnchorHead
        if type(head).get_anchors is not AnchorHead.get_anchors:
            return head.get_anchors(featmap_sizes, metas, device=device)
        key = (id(head), tuple(tuple(size) for size in featmap_sizes),
               tuple(tuple(meta['pad_shape']) for meta in metas), str(device))
        owner, anchors = self._layouts.get(key, (None, None))
        if owner is not None and owner() is head:  # not another head at a reused address
            self._layouts.move_to_end(key)
            return anchors
        anchors = head.get_anchors(featmap_sizes, metas, device=device)
        self._layouts[key] = (weakref.ref(head), anchors)
        if len(self._layouts) > self.entries:
            self._layouts.popitem(last=False)
        return anchors


def assign_anchor_targets(heads: Tuple[nn.Module, ...],
                          cls_scores: Sequence[Tensor],
                          gts: Sequence,
                          metas: Sequence[dict],
                          ignores: Optional[Sequence],
                          anchor_cache: Optional[AnchorCache] = None) -> AnchorTargets:
    """Anchors and targets of a batch, exactly as ``AnchorHead.loss_by_feat`` computes them.

    Args:
        heads (tuple[nn.Module]): mmdet ``AnchorHead`` s that share targets; the first assigns.
        cls_scores (Sequence[Tensor]): The head's class scores, one (B, A*K, H, W) per level.
        gts (Sequence): Ground-truth instances per image.
        metas (Sequence[dict]): Image metas.
        ignores (Sequence, optional): Ignored instances per image.
        anchor_cache (AnchorCache, optional): Where recent layouts' anchors are kept; None
            computes them (mmdet's way). Defaults to None.

    Returns:
        AnchorTargets: Per level: anchors, labels, label and box weights, box targets.
    """
    from mmdet.models.utils import images_to_levels
    from mmdet.structures.bbox import cat_boxes
    head = heads[0]
    featmap_sizes, device = [c.shape[-2:] for c in cls_scores], cls_scores[0].device
    if anchor_cache is None:
        anchor_list, valid_flags = head.get_anchors(featmap_sizes, metas, device=device)
    else:
        anchor_list, valid_flags = anchor_cache.get_anchors(head, featmap_sizes, metas, device)
    targets = head.get_targets(
        anchor_list, valid_flags, gts, metas, batch_gt_instances_ignore=ignores)
    anchors = images_to_levels([cat_boxes(a) for a in anchor_list],
                               [a.size(0) for a in anchor_list[0]])
    return AnchorTargets(anchors, *targets[:5], heads=heads)


def uses_anchor_head_loss(head: nn.Module) -> bool:
    """Whether ``head`` computes its loss with mmdet's own ``AnchorHead.loss_by_feat``."""
    from mmdet.models.dense_heads import AnchorHead
    return isinstance(head, AnchorHead) and type(head).loss_by_feat is AnchorHead.loss_by_feat


def share_anchor_targets(heads: Sequence[nn.Module]) -> bool:
    """Whether the heads compute their loss with mmdet's ``AnchorHead.loss_by_feat`` and would
    assign identical targets (same anchors, assigner settings, box coder and box-target kind -
    deltas or decoded boxes -, no random sampling of negatives)."""
    from mmdet.models.dense_heads import AnchorHead
    from mmdet.models.task_modules.samplers import PseudoSampler
    first = heads[0]
    for head in heads:
        if not uses_anchor_head_loss(head) or \
                not isinstance(getattr(head, 'sampler', None), PseudoSampler) or \
                type(head).get_targets is not AnchorHead.get_targets or \
                type(head).loss_by_feat_single is not AnchorHead.loss_by_feat_single:
            return False
        if head is first:
            continue
        same_anchors = len(head.prior_generator.base_anchors) == len(
            first.prior_generator.base_anchors) and all(
                a.shape == b.shape and torch.equal(a.cpu(), b.cpu()) for a, b in zip(
                    head.prior_generator.base_anchors, first.prior_generator.base_anchors))
        if not same_anchors or head.train_cfg != first.train_cfg or \
                head.reg_decoded_bbox != first.reg_decoded_bbox or \
                head.prior_generator.strides != first.prior_generator.strides or \
                type(head.bbox_coder) is not type(first.bbox_coder) or \
                vars(head.bbox_coder) != vars(first.bbox_coder) or \
                head.num_classes != first.num_classes:
            return False
    return True
