"""Task adapters: one per OpenMMLab model family."""
from .base_task import BaseTaskAdapter, DistillOutputs
from .classification import ClassificationTask
from .detection import DetectionTask
from .detr_detection import DETRDetectionTask
from .segmentation import SegmentationTask
from .two_stage_detection import TwoStageDetectionTask

__all__ = [
    'BaseTaskAdapter', 'DistillOutputs', 'ClassificationTask', 'DetectionTask', 'DETRDetectionTask',
    'SegmentationTask', 'TwoStageDetectionTask'
]
