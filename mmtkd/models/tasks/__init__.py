"""Task adapters: one per OpenMMLab model family."""
from .base_task import BaseTaskAdapter, DistillOutputs
from .classification import ClassificationTask

__all__ = ['BaseTaskAdapter', 'DistillOutputs', 'ClassificationTask']
