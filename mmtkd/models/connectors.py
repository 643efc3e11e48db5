"""Student -> teacher feature adapters."""
from typing import Sequence

import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import ConvModule
from torch import Tensor

from mmtkd.registry import MODELS


def resize_to(feat: Tensor, size: Sequence[int]) -> Tensor:
    """Resize a (B, C, H, W) map to ``size``: adaptive average pooling when it shrinks along both
    axes, bilinear interpolation otherwise; a no-op when sizes already match.

    Args:
        feat (Tensor): Feature map of shape (B, C, H, W).
        size (Sequence[int]): Target ``(H, W)``.

    Returns:
        Tensor: Shape (B, C, *size).
    """
    size = tuple(size)
    if tuple(feat.shape[-2:]) == size:
        return feat
    if feat.shape[-2] >= size[0] and feat.shape[-1] >= size[1]:
        return F.adaptive_avg_pool2d(feat, size)
    return F.interpolate(feat, size=size, mode='bilinear', align_corners=False)


@MODELS.register_module()
class FeatureAdapter(nn.Module):
    """Map a student feature map to a teacher's shape: resize, then 1x1 conv + BN + ReLU.

    This is the official MTKD-RL adapter ``g_m``; it is trained together with the student.

    Args:
        in_channels (int): Student channels.
        out_channels (int): Teacher channels.
        norm_cfg (dict): Normalisation layer. Defaults to ``dict(type='BN')``.
        act_cfg (dict, optional): Activation. Defaults to ``dict(type='ReLU')``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        norm_cfg: dict = dict(type='BN'),
        act_cfg: dict = dict(type='ReLU')) -> None:
        super().__init__()
        self.conv = ConvModule(in_channels, out_channels, 1, norm_cfg=norm_cfg, act_cfg=act_cfg)

    def forward(self, student_feat: Tensor, target_size: Sequence[int]) -> Tensor:
        """Adapt ``student_feat`` to ``(out_channels, *target_size)``.

        Args:
            student_feat (Tensor): Shape (B, C_s, H_s, W_s).
            target_size (Sequence[int]): The teacher's ``(H, W)``.

        Returns:
            Tensor: Shape (B, C_t, H, W).
        """
        return self.conv(resize_to(student_feat, target_size))


@MODELS.register_module()
class ResizeOnlyAdapter(nn.Module):
    """Parameter-free adapter for teachers whose feature channels equal the student's.

    Args:
        in_channels (int): Student channels (must equal ``out_channels``).
        out_channels (int): Teacher channels.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        if in_channels != out_channels:
            raise ValueError(f'ResizeOnlyAdapter needs equal channels, got {in_channels} -> '
                             f'{out_channels}; use FeatureAdapter')

    def forward(self, student_feat: Tensor, target_size: Sequence[int]) -> Tensor:
        """Resize ``student_feat`` to ``target_size``.

        Args:
            student_feat (Tensor): Shape (B, C, H_s, W_s).
            target_size (Sequence[int]): The teacher's ``(H, W)``.

        Returns:
            Tensor: Shape (B, C, H, W).
        """
        return resize_to(student_feat, target_size)
