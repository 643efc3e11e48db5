"""Helpers for tests and benchmarks: tiny real OpenMMLab models, data written to disk, and
teacher checkpoints saved and read back like real ones."""
from .classification import (tiny_classifier, tiny_classification_distiller_cfg,
                             write_image_folder)
from .checkpoints import save_model_checkpoint
from .digits_probe import run_digits_probe

__all__ = [
    'tiny_classifier', 'tiny_classification_distiller_cfg', 'write_image_folder',
    'save_model_checkpoint', 'run_digits_probe'
]
