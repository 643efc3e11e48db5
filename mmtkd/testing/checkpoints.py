"""Write teacher checkpoints the way model-zoo checkpoints are laid out."""
import os.path as osp

import torch
from mmengine.registry import MODELS


def save_model_checkpoint(model_cfg: dict, path: str, seed: int = 0) -> str:
    """Build ``model_cfg`` with random weights (seeded) and save ``{'state_dict': ...}``.

    Args:
        model_cfg (dict): A scoped model config, e.g. ``type='mmpretrain.ImageClassifier'``.
        path (str): Where to write the checkpoint.
        seed (int): Seed of the random initialisation.

    Returns:
        str: ``path``.
    """
    torch.manual_seed(seed)
    model = MODELS.build(dict(model_cfg))
    if hasattr(model, 'init_weights'):
        model.init_weights()
    torch.save({'state_dict': model.state_dict(), 'meta': {'seed': seed}}, path)
    assert osp.isfile(path)
    return path
