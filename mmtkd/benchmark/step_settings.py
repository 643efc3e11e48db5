"""The shipped recipes whose training step the speed, kernel and memory benchmarks measure.

``detection`` is the headline setting (RetinaNet-R18-FPN student, R50 / R101 / X101-32x4d
teachers); ``segmentation`` the Cityscapes recipe (DeepLabV3-R18-D8 student, DeepLabV3 /
PSPNet / DeepLabV3+ R101-D8 teachers). Both are built from their shipped config with random
weights (``mmtkd.testing.offline_distiller_cfg``) and fed a fixed random batch of square
images, so that every row of a table runs the same network on the same input.
"""
import os.path as osp
from typing import Callable, Dict, NamedTuple

from mmengine.config import Config

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIGS = osp.join(ROOT, 'configs', 'mtkd_rl')


class StepSetting(NamedTuple):
    """One benchmark setting: the shipped config, its description in tables, and a function
    ``(size, batch) -> raw batch`` as the setting's dataloader would yield it."""
    config: str
    title: str
    make_batch: Callable[[int, int], dict]


def detection_batch(size: int, batch: int, seed: int = 0) -> dict:
    """Random images with two ground-truth boxes each, as a detection dataloader yields them.

    Args:
        size (int): Image height and width.
        batch (int): Images in the batch.
        seed (int): Seed of the pixels.

    Returns:
        dict: ``inputs`` (uint8 images) and ``data_samples`` (``DetDataSample`` s).
    """
    import torch
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData
    g = torch.Generator().manual_seed(seed)
    inputs, samples = [], []
    for _ in range(batch):
        inputs.append(torch.randint(0, 255, (3, size, size), generator=g, dtype=torch.uint8))
        sample = DetDataSample(
            metainfo=dict(img_shape=(size, size), ori_shape=(size, size), scale_factor=(1.0, 1.0)))
        sample.gt_instances = InstanceData(
            bboxes=torch.tensor([[10., 20., 120., 160.], [150., 40., 300., 250.]]),
            labels=torch.tensor([0, 2]))
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


def segmentation_batch(size: int, batch: int, seed: int = 0, num_classes: int = 19) -> dict:
    """Random images with random label maps (a tenth of the pixels ignored, 255), as a
    segmentation dataloader yields them.

    Args:
        size (int): Image height and width.
        batch (int): Images in the batch.
        seed (int): Seed of the pixels and labels.
        num_classes (int): Classes of the labels (Cityscapes: 19).

    Returns:
        dict: ``inputs`` (uint8 images) and ``data_samples`` (``SegDataSample`` s).
    """
    import torch
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    g = torch.Generator().manual_seed(seed)
    inputs, samples = [], []
    for _ in range(batch):
        inputs.append(torch.randint(0, 255, (3, size, size), generator=g, dtype=torch.uint8))
        labels = torch.randint(0, num_classes, (1, size, size), generator=g)
        labels[torch.rand(1, size, size, generator=g) < 0.1] = 255
        sample = SegDataSample(
            metainfo=dict(
                img_shape=(size, size),
                ori_shape=(size, size),
                pad_shape=(size, size),
                scale_factor=(1.0, 1.0)))
        sample.gt_sem_seg = PixelData(data=labels)
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


#: ``{task: setting}``; ``task`` is also the task family whose recommended weighting the
#: benchmarks' recommended row builds (``mmtkd.benchmark.recommended.recommended_weighting``)
STEP_SETTINGS: Dict[str, StepSetting] = {
    'detection':
    StepSetting(
        osp.join(CONFIGS, 'retinanet_r18_3teachers.py'),
        'RetinaNet-R18 student, R50/R101/X101-32x4d teachers', detection_batch),
    'segmentation':
    StepSetting(
        osp.join(CONFIGS, 'deeplabv3_r18-d8_3teachers_cityscapes.py'),
        'DeepLabV3-R18-D8 student, DeepLabV3/PSPNet/DeepLabV3+ R101-D8 teachers',
        segmentation_batch),
}


def step_config(task: str, size: int) -> Config:
    """The shipped config of ``task``'s setting, its images padded to ``size`` x ``size``.

    mmseg's data preprocessor pads every batch to the recipe's crop (512 x 1024 for
    Cityscapes); the benchmark's square input of ``--size`` replaces it, as mmdet's RetinaNet
    recipe pads to the batch's own size.

    Args:
        task (str): A :data:`STEP_SETTINGS` key.
        size (int): The benchmark's image size.

    Returns:
        Config: The config (teacher checkpoints still the recipe's).
    """
    cfg = Config.fromfile(STEP_SETTINGS[task].config)
    preprocessor = cfg.model.student.get('data_preprocessor')
    if preprocessor is not None and preprocessor.get('size') is not None:
        preprocessor.size = (size, size)
    return cfg
