"""Build OpenMMLab models named by config path, ``pkg::`` path or inline dict, and load teachers."""
import copy
import os.path as osp
from importlib import import_module
from typing import Optional, Tuple, Union

import torch.nn as nn
from mmengine.config import Config, ConfigDict
from mmengine.logging import print_log
from mmengine.registry import MODELS as ROOT_MODELS
from mmengine.runner import load_checkpoint

from mmtkd.utils.safe_checkpoint_loaders import is_local_path

#: Scopes searched, in order, when a model config names a bare type without ``_scope_``.
KNOWN_SCOPES = ('mmpretrain', 'mmdet', 'mmseg')


def infer_scope(type_name: str, owner: str) -> str:
    """Find the OpenMMLab scope whose MODELS registry defines ``type_name``.

    Args:
        type_name (str): A bare registry key such as ``'ImageClassifier'``.
        owner (str): Who asked (for the error message), e.g. ``"teacher 'r50'"``.

    Returns:
        str: The scope, e.g. ``'mmpretrain'``.

    Raises:
        KeyError: When no scope, or more than one, defines the type.
    """
    found = []
    for scope in KNOWN_SCOPES:
        try:
            registry = import_module(f'{scope}.registry').MODELS
        except ImportError:
            continue
        registry.import_from_location()
        if type_name in registry.module_dict:
            found.append(scope)
    if len(found) != 1:
        what = 'no' if not found else f'several ({", ".join(found)})'
        raise KeyError(f"{owner}: model type '{type_name}' is defined in {what} of the scopes "
                       f"{KNOWN_SCOPES}; write type='<scope>.{type_name}' or add _scope_")
    return found[0]


def load_model_config(config: Union[str, dict], owner: str) -> Tuple[ConfigDict, Optional[str]]:
    """Read a model config from a file, a ``pkg::`` path, a full config dict or a model dict.

    Args:
        config (str | dict): ``'path/to/cfg.py'``, ``'mmdet::retinanet/x.py'``, a full config
            (with a ``model`` key) or a model config (with a ``type`` key).
        owner (str): Who asked, for error messages.

    Returns:
        tuple: The model config (a copy) and the config's ``default_scope`` (None if unknown).
    """
    if isinstance(config, (dict, ConfigDict)):
        if 'model' in config:
            return copy.deepcopy(ConfigDict(config['model'])), config.get('default_scope')
        if 'type' not in config:
            raise KeyError(f"{owner}: inline config needs a 'model' or a 'type' key")
        return copy.deepcopy(ConfigDict(config)), None
    if not isinstance(config, str):
        raise TypeError(f'{owner}: config must be a path or a dict, got {type(config).__name__}')
    if '::' in config:
        from mmengine.hub import get_config
        try:
            cfg = get_config(config)
        except Exception as err:  # noqa: BLE001 - re-raised with the owner named
            raise FileNotFoundError(f"{owner}: cannot load config '{config}': {err}") from err
    else:
        if not osp.isfile(config):
            raise FileNotFoundError(f"{owner}: config file '{config}' does not exist")
        cfg = Config.fromfile(config)
    return copy.deepcopy(cfg.model), cfg.get('default_scope')


def with_cfg_options(model_cfg: ConfigDict, options: dict) -> ConfigDict:
    """A model config changed the way ``--cfg-options`` changes a config.

    Args:
        model_cfg (ConfigDict): The model config (not changed).
        options (dict): Keys relative to the model, dotted (``'bbox_head.num_classes'``) or
            nested dicts; list items by index (``'backbone.out_indices.0'``); ``_delete_``
            as in config inheritance.

    Returns:
        ConfigDict: The changed copy.
    """
    cfg = Config(dict(model=copy.deepcopy(model_cfg)))
    cfg.merge_from_dict({f'model.{key}': value for key, value in options.items()})
    return cfg.model


def build_model(model_cfg: dict, default_scope: Optional[str], owner: str) -> nn.Module:
    """Build a model in its own scope (mmpretrain / mmdet / mmseg), whatever scope is current.

    Args:
        model_cfg (dict): The model config.
        default_scope (str, optional): Scope of the config it came from, if known.
        owner (str): Who asked, for error messages.

    Returns:
        nn.Module: The built model (random weights).
    """
    cfg = copy.deepcopy(dict(model_cfg))
    type_name = cfg.get('type')
    if isinstance(type_name, str) and '_scope_' not in cfg:
        prefix = type_name.split('.', 1)[0] if '.' in type_name else None
        if prefix is None:
            cfg['_scope_'] = default_scope or infer_scope(type_name, owner)
        elif prefix in KNOWN_SCOPES:
            # 'mmpretrain.ImageClassifier': its parts (data preprocessor, backbone, ...) are
            # built in that scope too, not in whatever default scope is current
            cfg['_scope_'] = prefix
    try:
        return ROOT_MODELS.build(cfg)
    except KeyError as err:
        raise KeyError(f"{owner}: cannot build model type {type_name!r} "
                       f"(scope {cfg.get('_scope_', 'from its type')}): {err}; check the "
                       "spelling and that the package defining it is installed") from err


def load_teacher_checkpoint(model: nn.Module, checkpoint: str, owner: str) -> None:
    """Load a teacher checkpoint strictly, naming the teacher on failure.

    The checkpoint goes through MMEngine's ``CheckpointLoader``, whose loaders mmtkd replaces by
    weights-only ones (:mod:`mmtkd.utils.safe_checkpoint_loaders`).

    Args:
        model (nn.Module): The built teacher.
        checkpoint (str): Local path, URL or an MMEngine prefix (``torchvision://``,
            ``open-mmlab://``, ...).
        owner (str): Who asked, e.g. ``"teacher 'r50'"``.
    """
    if not isinstance(checkpoint, str):
        raise TypeError(f"{owner}: checkpoint must be a path, URL or None, got "
                        f'{type(checkpoint).__name__}')
    local = is_local_path(checkpoint)
    if local and not osp.isfile(osp.expanduser(checkpoint)):
        raise FileNotFoundError(f"{owner}: checkpoint '{checkpoint}' does not exist")
    try:
        load_checkpoint(model, checkpoint, map_location='cpu', strict=True, logger='silent')
    except Exception as err:  # noqa: BLE001 - re-raised with the owner named
        verb = 'read' if local else 'fetch'
        raise RuntimeError(f"{owner}: could not {verb} checkpoint '{checkpoint}': "
                           f'{type(err).__name__}: {err}') from err
    print_log(f'{owner}: loaded {checkpoint}', logger='current')


def freeze(model: nn.Module) -> nn.Module:
    """Put ``model`` in eval mode without gradients and mark it initialised, so that the runner's
    ``init_weights`` never overwrites (or downloads over) its loaded weights.

    Args:
        model (nn.Module): A teacher.

    Returns:
        nn.Module: The same model.
    """
    model.eval()
    model.requires_grad_(False)
    for module in model.modules():
        if hasattr(module, '_is_init'):
            module._is_init = True
    return model
