# The DINO student alone: the stock 12-epoch DINO-4scale recipe with a ResNet-18 backbone
# (ImageNet-pretrained, as the recipe's R50) instead of a ResNet-50. mmdet ships no R18 DINO, so
# this is also the no-KD baseline of configs/mtkd_rl/dino-4scale_r18_3teachers_coco.py.
_base_ = ['mmdet::dino/dino-4scale_r50_8xb2-12e_coco.py']

model = dict(
    backbone=dict(depth=18, init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet18')),
    # ResNet-18's stages 2-4 give 128 / 256 / 512 channels (ResNet-50's: 512 / 1024 / 2048)
    neck=dict(in_channels=[128, 256, 512]))
