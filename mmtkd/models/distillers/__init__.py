"""Distillers."""
from .multi_teacher_distiller import MultiTeacherDistiller
from .step_record import StepRecord, weighted_kd

__all__ = ['MultiTeacherDistiller', 'StepRecord', 'weighted_kd']
