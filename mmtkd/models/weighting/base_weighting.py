"""The interface every teacher-weighting strategy implements."""
from dataclasses import dataclass
from typing import List, NamedTuple, Sequence

import torch.nn as nn
from torch import Tensor


@dataclass
class TeacherSignals:
    """Per-sample, per-teacher quantities a weighting strategy may use. All detached.

    B samples (images for dense tasks), M teachers.

    Attributes:
        logit_kd (Tensor): (B, M) logit KD of the student to each teacher (``KL_m``).
        feature_kd (Tensor): (B, M) feature KD to each teacher (``FEAT_m``).
        feature_cos (Tensor): (B, M) cosine similarity between the pooled adapted student
            feature and the teacher embedding (``cos_m``).
        teacher_loss (Tensor): (B, M) each teacher's task loss against the ground truth
            (``CE_m``; the teacher's detection loss for detectors).
        teacher_entropy (Tensor): (B, M) entropy of each teacher's prediction.
        teacher_confidence (Tensor): (B, M) each teacher's probability of the ground truth.
        embeddings (list[Tensor]): M tensors (B, D_m): pooled teacher features (``e_m``).
        logit_summaries (list[Tensor]): M tensors (B, K): teacher logits or their summary.
        student_loss (Tensor): (B,) the student's own task loss (reward term).
    """
    logit_kd: Tensor
    feature_kd: Tensor
    feature_cos: Tensor
    teacher_loss: Tensor
    teacher_entropy: Tensor
    teacher_confidence: Tensor
    embeddings: List[Tensor]
    logit_summaries: List[Tensor]
    student_loss: Tensor

    @property
    def num_teachers(self) -> int:
        """Number of teachers M."""
        return self.logit_kd.shape[1]


class TeacherWeights(NamedTuple):
    """Per-sample teacher weights, each of shape (B, M)."""
    logit: Tensor
    feature: Tensor


class BaseWeighting(nn.Module):
    """Turns :class:`TeacherSignals` into per-sample weights for logit KD and feature KD.

    Heuristic strategies override :meth:`forward` only. Learned strategies (MTKD-RL) also use
    :meth:`observe`, called once per training iteration with the weights that were applied.
    """

    #: True for strategies that need :class:`mmtkd.engine.MTKDRLAgentHook` during training.
    needs_agent_hook = False

    def setup(self, num_teachers: int, embed_dims: Sequence[int], num_classes: int,
              beta: float) -> None:
        """Learn the shape of the teacher pool once it is built (no-op for stateless ones).

        Args:
            num_teachers (int): Number of teachers M.
            embed_dims (Sequence[int]): Size of each teacher's pooled embedding.
            num_classes (int): Size of each teacher's per-sample logit summary.
            beta (float): The distiller's feature-KD weight.
        """

    def forward(self, signals: TeacherSignals) -> TeacherWeights:
        """Compute the weights.

        Args:
            signals (TeacherSignals): Detached per-sample quantities of the current batch.

        Returns:
            TeacherWeights: Detached (B, M) weights for logit KD and for feature KD.
        """
        raise NotImplementedError

    def observe(self, signals: TeacherSignals, weights: TeacherWeights) -> None:
        """Record a training iteration (no-op for stateless strategies).

        Args:
            signals (TeacherSignals): The batch's signals.
            weights (TeacherWeights): The weights that were applied to it.
        """
