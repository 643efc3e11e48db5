"""Task adapter for mmdet single-stage detectors with sigmoid classification heads."""
import math
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from mmtkd.registry import TASK_ADAPTERS
from .base_task import BaseTaskAdapter, DistillOutputs


def _sum_losses(losses: Dict[str, object]) -> Tensor:
    """Sum every ``loss*`` entry of an mmdet loss dict (values may be per-level lists)."""
    total = 0
    for key, value in losses.items():
        if 'loss' in key:
            total = total + (sum(value) if isinstance(value, (list, tuple)) else value)
    return total


def _anchor_loss_per_image(head: nn.Module, cls_score: Tensor, bbox_pred: Tensor,
                           anchors: Tensor, labels: Tensor, label_weights: Tensor,
                           bbox_targets: Tensor, bbox_weights: Tensor) -> Tensor:
    """Summed (not averaged) classification + box loss of each image on one level, as
    ``AnchorHead.loss_by_feat_single`` computes them before its average-factor division, for
    all the given images with one call per loss (element-wise, then summed per image).

    Returns:
        Tensor: (B, ) one loss per image.
    """
    batch = cls_score.shape[0]
    cls_score = cls_score.permute(0, 2, 3, 1).reshape(-1, head.cls_out_channels)
    loss_cls = head.loss_cls(cls_score, labels.reshape(-1), label_weights.reshape(-1),
                             reduction_override='none')
    bbox_pred = bbox_pred.permute(0, 2, 3, 1).reshape(-1, head.bbox_coder.encode_size)
    if head.reg_decoded_bbox:
        from mmdet.structures.bbox import get_box_tensor
        bbox_pred = get_box_tensor(
            head.bbox_coder.decode(anchors.reshape(-1, anchors.size(-1)), bbox_pred))
    # the box weights are applied here rather than by the loss: given weights, mmdet's box losses
    # first test ``torch.any(weight > 0)`` on the host, a GPU synchronisation per call
    loss_bbox = head.loss_bbox(bbox_pred, bbox_targets.reshape(-1, bbox_targets.size(-1)),
                               reduction_override='none')
    bbox_weights = bbox_weights.reshape(-1, bbox_weights.size(-1))
    if loss_bbox.dim() < bbox_weights.dim():  # IoU-type losses: one value per box, as mmdet
        bbox_weights = bbox_weights.mean(-1)
    return _sum_per_image(loss_cls, batch) + _sum_per_image(loss_bbox * bbox_weights, batch)


def _sum_per_image(loss: Tensor, batch: int) -> Tensor:
    """Sum an element-wise loss over each image's elements (a scalar, which some losses return
    when nothing carries weight, is that value for every image)."""
    if loss.dim() == 0:
        return loss.expand(batch)
    return loss.reshape(batch, -1).sum(1)


class AnchorTargets(NamedTuple):
    """The anchor targets of a batch as mmdet's ``AnchorHead.get_targets`` assigns them, one
    tensor per level of shape (B, anchors, ...), and the batch's average factor."""
    anchors: List[Tensor]
    labels: List[Tensor]
    label_weights: List[Tensor]
    bbox_targets: List[Tensor]
    bbox_weights: List[Tensor]
    avg_factor: float


def _anchor_targets(head: nn.Module, cls_scores: Sequence[Tensor], gts: Sequence,
                    metas: Sequence[dict], ignores: Optional[Sequence]) -> AnchorTargets:
    """Anchors and targets of a batch, exactly as ``AnchorHead.loss_by_feat`` computes them.

    Args:
        head (nn.Module): An mmdet ``AnchorHead``.
        cls_scores (Sequence[Tensor]): The head's class scores, one (B, A*K, H, W) per level.
        gts (Sequence): Ground-truth instances per image.
        metas (Sequence[dict]): Image metas.
        ignores (Sequence, optional): Ignored instances per image.

    Returns:
        AnchorTargets: Per level: anchors, labels, label and box weights, box targets.
    """
    from mmdet.models.utils import images_to_levels
    from mmdet.structures.bbox import cat_boxes
    anchor_list, valid_flags = head.get_anchors([c.shape[-2:] for c in cls_scores], metas,
                                                device=cls_scores[0].device)
    targets = head.get_targets(anchor_list, valid_flags, gts, metas,
                               batch_gt_instances_ignore=ignores)[:5]
    anchors = images_to_levels([cat_boxes(a) for a in anchor_list],
                               [a.size(0) for a in anchor_list[0]])
    return AnchorTargets(anchors, *targets)


