"""Task adapter for mmpretrain image classifiers."""
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from mmtkd.registry import TASK_ADAPTERS
from .base_task import BaseTaskAdapter, DistillOutputs


def gt_labels(data_samples: Sequence, device: torch.device) -> Tensor:
    """Stack the hard labels of mmpretrain ``DataSample``s into shape (B,).

    Args:
        data_samples (Sequence): mmpretrain data samples carrying ``gt_label``.
        device (torch.device): Device of the result.

    Returns:
        Tensor: Long tensor of shape (B,).
    """
    return torch.cat([s.gt_label for s in data_samples]).to(device=device, dtype=torch.long)


def as_feature_map(feature: Tensor) -> Tensor:
    """A backbone output as a (B, C, H, W) map, whatever the backbone.

    CNNs give maps already; vision transformers give a class token (B, C) (mmpretrain's
    ``out_type='cls_token'``, DeiT / ViT default), taken as a 1x1 map, or tokens (B, N, C)
    (``out_type='raw'``), taken as an N x 1 map. Connectors and feature losses then treat every
    family alike, and a transformer can teach a CNN (or learn from one).

    Args:
        feature (Tensor): The backbone's last output.

    Returns:
        Tensor: The same values as a 4-D map.
    """
    if feature.dim() == 4:
        return feature
    if feature.dim() == 2:
        return feature[:, :, None, None]
    if feature.dim() == 3:
        return feature.transpose(1, 2)[..., None]
    raise ValueError(f'backbone output of shape {tuple(feature.shape)}: expected (B, C, H, W), '
                     '(B, C) or (B, N, C)')


@TASK_ADAPTERS.register_module()
class ClassificationTask(BaseTaskAdapter):
    """mmpretrain ``ImageClassifier``: backbone -> (neck) -> head.

    Feature KD uses the last backbone stage (official MTKD-RL); logits are the head's class
    scores; teacher performance is the per-sample cross-entropy against the hard label.
    """

    default_logit_kd_loss = dict(type='mmtkd.LogitKLDivLoss', temperature=4.0)
    task_name = 'classification'

    @classmethod
    def supports(cls, model: nn.Module) -> bool:
        from mmpretrain.models import ImageClassifier
        return isinstance(model, ImageClassifier)

    def num_classes(self, model: nn.Module) -> int:
        return model.head.num_classes

    def extract_features(self, model: nn.Module, inputs: Tensor) -> List[Tensor]:
        return [as_feature_map(model.backbone(inputs)[-1])]

    def _forward(self, model: nn.Module, inputs: Tensor) -> Tuple[Tensor, Tensor]:
        stages = model.backbone(inputs)
        neck_out = model.neck(stages) if model.with_neck else stages
        return model.head(neck_out), as_feature_map(stages[-1])

    def student_forward(self,
                        model: nn.Module,
                        inputs: Tensor,
                        data_samples: Sequence,
                        shared: Any = None) -> Tuple[Dict[str, Tensor], DistillOutputs]:
        logits, feature = self._forward(model, inputs)
        # mmpretrain has no public loss on given scores: ClsHead.loss() would run the head a
        # second time (on the pooled features), so its _get_loss takes the scores directly
        losses = model.head._get_loss(logits, data_samples)
        # mmpretrain keys the student's cross-entropy 'loss', the key MMEngine logs the total
        # under: renamed, so that the logged 'loss' is what is back-propagated
        losses = {('loss_cls' if key == 'loss' else key): value for key, value in losses.items()}
        return losses, DistillOutputs(logits, [feature])

    def teacher_forward(self, model: nn.Module, inputs: Tensor,
                        data_samples: Sequence) -> DistillOutputs:
        logits, feature = self._forward(model, inputs)
        return DistillOutputs(logits, [feature])

    def per_sample_loss(self, model: nn.Module, outputs: DistillOutputs,
                        data_samples: Sequence) -> Tensor:
        labels = gt_labels(data_samples, outputs.logits.device)
        return F.cross_entropy(outputs.logits.detach(), labels, reduction='none')

    def logit_kd(self, loss: nn.Module, student: DistillOutputs, teacher: DistillOutputs,
                 data_samples: Sequence) -> Tensor:
        return loss(student.logits, teacher.logits, reduction_override='none')

    def logit_kd_gradients(self,
                           loss: nn.Module,
                           student: DistillOutputs,
                           teachers: Sequence[DistillOutputs],
                           support: Optional[Any] = None) -> Optional[Iterator]:
        """The loss's closed-form gradient on the logits (one KD value per sample; a classifier
        has no :meth:`agreement_support`, so ``support`` is always None)."""
        if not getattr(loss, 'has_student_gradient', False):
            return None
        student_soft = loss.soft_predictions(student.logits.detach())  # shared by the teachers
        return (None if t.logits is None else loss.gradient_between(
            student_soft, loss.soft_predictions(t.logits.detach())) for t in teachers)

    def logit_summary(self, outputs: DistillOutputs) -> Tensor:
        return outputs.logits

    def entropy(self, outputs: DistillOutputs) -> Tensor:
        log_p = F.log_softmax(outputs.logits, dim=1)
        return -(log_p.exp() * log_p).sum(dim=1)
