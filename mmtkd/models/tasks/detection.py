"""Task adapter for mmdet single-stage detectors with sigmoid classification heads."""
import contextlib
import math
from typing import Any, Dict, Iterator, List, NamedTuple, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from torch import Tensor

from mmtkd.registry import TASK_ADAPTERS
from ..losses import shared_student_kd
from .anchor_head_losses import (AnchorCache, AnchorTargets, FocalTargets, assign_anchor_targets,
                                 copy_anchor_rows, share_anchor_targets, sum_losses,
                                 summed_anchor_losses, summed_box_loss, summed_class_loss,
                                 uses_anchor_head_loss)
from .base_task import BaseTaskAdapter, DistillOutputs, concat_levels, sigmoid_entropy


@torch.no_grad()
def per_image_head_loss(head: nn.Module, head_outputs: Sequence[Sequence[Tensor]], gts: Sequence,
                        ignores: Optional[Sequence], metas: Sequence) -> Tensor:
    """A dense head's own loss (``loss_by_feat``) on each image alone, detached.

    Args:
        head (nn.Module): An mmdet dense head (a detector's ``bbox_head``, an ``RPNHead``).
        head_outputs (Sequence[Sequence[Tensor]]): Its outputs on the batch (per-level scores,
            box predictions, ...).
        gts (Sequence): Per-image ground-truth instances.
        ignores (Sequence, optional): Per-image ignored instances.
        metas (Sequence): Per-image meta information.

    Returns:
        Tensor: (B,) the summed loss terms of each image.
    """
    outs = tuple([level.detach() for level in out] for out in head_outputs)
    per_image = []
    for i in range(len(metas)):
        single = [[level[i:i + 1] for level in out] for out in outs]
        ignore = None if ignores is None else [ignores[i]]
        per_image.append(sum_losses(head.loss_by_feat(*single, [gts[i]], [metas[i]], ignore)))
    return torch.stack(per_image)


def _closed_form_on_student_shapes(loss: nn.Module, student: DistillOutputs,
                                   teachers: Sequence[DistillOutputs]) -> bool:
    """Whether ``loss`` has a closed-form student gradient and every teacher with predictions
    has the student's levels, each of the student's shape (no per-location comparison)."""
    return getattr(loss, 'has_student_gradient', False) and all(
        len(t.logits) == len(student.logits) and all(s.shape == level.shape
                                                     for s, level in zip(student.logits, t.logits))
        for t in teachers if t.logits is not None)


def is_mmdet_detector(model: nn.Module) -> bool:
    """Whether ``model`` is an mmdet detector with ``extract_feat`` (every family has one)."""
    from mmdet.models.detectors import BaseDetector
    return isinstance(model, BaseDetector) and hasattr(model, 'extract_feat')


class MMDetTaskAdapter(BaseTaskAdapter):
    """What the adapters of mmdet detectors share: a detector of another family (one that
    :meth:`supports` refuses) still teaches the student its neck features."""

    @classmethod
    def teaches_features_only(cls, model: nn.Module) -> bool:
        return is_mmdet_detector(model)

    def extract_features(self, model: nn.Module, inputs: Tensor) -> List[Tensor]:
        """Every level of the neck (or the backbone without one): ``extract_feat``."""
        return list(model.extract_feat(inputs))


@contextlib.contextmanager
def recording_features(model: nn.Module) -> Iterator[dict]:
    """Record what ``extract_feat`` returns while a detector's stock ``loss`` runs: the output
    of its neck (or backbone without one), under the key ``'features'``.

    Args:
        model (nn.Module): An mmdet detector.

    Yields:
        dict: Filled with ``features`` once the forward has run.
    """
    seen: dict = {}
    part = model.neck if model.with_neck else model.backbone
    hook = part.register_forward_hook(lambda module, args, out: seen.setdefault('features', out))
    try:
        yield seen
    finally:
        hook.remove()


class AnchorSupport(NamedTuple):
    """The class scores a foreground agreement reads (:meth:`DetectionTask.agreement_support`).

    Attributes:
        positions (Tensor): (B, cap * K) their positions in the :func:`concat_levels` layout of
            the class scores (every class of each selected anchor).
        labels (Tensor): (B, cap) the selected anchors' labels.
        valid (Tensor): (B, cap) bool, whether a selected anchor is positive (else padding).
    """
    positions: Tensor
    labels: Tensor
    valid: Tensor


def _levels_side_by_side(levels: Sequence[Tensor], group: Sequence[int]) -> Tensor:
    """The (B, n_l, ...) tensors of the levels in ``group`` side by side along the anchors (the
    level itself, no copy, for a group of one)."""
    if len(group) == 1:
        return levels[group[0]]
    return torch.cat([levels[index] for index in group], 1)


