"""Stateless teacher-weighting baselines: AVER, fixed per-teacher weights, CA-MKD, EBKD."""
import math
from typing import Sequence

import torch
from torch import Tensor

from mmtkd.registry import MODELS
from .base_weighting import BaseWeighting, TeacherSignals, TeacherWeights
from .warmup import WarmupSchedule


def confidence_weights(teacher_loss: Tensor) -> Tensor:
    """CA-MKD weights ``w_m = (1 - softmax_m(CE_m)) / (M - 1)``; all ones when M = 1.

    Args:
        teacher_loss (Tensor): (B, M) teacher losses against the ground truth.

    Returns:
        Tensor: (B, M) weights summing to 1 over teachers (for M > 1).
    """
    num_teachers = teacher_loss.shape[1]
    if num_teachers == 1:
        return torch.ones_like(teacher_loss)
    return (1 - teacher_loss.softmax(dim=1)) / (num_teachers - 1)


def entropy_weights(teacher_entropy: Tensor, eps: float = 1e-12) -> Tensor:
    """EBKD weights ``w_m = 1 - H_m / sum_j H_j``: confident teachers weigh more.

    Args:
        teacher_entropy (Tensor): (B, M) per-sample prediction entropies.
        eps (float): Guards the division when every teacher is fully confident.

    Returns:
        Tensor: (B, M) weights; they sum to M - 1 over teachers (all ones when M = 1).
    """
    if teacher_entropy.shape[1] == 1:
        return torch.ones_like(teacher_entropy)
    return 1 - teacher_entropy / (teacher_entropy.sum(dim=1, keepdim=True) + eps)


@MODELS.register_module()
class AverageWeighting(BaseWeighting):
    """AVER (You et al., KDD 2017): every teacher weighs ``1/M`` for every sample.

    Args:
        warmup_iters (int): Training iterations at the start during which every teacher weighs
            ``warmup_weight`` instead, as in MTKD-RL's warm-up (weights of 1: M times AVER's KD
            weight), to compare the two at the same early KD weight. The iteration is the
            runner's (:class:`WarmupSchedule`, as MTKD-RL's), so a resumed run continues the
            schedule. Defaults to 0 (plain AVER).
        warmup_weight (float): Every teacher's weight during the warm-up. Defaults to 1.0.
    """

    def __init__(self, warmup_iters: int = 0, warmup_weight: float = 1.0) -> None:
        super().__init__()
        if warmup_iters < 0:
            raise ValueError(f'AverageWeighting: warmup_iters must be >= 0, got {warmup_iters}')
        self.warmup = WarmupSchedule(iters=warmup_iters)
        self.warmup_weight = warmup_weight

    def forward(self, signals: TeacherSignals) -> TeacherWeights:
        weight = 1.0 / signals.num_teachers
        if self.training and self.warmup.active:
            weight = self.warmup_weight
        weights = torch.full_like(signals.logit_kd, weight)
        return TeacherWeights(weights, weights)


@MODELS.register_module()
class FixedWeighting(BaseWeighting):
    """The same weight for a teacher on every sample, one weight per teacher, as given.

    A hand-weighted ensemble, and the benchmarks' oracle selection: with the bad teachers of a
    pool known, ``weights`` of 0 for them and ``1/good`` for the others is what an agent that
    finds them exactly, and weighs the rest as AVER does, would distil from.

    Args:
        weights (Sequence[float]): One non-negative weight per teacher, in the order of the
            distiller's ``teachers``; used as given for logit and feature KD (AVER's are
            ``1/M`` each, summing to 1).
    """

    def __init__(self, weights: Sequence[float]) -> None:
        super().__init__()
        weights = [float(w) for w in weights]
        if not weights or not all(math.isfinite(w) and w >= 0 for w in weights) or \
                not any(weights):
            raise ValueError('FixedWeighting: weights must be finite, non-negative and not all '
                             f'zero, one per teacher; got {weights}')
        self.register_buffer('weights', torch.tensor(weights), persistent=False)

    def setup(self, num_teachers: int, embed_dims: Sequence[int], num_classes: int,
              beta: float) -> None:
        """Check that there is one weight per teacher.

        Args:
            num_teachers (int): Number of teachers M.
            embed_dims (Sequence[int]): Unused.
            num_classes (int): Unused.
            beta (float): Unused.
        """
        if len(self.weights) != num_teachers:
            raise ValueError(f'FixedWeighting: {len(self.weights)} weights for {num_teachers} '
                             'teachers; give one weight per teacher, in the order of the '
                             "distiller's teachers")

    def forward(self, signals: TeacherSignals) -> TeacherWeights:
        weights = self.weights.to(signals.logit_kd).expand_as(signals.logit_kd)
        return TeacherWeights(weights, weights)


@MODELS.register_module()
class ConfidenceWeighting(BaseWeighting):
    """CA-MKD (Zhang et al., ICASSP 2022): ``(1 - softmax_m(CE_m)) / (M - 1)`` per sample, the
    same weights for logit KD and feature KD."""

    required_signals = frozenset({'teacher_loss'})

    def forward(self, signals: TeacherSignals) -> TeacherWeights:
        weights = confidence_weights(signals.teacher_loss)
        return TeacherWeights(weights, weights)


@MODELS.register_module()
class EntropyWeighting(BaseWeighting):
    """EBKD (Kwon et al., ICASSP 2020): ``1 - H_m / sum_j H_j`` per sample, for logits and
    features."""

    required_signals = frozenset({'teacher_entropy'})

    def forward(self, signals: TeacherSignals) -> TeacherWeights:
        weights = entropy_weights(signals.teacher_entropy)
        return TeacherWeights(weights, weights)
