"""Distillers."""
from .multi_teacher_distiller import MultiTeacherDistiller

__all__ = ['MultiTeacherDistiller']
