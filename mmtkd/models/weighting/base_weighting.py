"""The interface every teacher-weighting strategy implements."""
from dataclasses import dataclass
from typing import FrozenSet, List, NamedTuple, Optional, Sequence

import torch.nn as nn
from torch import Tensor


@dataclass
class TeacherSignals:
    """Per-sample, per-teacher quantities a weighting strategy may use. All detached.

    B samples (images for dense tasks), M teachers. The distiller fills ``logit_kd`` and
    ``feature_kd`` always, the others only when the strategy lists them in
    :attr:`BaseWeighting.required_signals` (the rest stay None), so that cheap strategies do not
    pay for, e.g., per-image detection losses of every teacher.

    Attributes:
        logit_kd (Tensor): (B, M) logit KD of the student to each teacher (``KL_m``).
        feature_kd (Tensor): (B, M) feature KD to each teacher (``FEAT_m``).
        feature_cos (Tensor): (B, M) cosine similarity between the pooled adapted student
            feature and the teacher embedding (``cos_m``); zeros when feature KD is off.
        teacher_loss (Tensor): (B, M) each teacher's task loss against the ground truth
            (``CE_m``; the teacher's detection loss for detectors).
        teacher_entropy (Tensor): (B, M) entropy of each teacher's prediction.
        teacher_confidence (Tensor): (B, M) ``exp(-teacher_loss)``: each teacher's probability
            of the ground truth for classification, a loss-derived proxy for dense tasks.
        embeddings (list[Tensor]): M tensors (B, D_m): pooled teacher features (``e_m``).
        logit_summaries (list[Tensor]): M tensors (B, K): teacher logits or their summary.
        student_loss (Tensor): (B,) the student's own task loss (reward term).
        task_agreement (Tensor): (B, M) cosine between the gradient of the student's task loss
            and the gradient of its logit KD to each teacher, both with respect to the
            student's class scores (:func:`mmtkd.models.distillers.task_agreement`): does a KD
            step towards teacher ``m`` move the student where its own task loss goes down?
        veto_agreement (Tensor): (B, M) the same agreement measured in the reward's ``veto``
            region and direction (e.g. a detector's class margin on its foreground anchors),
            computed with ``task_agreement`` when the reward has a veto.
        feature_agreement (Tensor): (B, M) cosine between the gradient of the student's task
            loss and the gradient of its feature KD to each teacher, both with respect to the
            student's distilled features (the ones its head reads and the connectors adapt):
            does a feature-KD step towards teacher ``m`` move the student's features where its
            own task loss goes down? Computed when the reward credits the features apart.
    """
    logit_kd: Tensor
    feature_kd: Tensor
    feature_cos: Optional[Tensor] = None
    teacher_loss: Optional[Tensor] = None
    teacher_entropy: Optional[Tensor] = None
    teacher_confidence: Optional[Tensor] = None
    embeddings: Optional[List[Tensor]] = None
    logit_summaries: Optional[List[Tensor]] = None
    student_loss: Optional[Tensor] = None
    task_agreement: Optional[Tensor] = None
    veto_agreement: Optional[Tensor] = None
    feature_agreement: Optional[Tensor] = None

    @property
    def num_teachers(self) -> int:
        """Number of teachers M."""
        return self.logit_kd.shape[1]


#: The :class:`TeacherSignals` fields computed only on request.
OPTIONAL_SIGNALS = frozenset({
    'feature_cos', 'teacher_loss', 'teacher_entropy', 'teacher_confidence', 'embeddings',
    'logit_summaries', 'student_loss', 'task_agreement', 'veto_agreement', 'feature_agreement'
})


class TeacherWeights(NamedTuple):
    """Per-sample teacher weights, each of shape (B, M)."""
    logit: Tensor
    feature: Tensor


class BaseWeighting(nn.Module):
    """Turns :class:`TeacherSignals` into per-sample weights for logit KD and feature KD.

    Strategies override :meth:`forward` only. A learned strategy (MTKD-RL) also keeps the
    training step the distiller hands to :meth:`record`, for the engine component that
    learns from it; it never learns itself.
    """

    #: Optional :class:`TeacherSignals` fields this strategy reads (see :data:`OPTIONAL_SIGNALS`).
    required_signals: FrozenSet[str] = frozenset()
    #: Optional signals that learning reads on the steps it learns from (a reward's); a subset
    #: of them is asked for per step by :meth:`learning_signals`.
    reward_signals: FrozenSet[str] = frozenset()
    #: where the task agreement is measured (``TaskAgreementReward``'s ``region``)
    agreement_region: str = 'all'
    #: whether the teachers' KD gradients of the agreement are taken in one batched backward
    #: (``TaskAgreementReward``'s ``batched``)
    agreement_batched: bool = True
    #: what the KD gradients are compared with (``TaskAgreementReward``'s ``direction``)
    agreement_direction: str = 'task_loss'
    #: what the agreement is per sample and teacher (``TaskAgreementReward``'s ``measure``)
    agreement_measure: str = 'cosine'
    #: where and against what the veto agreement is measured (``TaskAgreementReward``'s
    #: ``veto``: ``dict(region=..., direction=...)``), or None for no veto
    agreement_veto: Optional[dict] = None

    def setup(self, num_teachers: int, embed_dims: Sequence[int], num_classes: int,
              beta: float) -> None:
        """Learn the shape of the teacher pool once it is built (no-op for stateless ones).

        Args:
            num_teachers (int): Number of teachers M.
            embed_dims (Sequence[int]): Size of each teacher's pooled embedding.
            num_classes (int): Size of each teacher's per-sample logit summary.
            beta (float): The distiller's feature-KD weight.
        """

    def learning_signals(self) -> FrozenSet[str]:
        """Optional signals that only learning reads (a reward's), needed on this training step
        (none for strategies that do not learn).

        Returns:
            frozenset: :class:`TeacherSignals` fields for the distiller to compute this step.
        """
        return frozenset()

    def forward(self, signals: TeacherSignals) -> TeacherWeights:
        """Compute the weights.

        Args:
            signals (TeacherSignals): Detached per-sample quantities of the current batch.

        Returns:
            TeacherWeights: Detached (B, M) weights for logit KD and for feature KD.
        """
        raise NotImplementedError

    def record(self, step) -> None:
        """Keep a training step for learning (no-op for strategies that do not learn).

        Args:
            step (StepRecord): The step's per-sample losses, weights and inputs.
        """
