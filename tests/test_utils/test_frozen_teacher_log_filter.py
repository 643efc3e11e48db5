"""A paramwise_cfg recipe's optimizer constructor logs nothing per frozen teacher parameter, and
still names a frozen *student* parameter."""
import logging

from mmengine.logging import MMLogger
from mmengine.optim import build_optim_wrapper
from mmengine.registry import MODELS

from mmtkd.testing import tiny_classification_distiller_cfg
from ..conftest import teacher_configs


class _Records(logging.Handler):

    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def test_frozen_teacher_parameters_are_not_logged_one_by_one(teacher_checkpoints):
    logger = MMLogger.get_instance('mmtkd_test_frozen_filter')  # the current logger
    distiller = MODELS.build(
        tiny_classification_distiller_cfg(teacher_checkpoints, teacher_configs()))
    records = _Records()
    logger.addHandler(records)
    try:
        frozen = next(distiller.student.parameters())
        frozen.requires_grad_(False)  # a student layer frozen by mistake is still reported
        build_optim_wrapper(
            distiller,
            dict(
                optimizer=dict(type='SGD', lr=0.1, weight_decay=1e-4),
                paramwise_cfg=dict(norm_decay_mult=0.0)))
    finally:
        logger.removeHandler(records)
    skipped = [m for m in records.messages if 'is skipped since its requires_grad=False' in m]
    assert len(skipped) == 1 and skipped[0].startswith('student.'), skipped
    assert sum(1 for _ in distiller.teachers.parameters()) > 10  # there were many to drop
