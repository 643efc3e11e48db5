# Demo segmentation teacher: DeepLabV3 (ASPP) on a ResNetV1c-34 (output stride 16), without
# the auxiliary head, trained on the composite set by tools/demo.py --task segmentation.
_base_ = ['mmseg::_base_/models/deeplabv3_r50-d8.py', './_base_/composite_segmentation.py']
norm_cfg = dict(type='BN', requires_grad=True)
# sized for 128x128 images on a CPU; 11 classes; BN, not the stock SyncBN (one process); no
# ImageNet weights (none can be downloaded here)
model = dict(
    data_preprocessor=dict(size=(128, 128)),
    pretrained=None,
    backbone=dict(depth=34, stem_channels=16, base_channels=16, dilations=(1, 1, 1, 2),
                  strides=(1, 2, 2, 1), norm_cfg=norm_cfg),
    # ASPP rates for an 8x8 feature map (the stock 12 / 24 / 36 are for 64x128)
    decode_head=dict(in_channels=128, channels=48, dilations=(1, 2, 4, 6), num_classes=11,
                     norm_cfg=norm_cfg,
                     loss_decode=dict(class_weight={{_base_.class_weight}})),
    auxiliary_head=None)
