# Demo segmentation teacher: PSPNet on a ResNetV1c-18 (output stride 16), with mmseg's
# auxiliary FCN head, trained on the composite set by tools/demo.py --task segmentation.
_base_ = ['mmseg::_base_/models/pspnet_r50-d8.py', './_base_/composite_segmentation.py']
norm_cfg = dict(type='BN', requires_grad=True)
# sized for 128x128 images on a CPU; 11 classes; BN, not the stock SyncBN (one process); no
# ImageNet weights (none can be downloaded here)
model = dict(
    data_preprocessor=dict(size=(128, 128)),
    pretrained=None,
    backbone=dict(depth=18, stem_channels=24, base_channels=24, dilations=(1, 1, 1, 2),
                  strides=(1, 2, 2, 1), norm_cfg=norm_cfg),
    decode_head=dict(in_channels=192, channels=48, num_classes=11, norm_cfg=norm_cfg,
                     loss_decode=dict(class_weight={{_base_.class_weight}})),
    auxiliary_head=dict(in_channels=96, channels=24, num_classes=11, norm_cfg=norm_cfg,
                        loss_decode=dict(class_weight={{_base_.class_weight}})))
