"""Mixing of the learned teacher weights with the heuristic (confidence / divergence) weights."""
import torch
import torch.nn as nn
from torch import Tensor

from ..base_weighting import TeacherSignals
from ..heuristic_weighting import confidence_weights, entropy_weights

MIXING_MODES = ('none', 'static', 'dynamic')
DIVERGENCE_MODES = ('official', 'inverse')
#: per-sample gates on the agent's weights (:func:`gated`), each with the signal it reads;
#: None: no gate
GATE_SIGNALS = {
    None: None,
    # EBKD's entropy weights, ``1 - H_m / sum_j H_j``: a teacher unsure of a sample weighs less
    'entropy': 'teacher_entropy',
    # each teacher's probability of the sample's ground truth, ``exp(-CE_m)``: a teacher wrong
    # about a sample weighs less on it (CA-MKD's ``1 - softmax(CE)`` barely tells two right
    # teachers apart once a wrong one takes the softmax)
    'confidence': 'teacher_confidence',
}
GATES = tuple(GATE_SIGNALS)


def gated(weights: Tensor, gate: str, signals: TeacherSignals, eps: float = 1e-12) -> Tensor:
    """The agent's weights scaled per sample by a gate (:data:`GATE_SIGNALS`) and
    renormalised to the agent's own sum: the agent says how much of each teacher to keep, the
    teachers' own certainty distributes it sample by sample.

    Args:
        weights (Tensor): (B, 2, M) the agent's (mixed) weights, logit and feature heads.
        gate (str): ``'entropy'`` or ``'confidence'``.
        signals (TeacherSignals): The step's signals (the gate's, :data:`GATE_SIGNALS`).
        eps (float): Guards a sample whose gated weights are all zero.

    Returns:
        Tensor: (B, 2, M), each row summing to the agent's row sum.
    """
    value = getattr(signals, GATE_SIGNALS[gate])
    per_sample = entropy_weights(value) if gate == 'entropy' else value
    scaled = weights * per_sample.unsqueeze(1)
    return scaled * (weights.sum(-1, keepdim=True) / scaled.sum(-1, keepdim=True).clamp(min=eps))


def heuristic_weights(signals: TeacherSignals, divergence: str = 'official') -> Tensor:
    """The heuristic weight vectors of MTKD-RL for both heads.

    * confidence-aware (CA-MKD): ``c_m = (1 - softmax_m(CE_m)) / (M - 1)``;
    * divergence-aware, logits: ``softmax_m(KL_m)`` (official: a larger gap weighs more, which
      rewards a teacher that disagrees with everything) or ``softmax_m(-KL_m)`` (``'inverse'``:
      a teacher the student cannot follow weighs less, so an adversarial teacher is not
      rewarded);
    * divergence-aware, features: ``softmax_m(cos_m)`` (higher similarity weighs more).

    Args:
        signals (TeacherSignals): The batch's signals.
        divergence (str): ``'official'`` or ``'inverse'``.

    Returns:
        Tensor: (B, 2, 2, M): head (logit, feature) x term (confidence, divergence) x teacher.
    """
    confidence = confidence_weights(signals.teacher_loss)
    logit_divergence = (signals.logit_kd
                        if divergence == 'official' else -signals.logit_kd).softmax(dim=1)
    feature_divergence = signals.feature_cos.softmax(dim=1)
    # one stack (not one per head and one of the heads)
    terms = torch.stack([confidence, logit_divergence, confidence, feature_divergence], dim=1)
    return terms.view(terms.shape[0], 2, 2, terms.shape[2])


class WeightMixer(nn.Module):
    """Combine learned weights ``l`` with heuristic weights ``c`` and ``d`` per head.

    * ``'none'``: ``w = l`` (heuristics off);
    * ``'static'``: ``w = (l + c + d) / 3`` (official default);
    * ``'dynamic'``: ``w = a0 l + a1 c + a2 d`` with ``a = softmax(p)``, ``p`` a learnable
      3-vector per head initialised to ones and trained by the agent optimiser.

    Args:
        mode (str): One of ``'none'``, ``'static'``, ``'dynamic'``.
    """

    def __init__(self, mode: str = 'static') -> None:
        super().__init__()
        if mode not in MIXING_MODES:
            raise ValueError(f'mixing must be one of {MIXING_MODES}, got {mode!r}')
        self.mode = mode
        if mode == 'dynamic':
            self.mix_params = nn.Parameter(torch.ones(2, 3))

    def coefficients(self) -> Tensor:
        """Mixing coefficients (2 heads, 3 terms)."""
        if self.mode == 'dynamic':
            return self.mix_params.softmax(dim=1)
        if self.mode == 'static':
            return torch.full((2, 3), 1 / 3)
        return torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])

    def forward(self, learned: Tensor, heuristics: Tensor) -> Tensor:
        """Mix.

        Args:
            learned (Tensor): (B, 2, M) policy weights (logit head, feature head).
            heuristics (Tensor): (B, 2, 2, M) from :func:`heuristic_weights`.

        Returns:
            Tensor: (B, 2, M) teacher weights; each row sums to 1 over teachers.
        """
        if self.mode == 'none':
            return learned
        terms = torch.cat([learned.unsqueeze(2), heuristics], dim=2)  # (B, 2, 3, M)
        if self.mode == 'static':  # equal thirds: the terms' mean, one kernel
            return terms.mean(dim=2)
        coefficients = self.coefficients().to(terms)
        return (coefficients[None, :, :, None] * terms).sum(dim=2)
