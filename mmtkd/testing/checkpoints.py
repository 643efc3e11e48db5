"""Write teacher checkpoints the way model-zoo checkpoints are laid out."""
from typing import Optional

import torch

from mmtkd.utils import save_atomically
from mmtkd.utils.model_builder import build_model


def save_model_checkpoint(model_cfg: dict,
                          path: str,
                          seed: int = 0,
                          default_scope: Optional[str] = None) -> str:
    """Build ``model_cfg`` with its own (seeded) initialisation and save ``{'state_dict': ...}``.

    Args:
        model_cfg (dict): A model config (bare types are built in the scope that defines them).
        path (str): Where to write the checkpoint.
        seed (int): Seed of the random initialisation.
        default_scope (str, optional): Scope of the config the model came from.

    Returns:
        str: ``path``.
    """
    torch.manual_seed(seed)
    model = build_model(dict(model_cfg), default_scope, owner=f'checkpoint {path}')
    model.init_weights()  # the model's own init (e.g. detection prior-probability bias)
    save_atomically({'state_dict': model.state_dict(), 'meta': {'seed': seed}}, path)
    return path
