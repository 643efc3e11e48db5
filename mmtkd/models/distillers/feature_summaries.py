"""Per-sample summaries of feature maps that the distiller's KD terms and the weighting's state
share: each teacher's mean over its levels, pooled embeddings, and their cosine similarities."""
from typing import List

import torch
import torch.nn.functional as F
from torch import Tensor


def mean_over_levels(per_level: List[List[Tensor]]) -> Tensor:
    """Each teacher's mean over its levels of (B,) values.

    One stack and one mean for all teachers when they have as many levels (the rule), else one
    per teacher.

    Args:
        per_level (list[list[Tensor]]): Per teacher, one (B,) value per level.

    Returns:
        Tensor: (B, M).
    """
    counts = {len(levels) for levels in per_level}
    if len(counts) == 1:
        stacked = torch.stack([value for levels in per_level for value in levels], 1)
        return stacked.view(stacked.shape[0], len(per_level), counts.pop()).mean(2)
    return torch.stack([torch.stack(levels, 1).mean(1) for levels in per_level], 1)


def cosines(students: List[Tensor], teachers: List[Tensor]) -> Tensor:
    """Per-sample cosine similarity of each pair of (B, D_m) embeddings.

    One call over the stacked pairs where every D_m is equal (13 kernels for three teachers on
    CPU, 34 one pair at a time; the student's embedding broadcast, not stacked, where every
    teacher compares with the same one), else one call per pair.

    Args:
        students (list[Tensor]): The student's (B, D_m) embedding for each teacher.
        teachers (list[Tensor]): Each teacher's (B, D_m) embedding.

    Returns:
        Tensor: (B, M).
    """
    if len({s.shape for s in students + teachers}) == 1:
        same = all(s is students[0] for s in students)
        student = students[0].unsqueeze(1) if same else torch.stack(students, 1)
        return F.cosine_similarity(student, torch.stack(teachers, 1), dim=2)
    return torch.stack([F.cosine_similarity(s, t, dim=1) for s, t in zip(students, teachers)], 1)


def pooled(features: List[Tensor]) -> Tensor:
    """Global-average-pool each level and concatenate.

    Args:
        features (list[Tensor]): (B, C_l, H_l, W_l) per level.

    Returns:
        Tensor: (B, sum_l C_l).
    """
    return pooled_each([features])[0]


def pooled_each(feature_lists: List[List[Tensor]]) -> List[Tensor]:
    """:func:`pooled` of each list of levels (e.g. each teacher's): every level's mean,
    concatenated once for all lists, each list's part a view of that one tensor.

    Args:
        feature_lists (list[list[Tensor]]): Lists of (B, C_l, H_l, W_l) levels.

    Returns:
        list[Tensor]: (B, sum_l C_l) per list.
    """
    means = [f.mean(dim=(2, 3)) for features in feature_lists for f in features]
    widths = [sum(f.shape[1] for f in features) for features in feature_lists]
    return list(torch.cat(means, dim=1).split(widths, dim=1))
