"""Keep MMEngine's optimizer constructor from logging one warning per frozen teacher parameter.

With a ``paramwise_cfg`` (most mmdet / mmseg recipes), ``DefaultOptimWrapperConstructor`` logs
``<name> is skipped since its requires_grad=False`` for every parameter that does not train:
with a distiller, every teacher parameter (hundreds of lines per teacher). Teachers are frozen
by design, so these lines say nothing; the same message for any *other* parameter (a student
layer frozen by mistake) is still logged.
"""
import logging
import re

from mmengine.logging import MMLogger

_TEACHER_SKIPPED = re.compile(r'^teachers\.\S+ is skipped since its requires_grad=False$')


class FrozenTeacherParamsFilter(logging.Filter):
    """Drops the constructor's "is skipped" records of teacher parameters."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not _TEACHER_SKIPPED.match(str(record.msg))


def silence_frozen_teacher_params() -> FrozenTeacherParamsFilter:
    """Install the filter on MMEngine's current logger (once per logger).

    Returns:
        FrozenTeacherParamsFilter: The installed filter.
    """
    logger = MMLogger.get_current_instance()
    for existing in logger.filters:
        if isinstance(existing, FrozenTeacherParamsFilter):
            return existing
    installed = FrozenTeacherParamsFilter()
    logger.addFilter(installed)
    return installed
