"""Distillers."""
from .multi_teacher_distiller import MultiTeacherDistiller
from .step_record import KDShare, StepRecord, weighted_kd

__all__ = ['MultiTeacherDistiller', 'KDShare', 'StepRecord', 'weighted_kd']
