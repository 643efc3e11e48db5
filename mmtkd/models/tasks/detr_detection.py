"""Task adapter for mmdet's query-based detectors (DETR, Deformable DETR, DINO, ...)."""
import contextlib
import inspect
from typing import Any, Dict, Iterator, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from mmtkd.registry import TASK_ADAPTERS
from .base_task import DistillOutputs, sigmoid_entropy
from .detection import MMDetTaskAdapter, recording_features

#: weights of the box terms of the query matching (mmdet's DETR ``HungarianAssigner`` box
#: costs: L1 on normalised (cx, cy, w, h) x 5, generalised IoU x 2)
L1_COST, GIOU_COST = 5.0, 2.0


def _last_cls_layer(head: nn.Module) -> nn.Module:
    """The module that gives the last decoder layer's class scores."""
    branches = getattr(head, 'cls_branches', None)
    if branches is None:
        return head.fc_cls  # DETRHead / ConditionalDETRHead: one classifier for every layer
    # Deformable DETR / DINO: one branch per decoder layer (+ one for the encoder's proposals
    # when two-stage); the decoder's last layer is called last inside the head's forward
    return branches[head.num_pred_layer - 1 - int(getattr(head, 'as_two_stage', False))]


@contextlib.contextmanager
def recording_head(head: nn.Module) -> Iterator[Dict[str, Any]]:
    """Record what the stock ``bbox_head.loss`` of a query-based detector sees and computes:
    its keyword inputs (``hidden_states``, ``references``, ``dn_meta``, ...), its outputs, and
    the last decoder layer's class scores as the classifier returned them (the tensor the
    stock loss reads, for gradients with respect to it).

    Args:
        head (nn.Module): The detector's ``bbox_head``.

    Yields:
        dict: ``inputs``, ``outputs`` and ``cls`` once the loss has run.
    """
    seen: Dict[str, Any] = {}
    original = head.loss

    def recorded(*args, **kwargs):
        seen['inputs'] = kwargs
        return original(*args, **kwargs)

    def keep_last(module, args, out):
        seen['cls'] = out  # overwritten per call: the decoder's last layer comes last

    hooks = [
        _last_cls_layer(head).register_forward_hook(keep_last),
        head.register_forward_hook(lambda module, args, out: seen.__setitem__('outputs', out)),
    ]
    head.loss = recorded
    try:
        yield seen
    finally:
        del head.loss  # the class's method again
        for hook in hooks:
            hook.remove()


def _call_head(head: nn.Module, head_inputs: Dict[str, Any]) -> Tuple[Tensor, Tensor]:
    """The head's forward on the keyword inputs of ``forward_transformer`` it takes."""
    names = inspect.signature(head.forward).parameters
    return head(**{k: v for k, v in head_inputs.items() if k in names})


def _matching_part(outputs: Tuple[Tensor, Tensor], dn_meta: Any) -> Tuple[Tensor, Tensor]:
    """The last layer's class scores and boxes of the matching queries (denoising queries of
    DINO's training forward left out): (B, Q, C) and (B, Q, 4)."""
    skip = dn_meta['num_denoising_queries'] if dn_meta else 0
    return outputs[0][-1][:, skip:], outputs[1][-1][:, skip:]


def match_queries(student_boxes: Tensor, teacher_boxes: Tensor) -> Tuple[Tensor, Tensor]:
    """One-to-one matching of a student's queries to a teacher's on one image, by their boxes
    alone (L1 on normalised (cx, cy, w, h) and generalised IoU, as DETR's matcher weighs them;
    no class cost, so that a teacher is not matched where it already agrees).

    Args:
        student_boxes (Tensor): (Q_s, 4) normalised (cx, cy, w, h).
        teacher_boxes (Tensor): (Q_t, 4) normalised (cx, cy, w, h).

    Returns:
        tuple[Tensor, Tensor]: Matched student and teacher query indices, ``min(Q_s, Q_t)``
        each.
    """
    from mmdet.structures.bbox import bbox_cxcywh_to_xyxy, bbox_overlaps
    from scipy.optimize import linear_sum_assignment
    giou = bbox_overlaps(
        bbox_cxcywh_to_xyxy(student_boxes), bbox_cxcywh_to_xyxy(teacher_boxes), mode='giou')
    cost = L1_COST * torch.cdist(student_boxes, teacher_boxes, p=1) - GIOU_COST * giou
    # a non-finite box (a diverged model) must not stop the matching: the distiller's finite
    # check names the teacher or the student whose KD it makes non-finite
    cost = torch.nan_to_num(cost.float(), nan=1e6, posinf=1e6, neginf=-1e6)
    rows, cols = linear_sum_assignment(cost.cpu().numpy())
    device = student_boxes.device
    return torch.as_tensor(rows, device=device), torch.as_tensor(cols, device=device)


