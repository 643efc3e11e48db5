"""The loss of a distillation step, per sample, in one place, and what the step leaves behind
for whoever learns from it (the agent's rewards read it; nothing re-derives the formula)."""
from dataclasses import dataclass
from typing import Any, Dict, NamedTuple, Optional, Sequence, Tuple

from torch import Tensor

from ..losses.base_kd_loss import scaled
from ..weighting import TeacherSignals, TeacherWeights


class KDShare(NamedTuple):
    """Each sample's share of one weighted KD term, computed only when someone reads it (the
    step pays nothing for it unless a reward asks).

    Attributes:
        weighted (Tensor): (B, M) ``w[b,m] * kd[b,m]``, detached.
        scale (float): ``alpha`` or ``beta``.
    """
    weighted: Tensor
    scale: float

    def per_sample(self) -> Tensor:
        """(B,) ``scale * sum_m w[b,m] kd[b,m]``; its batch mean is the term's loss."""
        return self.scale * self.weighted.sum(1)


def weighted_kd(weights: Tensor, kd: Tensor, scale: float) -> Tuple[Tensor, KDShare]:
    """One weighted KD term of the student loss: ``scale * sum_m mean_b(w[b,m] kd[b,m])``
    (back-propagated) and each sample's share of it.

    Args:
        weights (Tensor): (B, M) teacher weights (detached).
        kd (Tensor): (B, M) per-sample KD to each teacher.
        scale (float): ``alpha`` (logit KD) or ``beta`` (feature KD).

    Returns:
        tuple: The scalar loss and the term's :class:`KDShare`.
    """
    weighted = weights * kd
    return scaled(weighted.mean(0).sum(), scale), KDShare(weighted.detach(), scale)


@dataclass
class StepRecord:
    """One training step of the distiller, per sample, detached.

    Attributes:
        signals (TeacherSignals): The step's per-teacher signals.
        weights (TeacherWeights): The weights that were applied.
        kd_shares (Sequence[KDShare]): The weighted KD terms (logit, and feature if any).
        student_loss (Tensor, optional): (B,) the student's own task loss, when the weighting
            asked for it.
        inputs (Tensor): The step's pre-processed inputs (after batch augmentations).
        data_samples (Sequence): The step's data samples.
        transition (dict, optional): What the weighting recorded (its states, actions, ...).
    """
    signals: TeacherSignals
    weights: TeacherWeights
    kd_shares: Sequence[KDShare]
    student_loss: Optional[Tensor]
    inputs: Tensor
    data_samples: Sequence
    transition: Optional[Dict[str, Any]] = None

    @property
    def kd_loss(self) -> Tensor:
        """(B,) the sample's weighted KD terms, logit plus feature."""
        return self._plus_kd_terms(None)

    @property
    def total_loss(self) -> Tensor:
        """(B,) the sample's back-propagated loss: task loss plus weighted KD terms."""
        if self.student_loss is None:
            raise ValueError('StepRecord: the weighting did not ask for student_loss')
        return self._plus_kd_terms(self.student_loss)

    def _plus_kd_terms(self, total: Optional[Tensor]) -> Tensor:
        """(B,) ``total`` (None: nothing) plus each weighted KD term per sample, each added
        with its scale in one kernel (``Tensor.add``'s ``alpha``)."""
        for share in self.kd_shares:
            term = share.weighted.sum(1)
            total = scaled(term, share.scale) if total is None else total.add(
                term, alpha=share.scale)
        return total
