"""Make shipped configs (model-zoo URLs, pretrained backbones) buildable offline for tests."""
import os
import os.path as osp
import uuid
from typing import Any

from mmengine.config import Config, ConfigDict
from mmengine.hub import get_config

from mmtkd.utils.model_builder import load_model_config
from .checkpoints import save_model_checkpoint


def strip_pretrained(cfg: Any) -> Any:
    """Recursively drop ``init_cfg=dict(type='Pretrained', ...)`` and ``pretrained=...``.

    Args:
        cfg (Any): A (nested) config.

    Returns:
        Any: The same config, changed in place.
    """
    if isinstance(cfg, dict):
        for key in list(cfg):
            value = cfg[key]
            if key == 'pretrained' and isinstance(value, str):
                cfg[key] = None
            elif key == 'init_cfg' and isinstance(value, dict) and \
                    value.get('type') == 'Pretrained':
                cfg[key] = None
            else:
                strip_pretrained(value)
    elif isinstance(cfg, (list, tuple)):
        for item in cfg:
            strip_pretrained(item)
    return cfg


def stock_model(config: str) -> ConfigDict:
    """The model of a stock OpenMMLab config, buildable offline in its own scope.

    Args:
        config (str): A ``pkg::`` config path, e.g.
            ``'mmdet::yolox/yolox_tiny_8xb8-300e_coco.py'``.

    Returns:
        ConfigDict: Its model config without pretrained weights, with ``_scope_`` the package.
    """
    model = strip_pretrained(get_config(config).model)
    model['_scope_'] = config.split('::')[0]
    return model


def offline_distiller_cfg(cfg: Config, checkpoint_dir: str, seed: int = 0) -> Config:
    """Replace every teacher checkpoint URL by a random-weight checkpoint written to disk (the
    model's own initialisation, without pretrained backbones), and the student's pretrained
    initialisation by a random one. Existing checkpoints in ``checkpoint_dir`` (one per teacher
    config file) are reused.

    Args:
        cfg (Config): A config whose model is an ``mmtkd.MultiTeacherDistiller``.
        checkpoint_dir (str): Where to write the teacher checkpoints.
        seed (int): Seed of the random teacher weights.

    Returns:
        Config: ``cfg``, changed in place.
    """
    strip_pretrained(cfg.model.student)
    os.makedirs(checkpoint_dir, exist_ok=True)
    for i, (name, spec) in enumerate(cfg.model.teachers.items()):
        # keyed by the teacher's config file where it has one: pools of different configs
        # share the folder, and teachers of the same name differ between them
        stem = osp.splitext(osp.basename(spec.config))[0] if isinstance(spec.config, str) else name
        path = osp.join(checkpoint_dir, f'{stem}.pth')
        if not osp.isfile(path):
            model_cfg, scope = load_model_config(spec.config, name)
            save_model_checkpoint(strip_pretrained(model_cfg), path, seed + i, scope)
        spec.checkpoint = path
    return cfg


def isolated_run_cfg(cfg: Config, work_dir: str) -> Config:
    """Settings for running a shipped config several times in one test process on CPU.

    mmdet / mmseg configs name their visualizer ``'visualizer'``, and MMEngine keeps one instance
    per name and process, so each run gets a unique experiment and visualizer name.

    Args:
        cfg (Config): A runner config.
        work_dir (str): The run's work dir.

    Returns:
        Config: ``cfg``, changed in place.
    """
    cfg.work_dir = work_dir
    cfg.experiment_name = cfg.visualizer.name = f'{osp.basename(work_dir)}_{uuid.uuid4().hex}'
    cfg.default_hooks.logger.interval = 1
    cfg.env_cfg.dist_cfg = dict(backend='gloo')
    cfg.log_level = 'WARNING'
    return cfg