@TASK_ADAPTERS.register_module()
class DETRDetectionTask(MMDetTaskAdapter):
    """mmdet ``DetectionTransformer`` (DETR, Deformable DETR, DINO, Conditional / DAB-DETR).

    Per image:

    * features: every level of the neck (the encoder's input), or the backbone's outputs;
    * logit KD (query-level): each student query is matched one-to-one to a teacher query by
      their predicted boxes (Hungarian matching on L1 + generalised IoU, the box costs of DETR's
      own matcher), and the distiller's ``logit_kd_loss`` compares the matched class scores,
      summed over classes and averaged over the matched pairs. Queries of two detectors have no
      fixed order, so a matching is needed; boxes alone decide it, so that KD also reaches the
      queries where the two disagree on the class. The last decoder layer's matching queries
      are used (DINO's denoising queries are the student's own training trick, not a
      prediction);
    * teacher performance and the student's own loss: the head's classification, L1 and GIoU
      loss of the last decoder layer on the image alone (``loss_by_feat_single``, with its own
      Hungarian matching to the ground truth);
    * logit summary: per-class highest score over the queries; entropy: the mean over queries
      of the class entropy (binary entropies summed over classes for sigmoid heads, softmax
      entropy for DETR's).

    The student's losses are its stock ``loss`` (every decoder layer, denoising and encoder
    terms included), run once; its head outputs are recorded on the way.
    """

    default_logit_kd_loss = dict(type='mmtkd.SigmoidKLDivLoss', temperature=1.0)
    task_name = 'query-based detection'

    @classmethod
    def supports(cls, model: nn.Module) -> bool:
        from mmdet.models.detectors import DetectionTransformer
        return isinstance(model, DetectionTransformer)

    @classmethod
    def unsupported_reason(cls, model: nn.Module) -> str:
        return (f'DETRDetectionTask drives mmdet DetectionTransformer detectors (DETR, '
                f'Deformable DETR, DINO, ...); {type(model).__name__} is not one')

    def bind(self, student: nn.Module) -> None:
        self.sigmoid = _uses_sigmoid(student)
        if not self.sigmoid:  # DETR's softmax classifier: K classes and background
            self.default_logit_kd_loss = dict(type='mmtkd.LogitKLDivLoss', temperature=1.0)

    def num_classes(self, model: nn.Module) -> int:
        return model.bbox_head.num_classes

    def unaligned_predictions_reason(self, student: nn.Module, teacher: nn.Module) -> Optional[str]:
        """A softmax head (DETR: K classes and background) and a sigmoid one (Deformable DETR,
        DINO, Conditional DETR: K independent classes) give class scores of different kinds,
        which query-level KD cannot compare."""
        if _uses_sigmoid(teacher) == self.sigmoid:
            return None
        kinds = {True: 'sigmoid', False: 'softmax'}
        return (f'its {type(teacher.bbox_head).__name__} classifies with a '
                f'{kinds[not self.sigmoid]}, the student\'s {type(student.bbox_head).__name__} '
                f'with a {kinds[self.sigmoid]}, so their query scores cannot be compared')

    def check_compatible(self, student: nn.Module, teacher: nn.Module, owner: str) -> None:
        s_head, t_head = student.bbox_head, teacher.bbox_head
        if s_head.cls_out_channels != t_head.cls_out_channels:
            raise ValueError(f'{owner}: bbox_head.cls_out_channels is {t_head.cls_out_channels}, '
                             f'the student has {s_head.cls_out_channels} (set the teacher\'s '
                             "num_classes with cfg_options={'bbox_head.num_classes': ...})")

    def student_forward(self,
                        model: nn.Module,
                        inputs: Tensor,
                        data_samples: Sequence,
                        shared: Any = None) -> Tuple[Dict[str, Tensor], DistillOutputs]:
        """The student's stock ``loss``, with its features and head outputs recorded."""
        with recording_features(model) as seen, recording_head(model.bbox_head) as head:
            losses = model.loss(inputs, data_samples)
        dn_meta = head['inputs'].get('dn_meta')
        cls, boxes = _matching_part(head['outputs'], dn_meta)
        extras = dict(boxes=boxes.detach(), all_layers_cls=head['cls'])
        return losses, DistillOutputs(cls, list(seen['features']), extras)

    def teacher_forward(self, model: nn.Module, inputs: Tensor,
                        data_samples: Sequence) -> DistillOutputs:
        features = model.extract_feat(inputs)
        head_inputs = model.forward_transformer(features, data_samples)
        cls, boxes = _matching_part(_call_head(model.bbox_head, head_inputs), None)
        return DistillOutputs(cls, list(features), dict(boxes=boxes))

    def logit_kd(self, loss: nn.Module, student: DistillOutputs, teacher: DistillOutputs,
                 data_samples: Sequence) -> Tensor:
        per_image = []
        for s_cls, s_box, t_cls, t_box in zip(student.logits, student.extras['boxes'],
                                              teacher.logits, teacher.extras['boxes']):
            rows, cols = match_queries(s_box, t_box)
            kd = loss(s_cls[rows], t_cls[cols], reduction_override='none')
            per_image.append((kd.sum(-1) if kd.dim() == 2 else kd).mean())
        return torch.stack(per_image)

    def agreement_scores(self, outputs: DistillOutputs) -> Tensor:
        """The last decoder layer's class scores as the classifier returned them (batch first
        for Deformable DETR and DINO, which classify each layer separately)."""
        scores = outputs.extras.get('all_layers_cls')
        if scores is None or scores.dim() != 3:
            raise ValueError('query-based detection: the task-agreement reward needs per-layer '
                             'classifiers (Deformable DETR, DINO); DETR\'s head classifies all '
                             'layers at once. Use another reward for a DETR student')
        return scores

    @torch.no_grad()
    def per_sample_loss(self, model: nn.Module, outputs: DistillOutputs,
                        data_samples: Sequence) -> Tensor:
        """The head's last-layer loss (classification + L1 + GIoU) on each image alone."""
        head = model.bbox_head
        per_image = []
        for i, sample in enumerate(data_samples):
            terms = head.loss_by_feat_single(outputs.logits[i:i + 1].detach(),
                                             outputs.extras['boxes'][i:i + 1],
                                             [sample.gt_instances], [sample.metainfo])
            per_image.append(sum(term.sum() for term in terms))
        return torch.stack(per_image)

    def _probabilities(self, scores: Tensor) -> Tensor:
        """(B, Q, K) class probabilities (background excluded for softmax heads)."""
        return scores.sigmoid() if self.sigmoid else scores.softmax(-1)[..., :-1]

    def logit_summary(self, outputs: DistillOutputs) -> Tensor:
        return self._probabilities(outputs.logits).amax(1)

    def entropy(self, outputs: DistillOutputs) -> Tensor:
        scores = outputs.logits
        if self.sigmoid:
            per_query = sigmoid_entropy(scores).sum(-1)
        else:
            log_p = F.log_softmax(scores, -1)
            per_query = -(log_p.exp() * log_p).sum(-1)
        return per_query.mean(1)


def _uses_sigmoid(model: nn.Module) -> bool:
    return bool(getattr(model.bbox_head.loss_cls, 'use_sigmoid', False))
