"""Tiny detection (COCO json) and segmentation (Cityscapes layout) datasets for CPU tests."""
import json
import os
import os.path as osp
from typing import List, Sequence

import numpy as np
from PIL import Image


def write_coco_detection(root: str,
                         num_images: int = 2,
                         size: int = 64,
                         empty_images: Sequence[int] = (),
                         seed: int = 0) -> str:
    """Write images with painted boxes (COCO classes 'person' and 'bicycle') and a real COCO
    annotation file.

    Args:
        root (str): Output folder; images go to ``root/images``.
        num_images (int): Number of images.
        size (int): Square image size.
        empty_images (Sequence[int]): Indices of images without any box.
        seed (int): Seed of colours and boxes.

    Returns:
        str: Path of the annotation file ``root/annotations.json``.
    """
    rng = np.random.default_rng(seed)
    os.makedirs(osp.join(root, 'images'), exist_ok=True)
    images: List[dict] = []
    annotations: List[dict] = []
    for i in range(num_images):
        pixels = rng.integers(0, 60, size=(size, size, 3)).astype(np.uint8)
        if i not in empty_images:
            for k in range(2):
                w, h = rng.integers(size // 5, size // 2, size=2)
                x, y = rng.integers(0, size - w), rng.integers(0, size - h)
                pixels[y:y + h, x:x + w] = 120 + 100 * k
                annotations.append(
                    dict(
                        id=len(annotations) + 1,
                        image_id=i + 1,
                        category_id=k + 1,
                        bbox=[int(x), int(y), int(w), int(h)],
                        area=int(w * h),
                        iscrowd=0))
        name = f'{i:04d}.png'
        Image.fromarray(pixels).save(osp.join(root, 'images', name))
        images.append(dict(id=i + 1, file_name=name, width=size, height=size))
    # all 80 COCO categories, so that every label a COCO detector predicts has an id
    from mmdet.datasets import CocoDataset
    categories = [dict(id=k + 1, name=n) for k, n in enumerate(CocoDataset.METAINFO['classes'])]
    path = osp.join(root, 'annotations.json')
    with open(path, 'w') as f:
        json.dump(dict(images=images, annotations=annotations, categories=categories), f)
    return path


def write_cityscapes_segmentation(root: str,
                                  split: str = 'train',
                                  num_images: int = 2,
                                  size=(64, 128),
                                  num_classes: int = 19,
                                  ignored_images: Sequence[int] = (),
                                  seed: int = 0) -> str:
    """Write images and ``*_gtFine_labelTrainIds.png`` maps in the Cityscapes layout.

    Args:
        root (str): Dataset root (``leftImg8bit/`` and ``gtFine/`` are created below it).
        split (str): ``'train'`` or ``'val'``.
        num_images (int): Number of images.
        size (tuple): (H, W).
        num_classes (int): Classes drawn in the label maps.
        ignored_images (Sequence[int]): Images whose every pixel is 255 (ignore).
        seed (int): Seed.

    Returns:
        str: ``root``.
    """
    rng = np.random.default_rng(seed)
    image_dir = osp.join(root, 'leftImg8bit', split, 'city')
    label_dir = osp.join(root, 'gtFine', split, 'city')
    os.makedirs(image_dir, exist_ok=True)
    os.makedirs(label_dir, exist_ok=True)
    height, width = size
    for i in range(num_images):
        label = np.full((height, width), 255, dtype=np.uint8)
        if i not in ignored_images:
            label[:] = rng.integers(0, num_classes)
            for _ in range(3):
                y, x = rng.integers(0, height // 2), rng.integers(0, width // 2)
                label[y:y + height // 2, x:x + width // 2] = rng.integers(0, num_classes)
        pixels = (label[..., None].astype(np.int32) * 13 % 256 +
                  rng.integers(0, 20, size=(height, width, 3))).clip(0, 255).astype(np.uint8)
        stem = f'city_{i:06d}_000019'
        Image.fromarray(pixels).save(osp.join(image_dir, f'{stem}_leftImg8bit.png'))
        Image.fromarray(label).save(osp.join(label_dir, f'{stem}_gtFine_labelTrainIds.png'))
    return root
