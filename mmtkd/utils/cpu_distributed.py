"""Distributed training on CPUs (gloo) through MMEngine's ``pytorch`` launcher.

MMEngine 0.10.7 assumes a GPU per process under ``--launcher pytorch``: it calls
``torch.cuda.set_device`` and wraps the model with ``device_ids=[LOCAL_RANK]``. On a machine
without CUDA this prepares the process group with gloo first (MMEngine then skips its own
initialisation) and wraps the model with ``device_ids=None``, which is how PyTorch runs DDP on
CPU modules. Used by ``tools/train.py`` and ``tools/test.py``; a no-op when CUDA is available.
"""
import os

import torch
import torch.distributed as torch_dist
from mmengine.config import Config


def prepare_cpu_distributed(cfg: Config) -> bool:
    """Initialise gloo and adapt the model wrapper if ``cfg.launcher`` asks for distributed
    training on a machine without CUDA.

    Args:
        cfg (Config): The run's config (``launcher`` already set).

    Returns:
        bool: True when CPU distributed mode was set up.
    """
    if cfg.get('launcher', 'none') != 'pytorch' or torch.cuda.is_available():
        return False
    if not torch_dist.is_initialized():
        torch_dist.init_process_group(
            backend='gloo', rank=int(os.environ['RANK']), world_size=int(os.environ['WORLD_SIZE']))
    wrapper = dict(cfg.get('model_wrapper_cfg') or {})
    wrapper.setdefault('type', 'MMDistributedDataParallel')
    wrapper.setdefault('broadcast_buffers', False)
    wrapper['device_ids'] = None
    cfg.model_wrapper_cfg = wrapper
    return True
