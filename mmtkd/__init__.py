"""mmtkd: multi-teacher knowledge distillation with an RL teacher-weighting agent for OpenMMLab."""
from .utils import (allow_mmengine_checkpoints, check_known_conflicts,
                    install_safe_checkpoint_loaders, warn_untested_versions)
from .version import __version__

allow_mmengine_checkpoints()
install_safe_checkpoint_loaders()
warn_untested_versions()
check_known_conflicts()

from .engine import *  # noqa: E402,F401,F403
from .models import *  # noqa: E402,F401,F403

__all__ = ['__version__']
