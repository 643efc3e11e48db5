"""The interface between the distiller and one family of OpenMMLab models."""
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor


@dataclass
class DistillOutputs:
    """What the distiller needs from one forward pass of a student or a teacher.

    Attributes:
        logits (Any): The task's raw predictions used for logit KD ((B, K) class logits for
            classification; task-specific structures for dense tasks).
        features (list[Tensor]): Feature maps used for feature KD, one (B, C, H, W) map per level.
        extras (dict): Anything else the adapter needs later (e.g. all head outputs).
    """
    logits: Any
    features: List[Tensor]
    extras: Dict[str, Any] = field(default_factory=dict)


def sigmoid_entropy(logits: Tensor) -> Tensor:
    """Element-wise binary entropy of ``sigmoid(logits)``, ``softplus(x) - x * sigmoid(x)``,
    as the cross-entropy of the logits with their own probabilities: one fused, numerically
    stable operator (two kernels with the sigmoid, four written out).

    Args:
        logits (Tensor): Any shape.

    Returns:
        Tensor: Same shape, non-negative.
    """
    return F.binary_cross_entropy_with_logits(logits, logits.sigmoid(), reduction='none')


def concat_levels(tensors: Sequence[Optional[Tensor]],
                  like: Optional[Sequence[Tensor]] = None) -> Tensor:
    """(B, N), a new tensor: each level flattened per sample, concatenated in order (the layout
    of the agreement's masks, directions and closed-form KD gradients,
    :meth:`BaseTaskAdapter.logit_kd_gradients`).

    Args:
        tensors (Sequence[Tensor]): Each (B, ...); None for zeros of the shape of the same
            level of ``like``.
        like (Sequence[Tensor], optional): The levels' shapes where ``tensors`` has None.

    Returns:
        Tensor: (B, N), N the sum of the per-sample sizes.
    """
    return torch.cat([(like[i].new_zeros(like[i].shape) if t is None else t).flatten(1)
                      for i, t in enumerate(tensors)], 1)


