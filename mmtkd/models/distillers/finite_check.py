"""Stop at the first step where a teacher's signals or weights are not finite, naming them."""
from typing import List, Optional, Sequence, Tuple

import torch
from mmengine.logging import MessageHub
from torch import Tensor

from ..weighting import TeacherSignals, TeacherWeights

#: ``TeacherSignals`` field -> how the error names it (and which loss or use it feeds)
PER_TEACHER_TERMS = (
    ('logit_kd', 'logit KD term (loss_logit_kd)'),
    ('feature_kd', 'feature KD term (loss_feat_kd)'),
    ('feature_cos', 'feature similarity (weighting signal)'),
    ('teacher_loss', 'own task loss against the ground truth (weighting signal)'),
    ('teacher_entropy', 'prediction entropy (weighting signal)'),
    ('teacher_confidence', 'confidence (weighting signal)'),
    ('embeddings', 'pooled features (agent state)'),
    ('logit_summaries', 'logit summary (agent state)'),
    ('task_agreement', 'KD / task gradient agreement (agent reward)'),
    ('veto_agreement', 'KD gradient agreement of the veto (agent reward)'),
    ('feature_agreement', 'feature-KD / task gradient agreement (agent reward)'),
)


def _table(signals: TeacherSignals, weights: TeacherWeights) -> Tuple[List[str], Tensor]:
    """The names of the checked terms and their (terms, M) per-teacher sums: finite iff every
    element is (barring an overflow of finite values, which is reported too). The (B, M)
    terms are summed by one stack and one reduction, a list of M tensors of one shape by one
    stack and one reduction too, other lists one tensor at a time."""
    terms = [(name, getattr(signals, field)) for field, name in PER_TEACHER_TERMS
             if getattr(signals, field) is not None]
    terms += [('logit-KD weight', weights.logit), ('feature-KD weight', weights.feature)]
    matrices = [(name, v) for name, v in terms if isinstance(v, Tensor)]
    lists = [(name, v) for name, v in terms if not isinstance(v, Tensor)]
    names = [name for name, _ in matrices + lists]
    rows = [torch.stack([v.float() for _, v in matrices]).sum(1)]
    rows += [_per_teacher_sums(v)[None] for _, v in lists]
    if signals.student_loss is not None:
        names.append("student's per-sample loss (agent reward)")
        rows.append(signals.student_loss.float().sum().expand(1, signals.num_teachers))
    return names, rows[0] if len(rows) == 1 else torch.cat(rows)


def _per_teacher_sums(values: Sequence[Tensor]) -> Tensor:
    """(M,) the sum of each teacher's tensor: one stack and one reduction where they share a
    shape (two kernels, not M + 1)."""
    if len({v.shape for v in values}) == 1:
        stacked = torch.stack(list(values)).float()
        return stacked.view(len(values), -1).sum(1)
    return torch.stack([v.float().sum() for v in values])


def raise_if_not_finite(signals: TeacherSignals, weights: TeacherWeights,
                        teachers: Sequence[str]) -> None:
    """Raise ``FloatingPointError`` if any per-teacher signal or weight is inf / NaN.

    One host synchronisation when everything is finite (one small tensor read); the slow path
    that names the culprit runs only on failure.

    Args:
        signals (TeacherSignals): The step's signals.
        weights (TeacherWeights): The weights the strategy gave.
        teachers (Sequence[str]): Teacher names, in order.

    Raises:
        FloatingPointError: Naming the teacher(s) and the first non-finite term.
    """
    names, table = _table(signals, weights)  # (terms, M)
    # x * 0 is 0 for a finite x and NaN for inf / NaN: the sum is 0 iff every entry is finite
    # (two kernels; ``isfinite`` and ``all`` are five on CPU)
    if not bool((table * 0).sum()):
        return
    finite = torch.isfinite(table)
    term = int((~finite).any(1).nonzero()[0])
    bad = [teachers[m] for m in (~finite[term]).nonzero().flatten().tolist()]
    if len(bad) == len(teachers) and len(teachers) > 1:
        who = ('every teacher (the common factor is the student: its outputs or the input batch '
               'may be non-finite)')
    else:
        who = ', '.join(f"teacher '{b}'" for b in bad)
    iteration: Optional[int] = MessageHub.get_current_instance().get_info('iter')
    at = '' if iteration is None else f' at iteration {iteration}'
    raise FloatingPointError(
        f'non-finite {names[term]}{at} for {who}. A teacher whose outputs are inf/NaN usually '
        'has a corrupted checkpoint or runs in too low a precision (teacher_autocast); the '
        'student step was not taken. Check the checkpoint (e.g. torch.isfinite on its tensors) '
        'or remove the teacher. Set check_finite=False on the distiller to skip this check.')