def _gathered(flat: Tensor, positions: Optional[Tensor]) -> Tensor:
    """``flat`` at ``positions`` (all of it for None)."""
    return flat if positions is None else flat.gather(1, positions)


@TASK_ADAPTERS.register_module()
class DetectionTask(MMDetTaskAdapter):
    """mmdet ``SingleStageDetector`` (RetinaNet, FCOS, ATSS, GFL, ...) with a sigmoid head.

    Per image (MTKD-RL's per-sample quantities for dense tasks):

    * features: every FPN level;
    * logit KD: binary KL between sigmoid scores at temperature T, summed over classes and
      averaged over the image's anchors of all levels (optionally only anchors whose teacher
      max score exceeds ``foreground_threshold``);
    * teacher performance: the teacher's own detection loss on that image against the ground
      truth (``bbox_head.loss_by_feat`` on the image alone);
    * logit summary: per-class max sigmoid score over all anchors and levels (a K-vector);
    * entropy: mean over anchors of the summed binary entropies.

    Teacher and student heads must produce the same number of classes and levels with the same
    strides (their outputs are compared position by position). Heads with another number of
    priors per location (an FCOS / ATSS / GFL teacher, one prior, for a RetinaNet student,
    nine) are compared per location: each class's highest score over the location's priors.

    Args:
        foreground_threshold (float, optional): Restrict logit KD to anchors where the teacher's
            highest sigmoid score exceeds this value. None (default) uses every anchor.
        loss_batching (str): How the teachers' per-image losses over shared anchor targets are
            computed (one call per loss covers every level of a model's images; the student's
            own loss is one call per group of levels, see :meth:`_level_group_losses`): ``'image'``
            calls the losses image by image (fastest on CPU, where the focal loss kernel is
            super-linear in its input size), ``'batch'`` on as many images at once as
            ``max_loss_elements`` allows (fewer kernel launches, for GPUs, where the step is
            launch-bound), and ``'auto'`` (default) picks ``'batch'`` for CUDA tensors and
            ``'image'`` otherwise.
            All give the same values.
        max_loss_elements (int): With ``'batch'``, the most score elements (anchors x classes)
            one loss call covers, which bounds the memory of its element-wise intermediates
            (2**26 elements: 256 MiB per fp32 tensor; the distiller computes the teachers'
            losses before the student's forward, while the memory in use is far below the
            step's peak). Defaults to 2**26.
    """

    default_logit_kd_loss = dict(type='mmtkd.SigmoidKLDivLoss', temperature=1.0)
    task_name = 'detection'

    def __init__(self,
                 foreground_threshold: Optional[float] = None,
                 loss_batching: str = 'auto',
                 max_loss_elements: int = 2**26) -> None:
        if loss_batching not in ('auto', 'image', 'batch'):
            raise ValueError("DetectionTask: loss_batching must be 'auto', 'image' or 'batch', "
                             f'got {loss_batching!r}')
        if max_loss_elements < 1:
            raise ValueError(f'DetectionTask: max_loss_elements must be >= 1, got '
                             f'{max_loss_elements}')
        self.foreground_threshold = foreground_threshold
        self.loss_batching = loss_batching
        self.max_loss_elements = max_loss_elements
        self.cls_out_channels = None
        # whether a group of heads shares anchor targets: checked once per group, not every
        # iteration (the check compares anchors and configs, with host copies on GPU)
        self._target_sharing: Dict[Tuple[nn.Module, ...], bool] = {}
        # recent batch shapes' level layouts (:meth:`_level_layout`)
        self._layouts: Dict[tuple, Tensor] = {}
        # recent batch layouts' anchors, for every head that assigns anchor targets here
        self._anchors = AnchorCache()

    def bind(self, student: nn.Module) -> None:
        self.cls_out_channels = student.bbox_head.cls_out_channels

    @classmethod
    def supports(cls, model: nn.Module) -> bool:
        from mmdet.models.detectors import SingleStageDetector
        return isinstance(model, SingleStageDetector) and getattr(
            getattr(model, 'bbox_head', None), 'use_sigmoid_cls', False)

    @classmethod
    def unsupported_reason(cls, model: nn.Module) -> str:
        from mmdet.models.detectors import SingleStageDetector
        if not isinstance(model, SingleStageDetector):
            return (f'DetectionTask drives single-stage detectors; {type(model).__name__} is not '
                    'a SingleStageDetector')
        head = getattr(model, 'bbox_head', None)
        return (f'DetectionTask needs a sigmoid classification head (per-anchor sigmoid KD), '
                f'but {type(head).__name__} classifies with a softmax (use_sigmoid=False); '
                'supported: RetinaNet, FCOS, ATSS, GFL, RTMDet and other sigmoid heads')

    def num_classes(self, model: nn.Module) -> int:
        return model.bbox_head.num_classes

    def check_compatible(self, student: nn.Module, teacher: nn.Module, owner: str) -> None:
        s_head, t_head = student.bbox_head, teacher.bbox_head
        s_value, t_value = (getattr(h, 'cls_out_channels', None) for h in (s_head, t_head))
        if s_value != t_value:
            raise ValueError(f'{owner}: bbox_head.cls_out_channels is {t_value}, the student '
                             f'has {s_value}; their head outputs cannot be aligned')
        s_strides = getattr(s_head.prior_generator, 'strides', None)
        t_strides = getattr(t_head.prior_generator, 'strides', None)
        if s_strides != t_strides:
            raise ValueError(f'{owner}: prior strides {t_strides} differ from the student\'s '
                             f'{s_strides}; their head outputs cannot be aligned')

    def student_forward(self,
                        model: nn.Module,
                        inputs: Tensor,
                        data_samples: Sequence,
                        shared: Any = None) -> Tuple[Dict[str, Tensor], DistillOutputs]:
        """The student's forward and mmdet loss.

        For a head with ``AnchorHead``'s own loss, the loss is ``loss_by_feat``'s computation
        written out: the anchor targets are those the teachers' :meth:`per_sample_losses`
        assigned for the batch (``shared``) when the heads share them (else assigned here), and
        the losses are summed per image before the batch average, so that
        :meth:`per_sample_loss` of the student needs no further loss call (the student's own
        ``extras['anchor_targets']`` and ``extras['summed_losses']``).
        """
        from mmdet.models.utils import unpack_gt_instances
        features = model.extract_feat(inputs)
        head = model.bbox_head
        outs = head(features)
        extras = dict(head_outputs=outs)
        gts, ignores, metas = unpack_gt_instances(data_samples)
        if not uses_anchor_head_loss(head):
            losses = head.loss_by_feat(*outs, gts, metas, ignores)
            return losses, DistillOutputs(list(outs[0]), list(features), extras)
        targets = self._lent_targets(head, shared)
        if targets is None:
            targets = assign_anchor_targets((head, ), outs[0], gts, metas, ignores, self._anchors)
        # mmdet's mean reduction with an average factor: sum / (avg_factor + eps); one loss
        # call per group of levels for every image, the largest level first (mmdet: one call
        # per level), the same sums
        divisor = targets.avg_factor + torch.finfo(torch.float32).eps
        loss_cls, loss_bbox = self._level_group_losses(head, outs, targets)
        losses = dict(loss_cls=loss_cls.sum() / divisor, loss_bbox=loss_bbox.sum() / divisor)
        # each image's summed losses, for :meth:`per_sample_loss` (no second loss call)
        extras.update(anchor_targets=targets, summed_losses=(loss_cls.detach(), loss_bbox.detach()))
        return losses, DistillOutputs(list(outs[0]), list(features), extras)

    def _lent_targets(self, head: nn.Module, shared: Any) -> Optional[AnchorTargets]:
        """The teachers' anchor targets of this batch, if ``head`` shares them."""
        if not isinstance(shared, AnchorTargets):
            return None
        return shared if self._share_targets(shared.heads + (head, )) else None

    def teacher_forward(self, model: nn.Module, inputs: Tensor,
                        data_samples: Sequence) -> DistillOutputs:
        features = model.extract_feat(inputs)
        outs = model.bbox_head(features)
        return DistillOutputs(list(outs[0]), list(features), dict(head_outputs=outs))

    @torch.no_grad()
    def per_sample_loss(self, model: nn.Module, outputs: DistillOutputs,
                        data_samples: Sequence) -> Tensor:
        """The detector's own loss on each image alone (``bbox_head.loss_by_feat`` per image),
        read from the losses :meth:`student_forward` summed per image when it has them."""
        eps = torch.finfo(torch.float32).eps
        if 'summed_losses' in outputs.extras:
            loss_cls, loss_bbox = outputs.extras['summed_losses']
            return (loss_cls + loss_bbox) / (
                outputs.extras['anchor_targets'].per_image_avg_factor + eps)
        from mmdet.models.utils import unpack_gt_instances
        return per_image_head_loss(model.bbox_head, outputs.extras['head_outputs'],
                                   *unpack_gt_instances(data_samples))

    @torch.no_grad()
    def per_sample_losses(self, models: Sequence[nn.Module], outputs: Sequence[DistillOutputs],
                          data_samples: Sequence) -> Tuple[Tensor, Optional[AnchorTargets]]:
        """Per-image detection losses of several detectors, with one anchor-target assignment
        and one loss call per model for as many images as ``max_loss_elements`` allows.

        Detectors whose heads use mmdet's ``AnchorHead`` loss with the same anchors, assigner
        and box coder get the same targets for an image, so the targets are assigned once for
        the batch (instead of once per image and model) and returned, for
        :meth:`student_forward` to reuse (its ``shared`` argument); each model's
        losses over all levels are reduced per image with that image's own average factor: the
        values equal :meth:`per_sample_loss`. Other heads (other anchors, random negative
        sampling, their own loss) fall back to it.
        """
        heads = tuple(model.bbox_head for model in models)
        if not self._share_targets(heads):
            return super().per_sample_losses(models, outputs, data_samples)
        from mmdet.models.utils import unpack_gt_instances
        gts, ignores, metas = unpack_gt_instances(data_samples)
        assigned = assign_anchor_targets(heads, outputs[0].extras['head_outputs'][0], gts, metas,
                                         ignores, self._anchors)
        divisor = assigned.per_image_avg_factor + torch.finfo(torch.float32).eps
        loss_cls, loss_bbox = self._anchor_losses(heads,
                                                  [out.extras['head_outputs'] for out in outputs],
                                                  assigned)
        # (B, M) class and box sums of every model, added and divided once (not per model)
        return (loss_cls + loss_bbox) / divisor[:, None], assigned

    def _anchor_losses(self, heads: Sequence[nn.Module],
                       head_outputs: Sequence[Sequence[Sequence[Tensor]]],
                       targets: AnchorTargets) -> Tuple[Tensor, Tensor]:
        """``AnchorHead`` s' classification and box losses on shared targets, each image's
        summed over its anchors of every level: one call per loss and model for as many images
        as ``max_loss_elements`` allows (``loss_batching``), not one per level. The images are
        the outer loop: a call's focal-loss targets (:class:`FocalTargets`, on CPU) are built
        once for its images, read by every model's call, then freed. For the teachers' no-grad
        losses; the student's are :meth:`_level_group_losses`.

        Args:
            heads (Sequence[nn.Module]): The heads whose losses and box coders are used.
            head_outputs (Sequence[Sequence[Sequence[Tensor]]]): Each head's per-level class
                scores and box predictions.
            targets (AnchorTargets): The batch's anchor targets.

        Returns:
            tuple[Tensor, Tensor]: (B, M) summed classification and (B, M) summed box losses.
        """
        per_image = targets.per_image
        images, anchors = per_image[1].shape
        width = max(head.cls_out_channels for head in heads)
        batched = self.loss_batching == 'batch' or (self.loss_batching == 'auto'
                                                    and per_image[1].is_cuda)
        step = max(1, self.max_loss_elements // (anchors * width)) if batched else 1
        loss_cls, loss_bbox = [], []
        for start in range(0, images, step):
            rows = slice(start, min(start + step, images))
            rows_targets = tuple(t[rows] for t in per_image)
            focal_targets: Dict[tuple, FocalTargets] = {}
            sums = [
                self._rows_losses(head, outputs, rows, rows_targets, focal_targets)
                for head, outputs in zip(heads, head_outputs)
            ]
            loss_cls.append(torch.stack([cls for cls, _ in sums], 1))
            loss_bbox.append(torch.stack([box for _, box in sums], 1))
        if len(loss_cls) == 1:
            return loss_cls[0], loss_bbox[0]
        return torch.cat(loss_cls), torch.cat(loss_bbox)

    @staticmethod
    def _rows_losses(head: nn.Module, head_outputs: Sequence[Sequence[Tensor]], rows: slice,
                     targets: Tuple[Tensor, ...],
                     focal_targets: Dict[tuple, FocalTargets]) -> Tuple[Tensor, Tensor]:
        """One head's :func:`summed_anchor_losses` on some images, of copies of its scores and
        box predictions in mmdet's anchor order.

        Args:
            head (nn.Module): The head.
            head_outputs (Sequence[Sequence[Tensor]]): Its per-level class scores and box
                predictions.
            rows (slice): The images.
            targets (tuple[Tensor]): Their anchors, labels, label weights, box targets and box
                weights (:attr:`AnchorTargets.per_image` of the images).
            focal_targets (dict): The images' focal-loss targets, shared by every head.

        Returns:
            tuple[Tensor, Tensor]: (R,) summed classification and (R,) summed box losses.
        """
        cls_scores, bbox_preds = head_outputs[:2]
        count, anchors = targets[1].shape
        scores = copy_anchor_rows(cls_scores, rows,
                                  cls_scores[0].new_empty(count, anchors, head.cls_out_channels))
        deltas = copy_anchor_rows(
            bbox_preds, rows, bbox_preds[0].new_empty(count, anchors, head.bbox_coder.encode_size))
        return summed_anchor_losses(head, scores, deltas, *targets, focal_targets)

    def _level_group_losses(self, head: nn.Module, head_outputs: Sequence[Sequence[Tensor]],
                            targets: AnchorTargets) -> Tuple[Tensor, Tensor]:
        """The student's :meth:`_anchor_losses`: one call per group of levels
        (:meth:`_level_groups`) for every image, each image's sums added over the groups.

        The student's loss runs while its activations are held and keeps the loss's
        element-wise tensors for its backward pass. As in mmdet's per-level calls, the largest
        call (the largest level) runs first, before any other call's kept tensors exist, and no
        call is larger than it (one call per image over every level peaked at the last image
        with the earlier images' kept tensors alive; one call on the whole batch raised the
        8 x 640x640 step's peak by 215 MB).

        Args:
            head (nn.Module): The student's head.
            head_outputs (Sequence[Sequence[Tensor]]): Its per-level class scores and box
                predictions.
            targets (AnchorTargets): The batch's anchor targets.

        Returns:
            tuple[Tensor, Tensor]: (B,) summed classification and (B,) summed box losses, with
            gradients.
        """
        cls_scores, bbox_preds = head_outputs[:2]
        images = cls_scores[0].shape[0]
        width, box_width = head.cls_out_channels, head.bbox_coder.encode_size
        every_image = slice(0, images)
        loss_cls = loss_bbox = None
        for group in self._level_groups(cls_scores, width):
            anchors = sum(cls_scores[i][0].numel() for i in group) // width
            # the box predictions copied after the class loss, as mmdet does per level: not
            # alive while the class loss's temporaries peak
            scores = copy_anchor_rows([cls_scores[i] for i in group], every_image,
                                      cls_scores[0].new_empty(images, anchors, width))
            cls = summed_class_loss(head, scores, _levels_side_by_side(targets.labels, group),
                                    _levels_side_by_side(targets.label_weights, group))
            deltas = copy_anchor_rows([bbox_preds[i] for i in group], every_image,
                                      bbox_preds[0].new_empty(images, anchors, box_width))
            # the anchors are read by decoded-box losses only: not concatenated for the others
            box = summed_box_loss(
                head, deltas,
                _levels_side_by_side(targets.anchors, group) if head.reg_decoded_bbox else None,
                _levels_side_by_side(targets.bbox_targets, group),
                _levels_side_by_side(targets.bbox_weights, group))
            loss_cls = cls if loss_cls is None else loss_cls + cls
            loss_bbox = box if loss_bbox is None else loss_bbox + box
        return loss_cls, loss_bbox

    @staticmethod
    def _level_groups(cls_scores: Sequence[Tensor], width: int) -> List[List[int]]:
        """Consecutive levels grouped so that no group has more anchors per image than the
        largest level, nor than the group before it: e.g. RetinaNet's five levels as [0] and
        [1, 2, 3, 4] (an FPN's first level has three quarters of the anchors)."""
        sizes = [level[0].numel() // width for level in cls_scores]
        groups: List[List[int]] = [[]]
        count, limit = 0, max(sizes)
        for index, size in enumerate(sizes):
            if groups[-1] and count + size > limit:
                groups.append([])
                count, limit = 0, count
            groups[-1].append(index)
            count += size
        return groups

    def _share_targets(self, heads: Tuple[nn.Module, ...]) -> bool:
        """:func:`share_anchor_targets`, computed once per group of heads."""
        if heads not in self._target_sharing:
            self._target_sharing[heads] = share_anchor_targets(heads)
        return self._target_sharing[heads]

    def _per_anchor_view(self, scores: Tensor) -> Tensor:
        """(B, A*K, H, W) -> (B, A, K, H, W), a view (no copy) in the head's channel layout."""
        batch, channels, height, width = scores.shape
        k = self.cls_out_channels
        return scores.view(batch, channels // k, k, height, width)

    def _anchors_per_image(self, scores: Tensor) -> int:
        """The anchors (priors x locations) of one image in (B, A*K, H, W) scores: the count a
        per-image logit KD is averaged over (read from the shape, no view dispatched)."""
        return scores[0].numel() // self.cls_out_channels

    def _per_location(self, scores: Tensor) -> Tensor:
        """(B, A*K, H, W) -> (B, K, H, W): each class's highest logit over the A priors."""
        return self._per_anchor_view(scores).amax(1)

    def logit_kd(self, loss: nn.Module, student: DistillOutputs, teacher: DistillOutputs,
                 data_samples: Sequence) -> Tensor:
        sums, count = [], 0
        for s, t in zip(student.logits, teacher.logits):
            if s.shape[1] != t.shape[1] and s.shape[2:] == t.shape[2:]:
                # other priors per location: per-location scores, the best prior per class
                s, t = self._per_location(s), self._per_location(t)
            if s.shape != t.shape:
                raise ValueError(f'detection logit KD: student scores {tuple(s.shape)} and '
                                 f'teacher scores {tuple(t.shape)} differ')
            kd = loss(s, t, reduction_override='none')
            if self.foreground_threshold is None:
                # summed over every class of every anchor at once; averaged over the anchors
                sums.append(kd.flatten(1).sum(1))
                count += self._anchors_per_image(kd)
            else:
                # (B, A, K, H, W) -> summed over classes: (B, A, H, W)
                kd = self._per_anchor_view(kd).sum(2)
                # sigmoid is monotonic: threshold the max logit instead of the max score
                max_logit = self._per_anchor_view(t).amax(2)
                mask = (max_logit > math.log(self.foreground_threshold /
                                             (1 - self.foreground_threshold))).float()
                sums.append((kd * mask).flatten(1).sum(1))
                count = count + mask.flatten(1).sum(1)
        # the levels' sums added by one reduction (not one addition per level)
        total = torch.stack(sums, 1).sum(1)
        if self.foreground_threshold is None:
            return total / count
        return total / count.clamp(min=1)

    def logit_kds(self, loss: nn.Module, student: DistillOutputs,
                  teachers: Sequence[DistillOutputs], data_samples: Sequence) -> Tensor:
        """Every teacher's :meth:`logit_kd` at once where they share the work (every teacher
        has the student's scores' shapes, a closed-form element-wise loss, no foreground
        threshold): per level, one :func:`shared_student_kd` over the teachers, which keeps no
        soft targets for the backward pass and computes the student's soft predictions once.
        Otherwise one teacher at a time."""
        if (self.foreground_threshold is not None or not getattr(loss, 'elementwise', False)
                or any(t.logits is None for t in teachers)
                or not _closed_form_on_student_shapes(loss, student, teachers)):
            return super().logit_kds(loss, student, teachers, data_samples)
        anchors = sum(self._anchors_per_image(s) for s in student.logits)
        # (levels, B, M) summed by one reduction (not one addition per level), averaged over
        # the anchors of every level
        per_level = torch.stack([
            shared_student_kd(loss, s, [t.logits[level] for t in teachers])
            for level, s in enumerate(student.logits)
        ])
        return per_level.sum(0) / anchors

    def logit_kd_gradients(self,
                           loss: nn.Module,
                           student: DistillOutputs,
                           teachers: Sequence[DistillOutputs],
                           support: Optional['AnchorSupport'] = None) -> Optional[Iterator]:
        """:meth:`logit_kd`'s gradient, all levels at once (:func:`concat_levels` layout, or at
        ``support.positions``): the loss's closed-form gradient on the anchors it averages
        over, divided by their count. None when a teacher has other priors per location (the
        per-location maximum is left to autograd)."""
        if not _closed_form_on_student_shapes(loss, student, teachers):
            return None
        # an element-wise loss on the support alone: nothing of the scores' size is kept
        positions = None
        if support is not None and loss.elementwise and self.foreground_threshold is None:
            positions = support.positions
        student_soft = None
        if loss.elementwise:
            # on the concatenated levels: the student's soft predictions once, a handful of
            # kernels per teacher (not per level and teacher)
            student_soft = loss.soft_predictions(
                _gathered(concat_levels([s.detach() for s in student.logits]), positions),
                inplace=True)
        factor = 1.0
        if self.foreground_threshold is None:  # the mean over every anchor of every level
            factor = 1 / sum(self._anchors_per_image(s) for s in student.logits)
        grads = (None if t.logits is None else self._logit_kd_gradient(
            loss, student, t, student_soft, positions, factor) for t in teachers)
        if support is None or positions is not None:
            return grads
        return (None if g is None else g.gather(1, support.positions) for g in grads)

    def _logit_kd_gradient(self, loss: nn.Module, student: DistillOutputs, teacher: DistillOutputs,
                           student_soft: Optional[Tensor], positions: Optional[Tensor],
                           factor: float) -> Tensor:
        if student_soft is None:
            grad = concat_levels(
                [loss.student_gradient(s, t) for s, t in zip(student.logits, teacher.logits)])
            grad = grad.mul_(factor) if factor != 1 else grad
        else:
            teacher_soft = loss.soft_predictions(
                _gathered(concat_levels(teacher.logits), positions), inplace=True)
            grad = loss.gradient_between(student_soft, teacher_soft, factor)
        if self.foreground_threshold is None:
            return grad
        threshold = math.log(self.foreground_threshold / (1 - self.foreground_threshold))
        count, start = 0, 0
        for t in teacher.logits:  # each level's anchors, masked in place in the flat gradient
            size = t[0].numel()
            mask = (self._per_anchor_view(t).amax(2, keepdim=True) > threshold).to(grad.dtype)
            self._per_anchor_view(grad[:, start:start + size].view_as(t)).mul_(mask)
            count, start = count + mask.flatten(1).sum(1), start + size
        return grad.div_(count.clamp(min=1)[:, None])

    def agreement_support(self, outputs: DistillOutputs) -> Optional['AnchorSupport']:
        """Every class score of the student's foreground anchors, at most ``cap`` anchors per
        image: the only scores where a foreground agreement (mask or class margin) can be
        non-zero. ``cap`` is the batch's count of positive anchors, which mmdet's assigner has
        already counted on the host (at least one per image): it bounds each image's count, so
        no anchor is lost and no new host synchronisation is needed; images with fewer are
        padded with background anchors, which the mask drops.

        Args:
            outputs (DistillOutputs): The student's outputs.

        Returns:
            AnchorSupport | None: None for heads without anchor targets.
        """
        labels = self._anchor_labels(outputs)
        if labels is None:
            return None
        cap = max(1, min(int(outputs.extras['anchor_targets'].avg_factor), labels.shape[1]))
        positive = self._positive(labels)
        # (B, cap): the positive anchors first, then padding
        anchors = positive.to(torch.float32).topk(cap, dim=1, sorted=False).indices
        layout = self._level_layout(outputs.logits)  # (4, L)
        level = torch.bucketize(anchors, layout[0, 1:], right=True)
        # each anchor's level's first anchor, first score, locations and priors: one index
        start, flat_start, size, priors = layout[:, level].unbind(0)
        local = anchors - start
        prior = local % priors
        location = torch.div(local, priors, rounding_mode='floor')
        num_classes = self.cls_out_channels
        # class k of the anchor in the (A * K, H, W) block of its level
        first = flat_start + prior * num_classes * size + location
        classes = torch.arange(num_classes, device=labels.device)
        positions = first[..., None] + classes * size[..., None]
        return AnchorSupport(
            positions.flatten(1), labels.gather(1, anchors), positive.gather(1, anchors))

    def _level_layout(self, scores: Sequence[Tensor]) -> Tensor:
        """(4, L) per level: its first anchor (mmdet's order), its first score (concat layout),
        its locations H * W and its priors A, on the scores' device; made once per batch
        shape and device (no host-to-device copy on the other steps)."""
        key = (tuple(level.shape for level in scores), scores[0].device)
        layout = self._layouts.get(key)
        if layout is None:
            starts, flat_starts, sizes, priors = [0], [0], [], []
            for level in scores:
                _, channels, height, width = level.shape
                sizes.append(height * width)
                priors.append(channels // self.cls_out_channels)
                starts.append(starts[-1] + sizes[-1] * priors[-1])
                flat_starts.append(flat_starts[-1] + level[0].numel())
            layout = torch.tensor([starts[:-1], flat_starts[:-1], sizes, priors],
                                  device=scores[0].device)
            if len(self._layouts) >= 64:  # multi-scale training: bounded, not one per shape
                self._layouts.clear()
            self._layouts[key] = layout
        return layout

    def agreement_mask(self,
                       outputs: DistillOutputs,
                       region: str = 'foreground',
                       support: Optional['AnchorSupport'] = None) -> Optional[Tensor]:
        """The anchors assigned to an object (in the :func:`concat_levels` layout of the class
        scores), from the student's anchor targets; None (everywhere) for heads without them.

        Args:
            outputs (DistillOutputs): The student's outputs.
            region (str): ``'foreground'``: every class score of a positive anchor;
                ``'foreground_class'``: only the score of the class assigned to it (where the
                labels say "this class is here"; a teacher with the wrong classes pulls that
                score down, one that merely knows where objects are does not push it up).

            support (AnchorSupport, optional): The mask at ``support.positions`` only.

        Returns:
            Tensor | None: (B, N) (or (B, n) on the support) bool.
        """
        if support is not None:
            valid = support.valid[..., None]
            if region == 'foreground_class':
                valid = valid & self._assigned_classes(support.labels)
            return valid.expand(-1, -1, self.cls_out_channels).flatten(1)
        labels = self._anchor_labels(outputs)
        if labels is None:
            return None
        if region == 'foreground_class':
            per_class = self._assigned_classes(labels)
        else:
            per_class = self._positive(labels)[..., None].expand(-1, -1, self.cls_out_channels)
        return self._in_score_layout(per_class, outputs.logits)

    def agreement_direction(self,
                            outputs: DistillOutputs,
                            support: Optional['AnchorSupport'] = None) -> Optional[Tensor]:
        """The gradient of the class margin of each foreground anchor (its assigned class's
        score minus the mean of the others'), negated as a loss gradient is: -1 on the assigned
        class, ``1 / (K - 1)`` on the others, 0 on the other anchors.

        A KD step changes an anchor's margin by ``-lr <dKD/dz, -direction>``: a teacher that
        raises another class on the object above the right one lowers it, however much it also
        raises the right one (which the focal loss's gradient, nearly zero on the other classes
        of a foreground anchor, does not see).

        Args:
            outputs (DistillOutputs): The student's outputs.
            support (AnchorSupport, optional): The direction at ``support.positions`` only.

        Returns:
            Tensor | None: (B, N) in the :func:`concat_levels` layout of the class scores (or
            (B, n) on the support); None for heads without anchor targets.
        """
        labels = self._anchor_labels(outputs) if support is None else support.labels
        if labels is None:
            return None
        dtype = outputs.logits[0].dtype
        positive = self._positive(labels) if support is None else support.valid
        others = positive[..., None].to(dtype) / max(self.cls_out_channels - 1, 1)
        direction = torch.where(self._assigned_classes(labels), -1.0, others)
        if support is not None:  # padding anchors are background: 0 already
            return direction.flatten(1)
        return self._in_score_layout(direction, outputs.logits)

    def _anchor_labels(self, outputs: DistillOutputs) -> Optional[Tensor]:
        """(B, A_total) the student's anchor labels of every level, in mmdet's anchor order
        (level, then H, W, A); None for heads without anchor targets."""
        targets = outputs.extras.get('anchor_targets')
        if targets is None:
            return None
        batch = outputs.logits[0].shape[0]
        return torch.cat([labels.view(batch, -1) for labels in targets.labels], 1)

    def _positive(self, labels: Tensor) -> Tensor:
        """Anchors assigned to an object (not background, ``num_classes``, nor ignored, -1)."""
        return (labels >= 0) & (labels < self.cls_out_channels)

    def _assigned_classes(self, labels: Tensor) -> Tensor:
        """(B, A_total, K) bool: each anchor's assigned class (none for background and ignored
        anchors; compared, not one_hot, which checks the labels' range on the host)."""
        return labels[..., None] == torch.arange(self.cls_out_channels, device=labels.device)

    def _in_score_layout(self, per_anchor: Tensor, scores: Sequence[Tensor]) -> Tensor:
        """(B, A_total, K) in mmdet's anchor order -> (B, N) in the :func:`concat_levels` layout
        of the class scores ((A * K, H, W) per level): one copy per level, no other buffer."""
        batch, _, num_classes = per_anchor.shape
        out = per_anchor.new_empty(batch, sum(s[0].numel() for s in scores))
        anchor, start = 0, 0
        for level in scores:
            _, channels, height, width = level.shape
            priors = channels // num_classes
            count = height * width * priors
            source = per_anchor[:, anchor:anchor + count].view(batch, height, width, priors,
                                                               num_classes)
            out[:, start:start + level[0].numel()].view(batch, priors, num_classes, height,
                                                        width).copy_(source.permute(0, 3, 4, 1, 2))
            anchor, start = anchor + count, start + level[0].numel()
        return out

    def logit_summary(self, outputs: DistillOutputs) -> Tensor:
        return self.logit_summaries([outputs])[0]

    def logit_summaries(self, teachers: Sequence[DistillOutputs]) -> List[Tensor]:
        """Each teacher's per-class max score over anchors, positions and levels (the sigmoid
        after the max: it is monotonic): one max per level and teacher, then one stack, max
        and sigmoid for every teacher with as many levels (8 kernels per teacher one at a
        time, 6 for three teachers at once)."""
        levels = {len(t.logits) for t in teachers}
        if len(levels) > 1:
            return [self.logit_summary(t) for t in teachers]
        per_level = torch.stack([
            self._per_anchor_view(scores).amax(dim=(1, 3, 4)) for t in teachers
            for scores in t.logits
        ])  # (M * L, B, K)
        summaries = per_level.view(len(teachers), levels.pop(),
                                   *per_level.shape[1:]).amax(1).sigmoid()
        return list(summaries.unbind(0))

    def entropy(self, outputs: DistillOutputs) -> Tensor:
        # binary entropy from logits (one fused operator), summed over classes, averaged over
        # anchors: on the levels concatenated per image, five kernels in all (three per level
        # and three more to add them up, one level at a time)
        scores = concat_levels(outputs.logits)
        return sigmoid_entropy(scores).sum(1) / (scores.shape[1] // self.cls_out_channels)