def _uses_anchor_head_loss(head: nn.Module) -> bool:
    """Whether ``head`` computes its loss with mmdet's own ``AnchorHead.loss_by_feat``."""
    from mmdet.models.dense_heads import AnchorHead
    return isinstance(head, AnchorHead) and type(head).loss_by_feat is AnchorHead.loss_by_feat


def _share_anchor_targets(heads: Sequence[nn.Module]) -> bool:
    """Whether the heads compute their loss with mmdet's ``AnchorHead.loss_by_feat`` and would
    assign identical targets (same anchors, assigner settings, box coder and box-target kind -
    deltas or decoded boxes -, no random sampling of negatives)."""
    from mmdet.models.dense_heads import AnchorHead
    from mmdet.models.task_modules.samplers import PseudoSampler
    first = heads[0]
    for head in heads:
        if not _uses_anchor_head_loss(head) or \
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


@TASK_ADAPTERS.register_module()
class DetectionTask(BaseTaskAdapter):
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

    Teacher and student heads must produce the same number of classes, anchors per location
    and levels (their outputs are compared position by position).

    Args:
        foreground_threshold (float, optional): Restrict logit KD to anchors where the teacher's
            highest sigmoid score exceeds this value. None (default) uses every anchor.
        loss_batching (str): How the per-image losses over shared anchor targets are computed:
            ``'image'`` runs the loss kernels image by image (fastest on CPU, where the focal
            loss kernel is super-linear in its input size), ``'batch'`` runs them on as many
            images at once as ``max_loss_elements`` allows and sums per image (fewer kernel
            launches, for GPUs, where the step is launch-bound), and ``'auto'`` (default) picks
            ``'batch'`` for CUDA tensors and ``'image'`` otherwise. All give the same values.
        max_loss_elements (int): With ``'batch'``, the most score elements (anchors x classes)
            one loss call covers, which bounds the memory of its element-wise intermediates
            (2**23 elements: 32 MiB per fp32 tensor). Defaults to 2**23.
    """

    default_logit_kd_loss = dict(type='mmtkd.SigmoidKLDivLoss', temperature=1.0)
    task_name = 'detection'

    def __init__(self, foreground_threshold: Optional[float] = None,
                 loss_batching: str = 'auto', max_loss_elements: int = 2**23) -> None:
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

    def bind(self, student: nn.Module) -> None:
        self.cls_out_channels = student.bbox_head.cls_out_channels

    @classmethod
    def supports(cls, model: nn.Module) -> bool:
        from mmdet.models.detectors import SingleStageDetector
        return isinstance(model, SingleStageDetector) and getattr(
            getattr(model, 'bbox_head', None), 'use_sigmoid_cls', False)

    def num_classes(self, model: nn.Module) -> int:
        return model.bbox_head.num_classes

    def check_compatible(self, student: nn.Module, teacher: nn.Module, owner: str) -> None:
        s_head, t_head = student.bbox_head, teacher.bbox_head
        for key in ('num_base_priors', 'cls_out_channels'):
            s_value, t_value = getattr(s_head, key, None), getattr(t_head, key, None)
            if s_value != t_value:
                raise ValueError(f'{owner}: bbox_head.{key} is {t_value}, the student has '
                                 f'{s_value}; their head outputs cannot be aligned')
        s_strides = getattr(s_head.prior_generator, 'strides', None)
        t_strides = getattr(t_head.prior_generator, 'strides', None)
        if s_strides != t_strides:
            raise ValueError(f'{owner}: prior strides {t_strides} differ from the student\'s '
                             f'{s_strides}; their head outputs cannot be aligned')

    def extract_features(self, model: nn.Module, inputs: Tensor) -> List[Tensor]:
        return list(model.extract_feat(inputs))

    def student_forward(self, model: nn.Module, inputs: Tensor,
                        data_samples: Sequence) -> Tuple[Dict[str, Tensor], DistillOutputs]:
        """The student's forward and mmdet loss. For a head with ``AnchorHead``'s own loss, the
        loss is ``loss_by_feat``'s computation written out, so that the anchor targets it
        assigns are kept (``extras['anchor_targets']``) and :meth:`per_sample_losses` need not
        assign them again."""
        from mmdet.models.utils import multi_apply, unpack_gt_instances
        features = model.extract_feat(inputs)
        head = model.bbox_head
        outs = head(features)
        gts, ignores, metas = unpack_gt_instances(data_samples)
        extras = dict(head_outputs=outs)
        if _uses_anchor_head_loss(head):
            targets = extras['anchor_targets'] = _anchor_targets(head, outs[0], gts, metas,
                                                                 ignores)
            losses_cls, losses_bbox = multi_apply(head.loss_by_feat_single, *outs,
                                                  *targets[:5], avg_factor=targets.avg_factor)
            losses = dict(loss_cls=losses_cls, loss_bbox=losses_bbox)
        else:
            losses = head.loss_by_feat(*outs, gts, metas, ignores)
        return losses, DistillOutputs(list(outs[0]), list(features), extras)

    def teacher_forward(self, model: nn.Module, inputs: Tensor,
                        data_samples: Sequence) -> DistillOutputs:
        features = model.extract_feat(inputs)
        outs = model.bbox_head(features)
        return DistillOutputs(list(outs[0]), list(features), dict(head_outputs=outs))

    @torch.no_grad()
    def per_sample_loss(self, model: nn.Module, outputs: DistillOutputs,
                        data_samples: Sequence) -> Tensor:
        """The detector's own loss on each image alone (``bbox_head.loss_by_feat`` per image)."""
        from mmdet.models.utils import unpack_gt_instances
        gts, ignores, metas = unpack_gt_instances(data_samples)
        outs = tuple([level.detach() for level in out] for out in outputs.extras['head_outputs'])
        per_image = []
        for i in range(len(metas)):
            single = [[level[i:i + 1] for level in out] for out in outs]
            ignore = None if ignores is None else [ignores[i]]
            per_image.append(
                _sum_losses(model.bbox_head.loss_by_feat(*single, [gts[i]], [metas[i]], ignore)))
        return torch.stack(per_image)

    def per_sample_losses(self, models: Sequence[nn.Module], outputs: Sequence[DistillOutputs],
                          data_samples: Sequence,
                          student: Optional[Tuple[nn.Module, DistillOutputs]] = None) -> Tensor:
        """Per-image detection losses of several detectors, with one anchor-target assignment.

        Detectors whose heads use mmdet's ``AnchorHead`` loss with the same anchors, assigner
        and box coder get the same targets for an image, so the targets are assigned once for
        the batch (instead of once per image and model), or not at all when the student's loss
        already assigned them (see :meth:`student_forward`) and its head shares them, and every
        model's losses are reduced per image with that image's own average factor: the values
        equal :meth:`per_sample_loss`. Other heads (other anchors, random negative sampling,
        their own loss) fall back to it.
        """
        heads = tuple(model.bbox_head for model in models)
        if not self._share_targets(heads):
            return super().per_sample_losses(models, outputs, data_samples)
        from mmdet.models.utils import unpack_gt_instances
        gts, ignores, metas = unpack_gt_instances(data_samples)
        head = heads[0]
        cls_scores = outputs[0].extras['head_outputs'][0]
        if student is not None and 'anchor_targets' in student[1].extras and \
                self._share_targets(heads + (student[0].bbox_head, )):
            assigned = student[1].extras['anchor_targets']
        else:
            assigned = _anchor_targets(head, cls_scores, gts, metas, ignores)
        labels = assigned.labels
        # each image's average factor, as for the image alone: its positive anchors, at least 1
        # (mmdet's SamplingResult with PseudoSampler)
        avg_factor = sum(((lab >= 0) & (lab < head.num_classes)).sum(1)
                         for lab in labels).clamp(min=1)
        eps = torch.finfo(torch.float32).eps
        batched = self.loss_batching == 'batch' or (self.loss_batching == 'auto'
                                                    and cls_scores[0].is_cuda)
        # each level's targets are column slices of the batch's stacked targets: made
        # contiguous once here, not copied by every model's loss call
        level_targets = [tuple(t[level].contiguous() for t in assigned[:5])
                         for level in range(len(labels))]
        losses = []
        for model_head, out in zip(heads, outputs):
            summed = 0
            for level, (cls_score, bbox_pred) in enumerate(zip(*out.extras['head_outputs'][:2])):
                targets = level_targets[level]
                step = max(1, self.max_loss_elements // cls_score[0].numel()) if batched else 1
                summed = summed + torch.cat([
                    _anchor_loss_per_image(model_head, cls_score[i:i + step].detach(),
                                           bbox_pred[i:i + step].detach(),
                                           *(t[i:i + step] for t in targets))
                    for i in range(0, len(metas), step)
                ])
            # mmdet's mean reduction with an average factor: sum / (avg_factor + eps)
            losses.append(summed / (avg_factor + eps))
        return torch.stack(losses, 1)

    def _share_targets(self, heads: Tuple[nn.Module, ...]) -> bool:
        """:func:`_share_anchor_targets`, computed once per group of heads."""
        if heads not in self._target_sharing:
            self._target_sharing[heads] = _share_anchor_targets(heads)
        return self._target_sharing[heads]

    def _per_anchor_view(self, scores: Tensor) -> Tensor:
        """(B, A*K, H, W) -> (B, A, K, H, W), a view (no copy) in the head's channel layout."""
        batch, channels, height, width = scores.shape
        k = self.cls_out_channels
        return scores.view(batch, channels // k, k, height, width)

    def logit_kd(self, loss: nn.Module, student: DistillOutputs, teacher: DistillOutputs,
                 data_samples: Sequence) -> Tensor:
        total, count = 0, 0
        for s, t in zip(student.logits, teacher.logits):
            if s.shape != t.shape:
                raise ValueError(f'detection logit KD: student scores {tuple(s.shape)} and '
                                 f'teacher scores {tuple(t.shape)} differ')
            # (B, A, K, H, W) -> summed over classes: (B, A, H, W)
            kd = self._per_anchor_view(loss(s, t, reduction_override='none')).sum(2)
            if self.foreground_threshold is None:
                total = total + kd.flatten(1).sum(1)
                count += kd[0].numel()
            else:
                # sigmoid is monotonic: threshold the max logit instead of the max score
                max_logit = self._per_anchor_view(t).amax(2)
                mask = (max_logit > math.log(self.foreground_threshold /
                                             (1 - self.foreground_threshold))).float()
                total = total + (kd * mask).flatten(1).sum(1)
                count = count + mask.flatten(1).sum(1)
        if self.foreground_threshold is None:
            return total / count
        return total / count.clamp(min=1)

    def logit_summary(self, outputs: DistillOutputs) -> Tensor:
        # per-class max over anchors, positions and levels; sigmoid after the max (monotonic)
        per_level = [self._per_anchor_view(s).amax(dim=(1, 3, 4)) for s in outputs.logits]
        return torch.stack(per_level).amax(0).sigmoid()

    def entropy(self, outputs: DistillOutputs) -> Tensor:
        # binary entropy from logits: H = softplus(x) - x * sigmoid(x); summed over classes,
        # averaged over anchors
        total, count = 0, 0
        for scores in outputs.logits:
            h = F.softplus(scores) - scores * scores.sigmoid()
            total = total + h.flatten(1).sum(1)
            count += scores[0].numel() // self.cls_out_channels
        return total / count
