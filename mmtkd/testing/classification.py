"""Tiny mmpretrain classifiers and an image-folder dataset for CPU tests."""
import os
import os.path as osp
from typing import Dict, Optional

import numpy as np
from PIL import Image


def tiny_classifier(depth: int = 18,
                    base_channels: int = 8,
                    num_classes: int = 4,
                    backbone: Optional[dict] = None) -> dict:
    """A real mmpretrain ``ImageClassifier`` config, shrunk for CPU tests.

    Args:
        depth (int): ResNet depth (ignored when ``backbone`` is given).
        base_channels (int): Width of the first ResNet stage.
        num_classes (int): Number of classes.
        backbone (dict, optional): Another mmpretrain backbone config; its last stage must have
            ``in_channels`` given by ``backbone['_out_channels']``.

    Returns:
        dict: The model config with an explicit ``mmpretrain`` scope.
    """
    if backbone is None:
        expansion = 4 if depth >= 50 else 1
        backbone = dict(type='ResNet', depth=depth, base_channels=base_channels, out_indices=(3, ))
        out_channels = base_channels * 8 * expansion
    else:
        backbone = dict(backbone)
        out_channels = backbone.pop('_out_channels')
    return dict(
        type='mmpretrain.ImageClassifier',
        backbone=backbone,
        neck=dict(type='GlobalAveragePooling'),
        head=dict(
            type='LinearClsHead',
            num_classes=num_classes,
            in_channels=out_channels,
            loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
            topk=(1, )),
        data_preprocessor=dict(
            type='ClsDataPreprocessor',
            num_classes=num_classes,
            mean=[127.5] * 3,
            std=[127.5] * 3,
            to_rgb=True))


def tiny_classification_distiller_cfg(teacher_checkpoints: Dict[str, str],
                                      teacher_cfgs: Dict[str, dict],
                                      weighting: dict = dict(type='mmtkd.AverageWeighting'),
                                      num_classes: int = 4,
                                      **kwargs) -> dict:
    """A ``MultiTeacherDistiller`` config over tiny classifiers.

    Args:
        teacher_checkpoints (dict): name -> checkpoint path.
        teacher_cfgs (dict): name -> model config.
        weighting (dict): Weighting strategy.
        num_classes (int): Number of classes of the student.
        **kwargs: More distiller arguments.

    Returns:
        dict: The model config.
    """
    return dict(
        type='mmtkd.MultiTeacherDistiller',
        student=tiny_classifier(18, 4, num_classes),
        teachers={
            name: dict(config=teacher_cfgs[name], checkpoint=path)
            for name, path in teacher_checkpoints.items()
        },
        weighting=weighting,
        probe_input_shape=(3, 32, 32),
        **kwargs)


def write_image_folder(root: str,
                       num_classes: int = 4,
                       per_class: int = 6,
                       size: int = 32,
                       seed: int = 0) -> str:
    """Write a small ImageNet-style folder dataset (``root/class_k/i.png``).

    Each class gets its own mean colour so that a model can learn something.

    Args:
        root (str): Output folder.
        num_classes (int): Number of class folders.
        per_class (int): Images per class.
        size (int): Square image size.
        seed (int): Seed of the noise.

    Returns:
        str: ``root``.
    """
    rng = np.random.default_rng(seed)
    for k in range(num_classes):
        folder = osp.join(root, f'class_{k}')
        os.makedirs(folder, exist_ok=True)
        colour = rng.integers(0, 255, size=3)
        for i in range(per_class):
            noise = rng.integers(-40, 40, size=(size, size, 3))
            image = np.clip(colour + noise, 0, 255).astype(np.uint8)
            Image.fromarray(image).save(osp.join(folder, f'{i}.png'))
    return root
