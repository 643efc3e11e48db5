"""Task adapter for mmdet two-stage detectors (Faster / Mask / Cascade R-CNN)."""
import contextlib
from typing import Any, Dict, Iterator, List, NamedTuple, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from mmtkd.registry import MODELS, TASK_ADAPTERS
from .base_task import DistillOutputs
from .detection import DetectionTask, MMDetTaskAdapter, per_image_head_loss, recording_features


class SampledRoIs(NamedTuple):
    """The RoIs one box-head stage of the student was trained on in a step.

    Attributes:
        stage (int): The stage (0 for a ``StandardRoIHead``).
        rois (Tensor): (N, 5) ``[image index, x1, y1, x2, y2]``, detached.
        cls_score (Tensor): (N, K + 1) the student's class scores on them (with gradient).
        labels (Tensor): (N, ) their classification targets (``K`` for background).
    """
    stage: int
    rois: Tensor
    cls_score: Tensor
    labels: Tensor


def _num_stages(roi_head: nn.Module) -> int:
    return getattr(roi_head, 'num_stages', 1)


def _box_head(roi_head: nn.Module, stage: int = -1) -> nn.Module:
    heads = roi_head.bbox_head
    return heads[stage] if isinstance(heads, nn.ModuleList) else heads


@contextlib.contextmanager
def recording_sampled_rois(roi_head: nn.Module) -> Iterator[List[SampledRoIs]]:
    """Record what each box-head stage of ``roi_head`` is trained on while its stock ``loss``
    runs: ``bbox_loss`` (``(x, sampling_results)`` of a ``StandardRoIHead``, ``(stage, x,
    sampling_results)`` of a ``CascadeRoIHead``) is wrapped on the instance and restored after.

    Args:
        roi_head (nn.Module): The student's RoI head.

    Yields:
        list[SampledRoIs]: Filled with one entry per ``bbox_loss`` call.
    """
    from mmdet.structures.bbox import bbox2roi
    records: List[SampledRoIs] = []
    original = roi_head.bbox_loss

    def recorded(*args, **kwargs):
        results = original(*args, **kwargs)
        stage = args[0] if len(args) == 3 else 0
        sampling = args[-1]
        num_classes = _box_head(roi_head, stage).num_classes
        labels = torch.cat([
            torch.cat(
                [r.pos_gt_labels,
                 r.pos_gt_labels.new_full((len(r.neg_priors), ), num_classes)]) for r in sampling
        ])
        rois = bbox2roi([r.priors for r in sampling]).detach()
        records.append(SampledRoIs(stage, rois, results['cls_score'], labels))
        return results

    roi_head.bbox_loss = recorded
    try:
        yield records
    finally:
        del roi_head.bbox_loss  # the class's method again


def _per_image_mean(values: Tensor, rois: Tensor, num_images: int) -> Tensor:
    """(B,) mean of per-RoI ``values`` over each image's RoIs (0 for an image without any)."""
    index = rois[:, 0].long()
    total = values.new_zeros(num_images).index_add(0, index, values)
    count = values.new_zeros(num_images).index_add(0, index, torch.ones_like(values))
    return total / count.clamp(min=1)


