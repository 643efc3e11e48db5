"""Task adapter for mmseg encoder-decoder segmentors."""
from typing import Any, Dict, List, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from mmtkd.registry import TASK_ADAPTERS
from .base_task import BaseTaskAdapter, DistillOutputs


def stack_labels(data_samples: Sequence) -> Tensor:
    """(B, H, W) long label maps from mmseg ``SegDataSample``s."""
    return torch.stack([s.gt_sem_seg.data[0] for s in data_samples]).long()


@TASK_ADAPTERS.register_module()
class SegmentationTask(BaseTaskAdapter):
    """mmseg ``EncoderDecoder`` (DeepLabV3, PSPNet, DeepLabV3+, ...).

    Per image: feature KD on the last backbone stage (through adapters); pixel-wise KD on the
    decode-head logits (per-pixel temperature KL times T^2 averaged over the image's valid
    pixels, CIRKD convention; a channel-wise loss such as ``ChannelWiseDivergenceLoss`` may be
    configured instead); teacher performance = the teacher's per-image pixel cross-entropy
    against the label (``ignore_index`` respected); logit summary = per-class mean probability
    over pixels; entropy = mean per-pixel entropy. Teacher logits of another spatial size are
    resized (bilinear) to the student's. The student's auxiliary heads keep their own losses.

    Images whose every pixel is ``ignore_index`` give zero pixel KD and zero loss, never NaN.
    Label values that are neither a class nor ``ignore_index`` raise a ``ValueError``.
    """

    default_logit_kd_loss = dict(type='mmtkd.LogitKLDivLoss', temperature=1.0)
    task_name = 'segmentation'

    def __init__(self) -> None:
        self.ignore_index = 255
        self.align_corners = False

    @classmethod
    def supports(cls, model: nn.Module) -> bool:
        from mmseg.models.segmentors import EncoderDecoder
        return isinstance(model, EncoderDecoder)

    def bind(self, student: nn.Module) -> None:
        self.ignore_index = student.decode_head.ignore_index
        self.align_corners = student.decode_head.align_corners

    def num_classes(self, model: nn.Module) -> int:
        return model.decode_head.num_classes

    def _encode(self, model: nn.Module, inputs: Tensor) -> Tuple[List[Tensor], Tensor]:
        stages = model.backbone(inputs)
        neck_out = model.neck(stages) if model.with_neck else stages
        return neck_out, stages[-1]

    def extract_features(self, model: nn.Module, inputs: Tensor) -> List[Tensor]:
        return [model.backbone(inputs)[-1]]

    def check_batch(self, student: nn.Module, data_samples: Sequence) -> None:
        """Label values that are neither a class nor ``ignore_index`` raise ``ValueError``."""
        labels = stack_labels(data_samples)
        num_classes = student.decode_head.num_classes
        bad = (labels >= num_classes) & (labels != self.ignore_index) | (labels < 0)
        if bad.any():
            values = sorted(set(labels[bad].unique().tolist()))[:10]
            raise ValueError(f'segmentation labels contain {values}, which are neither a class '
                             f'in [0, {num_classes}) nor ignore_index={self.ignore_index}; '
                             'check the dataset (reduce_zero_label, label map)')

    def student_forward(self,
                        model: nn.Module,
                        inputs: Tensor,
                        data_samples: Sequence,
                        shared: Any = None) -> Tuple[Dict[str, Tensor], DistillOutputs]:
        from mmseg.utils import add_prefix
        neck_out, feature = self._encode(model, inputs)
        logits = model.decode_head(neck_out)
        losses = add_prefix(model.decode_head.loss_by_feat(logits, data_samples), 'decode')
        if model.with_auxiliary_head:
            # the public head losses, keyed as EncoderDecoder.loss keys them
            heads = model.auxiliary_head
            if isinstance(heads, nn.ModuleList):
                for idx, head in enumerate(heads):
                    losses.update(
                        add_prefix(
                            head.loss(neck_out, data_samples, model.train_cfg), f'aux_{idx}'))
            else:
                losses.update(
                    add_prefix(heads.loss(neck_out, data_samples, model.train_cfg), 'aux'))
        return losses, DistillOutputs(logits, [feature])

    def teacher_forward(self, model: nn.Module, inputs: Tensor,
                        data_samples: Sequence) -> DistillOutputs:
        neck_out, feature = self._encode(model, inputs)
        return DistillOutputs(model.decode_head(neck_out), [feature])

    def _valid_mask(self, data_samples: Sequence, size: Tuple[int, int],
                    device: torch.device) -> Tensor:
        labels = stack_labels(data_samples).to(device)
        labels = F.interpolate(labels[:, None].float(), size=size, mode='nearest')[:, 0]
        return (labels != self.ignore_index).float()

    def logit_kd(self, loss: nn.Module, student: DistillOutputs, teacher: DistillOutputs,
                 data_samples: Sequence) -> Tensor:
        s_logits, t_logits = student.logits, teacher.logits
        if t_logits.shape[-2:] != s_logits.shape[-2:]:
            t_logits = F.interpolate(
                t_logits, size=s_logits.shape[-2:], mode='bilinear', align_corners=False)
        kd = loss(s_logits, t_logits, reduction_override='none')
        if kd.dim() == 1:  # channel-wise losses are already per image
            return kd
        mask = self._valid_mask(data_samples, kd.shape[-2:], kd.device)
        return (kd * mask).flatten(1).sum(1) / mask.flatten(1).sum(1).clamp(min=1)

    def per_sample_loss(self, model: nn.Module, outputs: DistillOutputs,
                        data_samples: Sequence) -> Tensor:
        labels = stack_labels(data_samples).to(outputs.logits.device)
        logits = F.interpolate(
            outputs.logits.detach(),
            size=labels.shape[-2:],
            mode='bilinear',
            align_corners=self.align_corners)
        ce = F.cross_entropy(logits, labels, ignore_index=self.ignore_index, reduction='none')
        valid = (labels != self.ignore_index).float()
        return (ce * valid).flatten(1).sum(1) / valid.flatten(1).sum(1).clamp(min=1)

    def logit_summary(self, outputs: DistillOutputs) -> Tensor:
        return outputs.logits.softmax(dim=1).mean(dim=(2, 3))

    def entropy(self, outputs: DistillOutputs) -> Tensor:
        log_p = F.log_softmax(outputs.logits, dim=1)
        return -(log_p.exp() * log_p).sum(1).mean(dim=(1, 2))
