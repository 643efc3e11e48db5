"""Utilities."""
from .cpu_distributed import prepare_cpu_distributed
from .norm_stats import frozen_norm_stats
from .safe_checkpoint_loaders import (UnsafeCheckpointError, install_safe_checkpoint_loaders,
                                      safe_torch_load)
from .safe_loading import allow_mmengine_checkpoints
from .student_export import export_student_file, extract_student, save_atomically
from .version_check import check_known_conflicts, warn_untested_versions

__all__ = [
    'allow_mmengine_checkpoints', 'install_safe_checkpoint_loaders', 'safe_torch_load',
    'UnsafeCheckpointError', 'check_known_conflicts', 'frozen_norm_stats', 'warn_untested_versions',
    'export_student_file', 'extract_student', 'save_atomically', 'prepare_cpu_distributed'
]