@TASK_ADAPTERS.register_module()
class TwoStageDetectionTask(MMDetTaskAdapter):
    """mmdet ``TwoStageDetector`` with an RPN and a box RoI head (Faster R-CNN, Mask R-CNN,
    Cascade R-CNN, ...).

    Per image:

    * features: every FPN level (the neck's outputs, or the backbone's without a neck);
    * logit KD: ``roi_weight * RoI KD + rpn_weight * RPN KD``. RoI KD is the distiller's
      ``logit_kd_loss`` (softmax KL over the K classes and background, T=1 by default) between
      the student's class scores on the RoIs it sampled for its own loss and each teacher's RoI
      head run on the same RoIs with the teacher's features, so the logits align box by box;
      averaged over the image's RoIs, for every stage of a cascade (a teacher with fewer
      stages answers with its last). RPN KD is per-anchor sigmoid KD of the objectness scores,
      as :class:`DetectionTask` does it (per location where the numbers of anchors differ);
    * teacher performance: the teacher's own RPN loss on the image (its RoI loss would need the
      proposals, which only the student's forward samples);
    * the student's own loss per image: its RPN loss plus the cross-entropy on its sampled RoIs;
    * logit summary: per-class highest RoI probability (background excluded); entropy: the mean
      softmax entropy over the image's RoIs.

    The student's losses are its stock ``loss`` (every branch, masks included), run once: the
    RoIs and scores are recorded on the way. Mask-head KD is not done.

    Args:
        rpn_weight (float): Weight of the RPN objectness KD in the per-image logit KD; 0 skips
            it. Defaults to 1.0.
        roi_weight (float): Weight of the RoI classification KD. Defaults to 1.0.
        rpn_kd_loss (dict): Per-anchor loss of the RPN KD. Defaults to sigmoid KL at T=1.
    """

    default_logit_kd_loss = dict(type='mmtkd.LogitKLDivLoss', temperature=1.0)
    task_name = 'two-stage detection'

    def __init__(
        self,
        rpn_weight: float = 1.0,
        roi_weight: float = 1.0,
        rpn_kd_loss: dict = dict(type='mmtkd.SigmoidKLDivLoss', temperature=1.0)
    ) -> None:
        self.rpn_weight, self.roi_weight = rpn_weight, roi_weight
        self.rpn_kd_loss = MODELS.build(rpn_kd_loss)
        # the RPN is a dense sigmoid head: its KD is the single-stage adapter's
        self._rpn = DetectionTask()

    @classmethod
    def supports(cls, model: nn.Module) -> bool:
        from mmdet.models.detectors import TwoStageDetector
        return (isinstance(model, TwoStageDetector) and getattr(model, 'with_rpn', False)
                and hasattr(getattr(model, 'roi_head', None), 'bbox_loss'))

    @classmethod
    def unsupported_reason(cls, model: nn.Module) -> str:
        return (f'TwoStageDetectionTask drives two-stage detectors with an RPN and a box RoI '
                f'head (Faster / Mask / Cascade R-CNN); {type(model).__name__} is not one')

    def bind(self, student: nn.Module) -> None:
        self._rpn.cls_out_channels = student.rpn_head.cls_out_channels

    def num_classes(self, model: nn.Module) -> int:
        return _box_head(model.roi_head).num_classes

    def check_compatible(self, student: nn.Module, teacher: nn.Module, owner: str) -> None:
        s_rpn, t_rpn = student.rpn_head, teacher.rpn_head
        if s_rpn.cls_out_channels != t_rpn.cls_out_channels:
            raise ValueError(f'{owner}: rpn_head.cls_out_channels is {t_rpn.cls_out_channels}, '
                             f'the student has {s_rpn.cls_out_channels}')
        s_strides, t_strides = s_rpn.prior_generator.strides, t_rpn.prior_generator.strides
        if s_strides != t_strides:
            raise ValueError(f"{owner}: RPN anchor strides {t_strides} differ from the student's "
                             f'{s_strides}; their objectness scores cannot be aligned')
        for model, who in ((student, 'the student'), (teacher, owner)):
            head = _box_head(model.roi_head)
            if getattr(head.loss_cls, 'use_sigmoid', False) or getattr(
                    head, 'custom_cls_channels', False):
                raise ValueError(f'{who}: RoI KD compares softmax class scores (K classes and '
                                 f'background); its {type(head).__name__} classifies with a '
                                 'sigmoid or custom class channels, which is not supported')

    def student_forward(self,
                        model: nn.Module,
                        inputs: Tensor,
                        data_samples: Sequence,
                        shared: Any = None) -> Tuple[Dict[str, Tensor], DistillOutputs]:
        """The student's stock ``loss``, with its features, RPN outputs and sampled RoIs
        recorded."""
        rpn = model.rpn_head.register_forward_hook(
            lambda module, args, out: seen.setdefault('rpn', out))
        try:
            with recording_features(model) as seen, recording_sampled_rois(
                    model.roi_head) as sampled:
                losses = model.loss(inputs, data_samples)
        finally:
            rpn.remove()
        extras = dict(head_outputs=seen['rpn'], sampled_rois=sampled, num_images=len(data_samples))
        logits = dict(rpn=list(seen['rpn'][0]), roi=[s.cls_score for s in sampled])
        return losses, DistillOutputs(logits, list(seen['features']), extras)

    def teacher_forward(self, model: nn.Module, inputs: Tensor,
                        data_samples: Sequence) -> DistillOutputs:
        features = model.extract_feat(inputs)
        outs = model.rpn_head(features)
        return DistillOutputs(
            dict(rpn=list(outs[0]), roi=[]), list(features), dict(head_outputs=outs))

    def complete_teacher_outputs(self, teachers: Sequence[nn.Module],
                                 teacher_outs: Sequence[DistillOutputs],
                                 student_out: DistillOutputs) -> None:
        """Each teacher's RoI class scores on the RoIs the student sampled, stage by stage."""
        sampled: List[SampledRoIs] = student_out.extras['sampled_rois']
        for teacher, out in zip(teachers, teacher_outs):
            roi_head = teacher.roi_head
            scores = []
            for record in sampled:
                if _num_stages(roi_head) > 1 or isinstance(roi_head.bbox_head, nn.ModuleList):
                    stage = min(record.stage, _num_stages(roi_head) - 1)
                    result = roi_head._bbox_forward(stage, out.features, record.rois)
                else:
                    result = roi_head._bbox_forward(out.features, record.rois)
                scores.append(result['cls_score'].float())
            out.logits['roi'] = scores
            out.extras.update(sampled_rois=sampled, num_images=student_out.features[0].shape[0])

    def logit_kd(self, loss: nn.Module, student: DistillOutputs, teacher: DistillOutputs,
                 data_samples: Sequence) -> Tensor:
        num_images = len(data_samples)
        total = 0
        if self.roi_weight:
            for record, s_cls, t_cls in zip(student.extras['sampled_rois'], student.logits['roi'],
                                            teacher.logits['roi']):
                per_roi = loss(s_cls, t_cls, reduction_override='none')
                total = total + self.roi_weight * _per_image_mean(per_roi, record.rois, num_images)
        if self.rpn_weight:
            rpn = self._rpn.logit_kd(self.rpn_kd_loss, DistillOutputs(student.logits['rpn'], []),
                                     DistillOutputs(teacher.logits['rpn'], []), data_samples)
            total = total + self.rpn_weight * rpn
        return total

    def agreement_scores(self, outputs: DistillOutputs) -> List[Tensor]:
        """The RPN's objectness scores (batch first; the RoI scores are rows of RoIs of all
        images): the agreement of a two-stage student is that of its RPN."""
        return outputs.logits['rpn']

    @torch.no_grad()
    def per_sample_loss(self, model: nn.Module, outputs: DistillOutputs,
                        data_samples: Sequence) -> Tensor:
        """The RPN's own loss on each image (labels set to 0, as ``TwoStageDetector.loss``
        sets them), plus the RoI cross-entropy where the RoIs are known (the student's)."""
        from mmdet.models.utils import unpack_gt_instances
        gts, ignores, metas = unpack_gt_instances(data_samples)
        rpn_gts = []
        for gt in gts:
            gt = gt.clone()
            gt.labels = torch.zeros_like(gt.labels)
            rpn_gts.append(gt)
        loss = per_image_head_loss(model.rpn_head, outputs.extras['head_outputs'], rpn_gts, ignores,
                                   metas)
        for record in outputs.extras.get('sampled_rois', ()):
            ce = F.cross_entropy(record.cls_score.detach(), record.labels, reduction='none')
            loss = loss + _per_image_mean(ce, record.rois, len(metas))
        return loss

    def _last_stage(self, outputs: DistillOutputs) -> Tuple[Tensor, Tensor, int]:
        """The last stage's RoI scores, their RoIs and the batch size."""
        if not outputs.logits['roi']:
            raise ValueError('two-stage detection: no RoI scores yet (a teacher\'s are computed '
                             "on the student's proposals, after the student's forward)")
        rois = outputs.extras['sampled_rois'][-1].rois
        return outputs.logits['roi'][-1], rois, outputs.extras['num_images']

    def logit_summary(self, outputs: DistillOutputs) -> Tensor:
        scores, rois, num_images = self._last_stage(outputs)
        probs = scores.softmax(1)[:, :-1]  # background excluded
        index = rois[:, 0].long()[:, None].expand_as(probs)
        return probs.new_zeros(num_images, probs.shape[1]).scatter_reduce(
            0, index, probs, reduce='amax', include_self=True)

    def entropy(self, outputs: DistillOutputs) -> Tensor:
        scores, rois, num_images = self._last_stage(outputs)
        log_p = F.log_softmax(scores, 1)
        return _per_image_mean(-(log_p.exp() * log_p).sum(1), rois, num_images)
