"""Helpers for tests and benchmarks: tiny real OpenMMLab models, data written to disk, and
teacher checkpoints saved and read back like real ones."""
from .checkpoints import save_model_checkpoint
from .classification import tiny_classification_distiller_cfg, tiny_classifier, write_image_folder
from .dense import write_cityscapes_segmentation, write_coco_detection
from .offline import isolated_run_cfg, offline_distiller_cfg, stock_model, strip_pretrained

__all__ = [
    'tiny_classifier', 'tiny_classification_distiller_cfg', 'write_image_folder',
    'save_model_checkpoint', 'write_coco_detection', 'write_cityscapes_segmentation',
    'offline_distiller_cfg', 'strip_pretrained', 'stock_model', 'isolated_run_cfg'
]