class BaseTaskAdapter:
    """How to obtain, per sample, logits / features / teacher performance from one model family.

    Subclasses are registered in :data:`mmtkd.registry.TASK_ADAPTERS`. The distiller picks the
    first adapter whose :meth:`supports` accepts the student, unless the config names one.
    Adapters hold no parameters: connectors and losses live in the distiller.
    """

    #: Short name used in messages.
    task_name = 'base'

    #: The logit KD loss used when the distiller config names none.
    default_logit_kd_loss: dict = dict(type='mmtkd.LogitKLDivLoss', temperature=4.0)

    @classmethod
    def supports(cls, model: nn.Module) -> bool:
        """Whether this adapter can drive ``model``.

        Args:
            model (nn.Module): A built OpenMMLab model.

        Returns:
            bool: True when supported.
        """
        raise NotImplementedError

    @classmethod
    def unsupported_reason(cls, model: nn.Module) -> str:
        """Why :meth:`supports` refuses ``model``, for error messages.

        Args:
            model (nn.Module): A built OpenMMLab model.

        Returns:
            str: One sentence naming what this adapter needs.
        """
        return f'{cls.__name__} does not drive {type(model).__name__} models'

    @classmethod
    def teaches_features_only(cls, model: nn.Module) -> bool:
        """Whether ``model``, which :meth:`supports` refuses, can still teach features through
        :meth:`extract_features` (a detector of another family for a detector student). Such a
        teacher gets feature KD only: no logit KD and no signals from its predictions.

        Args:
            model (nn.Module): A built OpenMMLab model.

        Returns:
            bool: False by default.
        """
        return False

    def unaligned_predictions_reason(self, student: nn.Module, teacher: nn.Module) -> Optional[str]:
        """Why a teacher this adapter drives still cannot give the student logit KD (its class
        scores are of another kind than the student's), so that it teaches feature KD only;
        None when its predictions align (the default).

        Args:
            student (nn.Module): The student.
            teacher (nn.Module): A teacher :meth:`supports` accepts.

        Returns:
            str | None: One sentence naming the mismatch, or None.
        """
        return None

    def bind(self, student: nn.Module) -> None:
        """Remember what the adapter needs to know about the student (no-op by default).

        Args:
            student (nn.Module): The built student.
        """

    def check_batch(self, student: nn.Module, data_samples: Sequence) -> None:
        """Raise a clear error for ground truth the losses cannot take, before any teacher or
        student loss runs. No-op by default.

        Args:
            student (nn.Module): The student.
            data_samples (Sequence): The batch's data samples.
        """

    def check_compatible(self, student: nn.Module, teacher: nn.Module, owner: str) -> None:
        """Raise a clear error when ``teacher``'s outputs cannot be compared with the student's
        (beyond the class count, which the distiller checks). No-op by default.

        Args:
            student (nn.Module): The student.
            teacher (nn.Module): A teacher.
            owner (str): The teacher's name for messages, e.g. ``"teacher 'r50'"``.
        """

    def num_classes(self, model: nn.Module) -> int:
        """Number of classes predicted by ``model``.

        Args:
            model (nn.Module): A supported model.

        Returns:
            int: Class count.
        """
        raise NotImplementedError

    def extract_features(self, model: nn.Module, inputs: Tensor) -> List[Tensor]:
        """Feature maps used for feature KD (no head).

        Args:
            model (nn.Module): A supported model.
            inputs (Tensor): Pre-processed batch, shape (B, 3, H, W).

        Returns:
            list[Tensor]: One (B, C, H, W) map per distilled level.
        """
        raise NotImplementedError

    def student_forward(self,
                        model: nn.Module,
                        inputs: Tensor,
                        data_samples: Sequence,
                        shared: Any = None) -> Tuple[Dict[str, Tensor], DistillOutputs]:
        """Run the student once: its own task losses plus what KD needs.

        Args:
            model (nn.Module): The student.
            inputs (Tensor): Pre-processed batch.
            data_samples (Sequence): The batch's data samples with ground truth.
            shared (Any): What :meth:`per_sample_losses` of the teachers lent for this batch
                (e.g. the anchor targets it assigned), which the adapter may reuse; None if the
                teachers' losses were not computed.

        Returns:
            tuple: The student's loss dict (as its own ``loss`` would return) and its outputs.
        """
        raise NotImplementedError

    def teacher_forward(self, model: nn.Module, inputs: Tensor,
                        data_samples: Sequence) -> DistillOutputs:
        """Run a teacher (the caller disables gradients).

        Args:
            model (nn.Module): A teacher in eval mode.
            inputs (Tensor): Pre-processed batch.
            data_samples (Sequence): The batch's data samples with ground truth.

        Returns:
            DistillOutputs: The teacher's outputs.
        """
        raise NotImplementedError

    def complete_teacher_outputs(self, teachers: Sequence[nn.Module],
                                 teacher_outs: Sequence[DistillOutputs],
                                 student_out: DistillOutputs) -> None:
        """Add to ``teacher_outs`` (in place) the teacher predictions that depend on the
        student's forward, e.g. a two-stage teacher's RoI head run on the student's sampled
        proposals, so that their logits align. Called without gradients right after the
        student's forward, before any logit KD; only when the teachers' heads ran. No-op by
        default.

        Args:
            teachers (Sequence[nn.Module]): The teachers, in ``teacher_outs`` order.
            teacher_outs (Sequence[DistillOutputs]): Their outputs of :meth:`teacher_forward`.
            student_out (DistillOutputs): The student's outputs of :meth:`student_forward`.
        """

    def per_sample_loss(self, model: nn.Module, outputs: DistillOutputs,
                        data_samples: Sequence) -> Tensor:
        """The model's own task loss per sample against the ground truth, detached.

        It is the teacher-performance signal (``CE_m``) for teachers and the reward term for
        the student; the distiller only asks for it when the weighting strategy needs it.

        Args:
            model (nn.Module): The model that produced ``outputs``.
            outputs (DistillOutputs): Its outputs on the batch.
            data_samples (Sequence): The batch's data samples with ground truth.

        Returns:
            Tensor: Shape (B,).
        """
        raise NotImplementedError

    def per_sample_losses(self, models: Sequence[nn.Module], outputs: Sequence[DistillOutputs],
                          data_samples: Sequence) -> Tuple[Tensor, Any]:
        """:meth:`per_sample_loss` of several models on the same batch, detached.

        Adapters override it when the models can share work (e.g. one anchor-target assignment
        for every detector with the same anchors), and return that work for the student's
        forward (:meth:`student_forward`'s ``shared``).

        Args:
            models (Sequence[nn.Module]): The models (the teachers).
            outputs (Sequence[DistillOutputs]): Their outputs on the batch, in the same order.
            data_samples (Sequence): The batch's data samples with ground truth.

        Returns:
            tuple: The (B, len(models)) losses and what the student may reuse (None here).
        """
        return torch.stack(
            [self.per_sample_loss(model, out, data_samples) for model, out in zip(models, outputs)],
            1), None

    def logit_kd(self, loss: nn.Module, student: DistillOutputs, teacher: DistillOutputs,
                 data_samples: Sequence) -> Tensor:
        """Per-sample logit KD between a student and one teacher.

        Args:
            loss (nn.Module): The configured logit KD loss.
            student (DistillOutputs): Student outputs (with gradient).
            teacher (DistillOutputs): Teacher outputs.
            data_samples (Sequence): The batch's data samples (dense tasks mask ignored pixels).

        Returns:
            Tensor: Shape (B,).
        """
        raise NotImplementedError

    def logit_kds(self, loss: nn.Module, student: DistillOutputs,
                  teachers: Sequence[DistillOutputs], data_samples: Sequence) -> Tensor:
        """Per-sample logit KD between a student and every teacher: :meth:`logit_kd` per
        teacher, zeros (no gradient) for a teacher without predictions (one of another family).
        Adapters override it where the teachers' terms can share work.

        Args:
            loss (nn.Module): The configured logit KD loss.
            student (DistillOutputs): Student outputs (with gradient).
            teachers (Sequence[DistillOutputs]): Each teacher's outputs (``logits`` None for a
                teacher that teaches features only).
            data_samples (Sequence): The batch's data samples.

        Returns:
            Tensor: Shape (B, M).
        """
        batch = student.features[0].shape[0]
        return torch.stack([
            self.logit_kd(loss, student, t, data_samples)
            if t.logits is not None else student.features[0].new_zeros(batch) for t in teachers
        ], 1)

    def agreement_scores(self, outputs: DistillOutputs) -> Any:
        """The student's class scores on which the gradient agreement of its task loss and each
        teacher's logit KD is measured (``reward='agreement'``).

        Args:
            outputs (DistillOutputs): The student's outputs.

        Returns:
            Tensor | Sequence[Tensor]: One tensor or one per level, each (B, ...) with the
            batch first. Defaults to ``outputs.logits``.
        """
        return outputs.logits

    def agreement_support(self, outputs: DistillOutputs) -> Optional[Any]:
        """The scores a regional agreement (:meth:`agreement_mask`) can read, if they are few:
        an object with ``positions``, (B, n) positions in the :func:`concat_levels` layout of
        :meth:`agreement_scores`, that this task's :meth:`agreement_mask`,
        :meth:`agreement_direction` and :meth:`logit_kd_gradients` accept as ``support`` to
        give their values there only; None (the default) for everywhere.

        Args:
            outputs (DistillOutputs): The student's outputs.

        Returns:
            Any | None: The support.
        """
        return None

    def agreement_mask(self,
                       outputs: DistillOutputs,
                       region: str = 'foreground',
                       support: Optional[Any] = None) -> Optional[Tensor]:
        """Where on :meth:`agreement_scores` the gradient agreement is measured: a 0/1 (or
        bool) tensor in the :func:`concat_levels` layout, or None for everywhere (the default).

        Args:
            outputs (DistillOutputs): The student's outputs.
            region (str): ``TaskAgreementReward``'s region other than ``'all'``.
            support (Any, optional): :meth:`agreement_support`'s: the mask there only.

        Returns:
            Tensor | None: (B, N) (or (B, n) on the support), the mask.
        """
        return None

    def logit_kd_gradients(self,
                           loss: nn.Module,
                           student: DistillOutputs,
                           teachers: Sequence[DistillOutputs],
                           support: Optional[Any] = None) -> Optional[Iterator]:
        """Each teacher's gradient of the per-sample logit KD (:meth:`logit_kd`) with respect
        to :meth:`agreement_scores`, in closed form (``loss.student_gradient``): the agreement
        reward then needs no backward pass through the KD terms. None where this task or the
        loss has no closed form (the default: autograd is used).

        Args:
            loss (nn.Module): The logit KD loss.
            student (DistillOutputs): The student's outputs.
            teachers (Sequence[DistillOutputs]): Each teacher's outputs.
            support (Any, optional): :meth:`agreement_support`'s: the gradients there only.

        Returns:
            Iterator | None: Per teacher, in order, its gradient with respect to all score
            tensors at once, (B, N) in the :func:`concat_levels` layout (None for a teacher
            without logits, which teaches features only), computed as it is asked for (one
            teacher's gradient alive at a time; the caller may change it in place); or None.
        """
        return None

    def agreement_direction(self,
                            outputs: DistillOutputs,
                            support: Optional[Any] = None) -> Optional[Tensor]:
        """What the teachers' KD gradients are compared with instead of the task loss's
        gradient (``TaskAgreementReward(direction='class_margin')``): the gradient of each
        sample's class margin, in the :func:`concat_levels` layout; None where the task has none
        (the default: a task's own loss gradient already ranks the classes, as cross-entropy
        does).

        Args:
            outputs (DistillOutputs): The student's outputs.
            support (Any, optional): :meth:`agreement_support`'s: the direction there only.

        Returns:
            Tensor | None: (B, N) (or (B, n) on the support), the direction (made for the
            caller, who may change it).
        """
        return None

    def logit_summary(self, outputs: DistillOutputs) -> Tensor:
        """A fixed-size per-sample summary of the predictions for the agent's state.

        Args:
            outputs (DistillOutputs): A teacher's outputs.

        Returns:
            Tensor: Shape (B, K).
        """
        raise NotImplementedError

    def logit_summaries(self, teachers: Sequence[DistillOutputs]) -> List[Tensor]:
        """:meth:`logit_summary` of every teacher (a task may share the work between them).

        Args:
            teachers (Sequence[DistillOutputs]): Each teacher's outputs.

        Returns:
            list[Tensor]: One (B, K) summary per teacher, in order.
        """
        return [self.logit_summary(t) for t in teachers]

    def entropy(self, outputs: DistillOutputs) -> Tensor:
        """Per-sample prediction entropy (EBKD's confidence signal).

        Args:
            outputs (DistillOutputs): A teacher's outputs.

        Returns:
            Tensor: Shape (B,).
        """
        raise NotImplementedError
