"""Task adapters: one per OpenMMLab model family."""
from .base_task import BaseTaskAdapter, DistillOutputs
from .classification import ClassificationTask
from .detection import DetectionTask
from .segmentation import SegmentationTask

__all__ = [
    'BaseTaskAdapter', 'DistillOutputs', 'ClassificationTask', 'DetectionTask', 'SegmentationTask'
]
