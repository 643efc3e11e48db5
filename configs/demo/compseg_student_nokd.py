# The segmentation demo student trained alone (no distillation): an FCN on a narrow
# ResNetV1c-18 (output stride 16), the reference row of the table.
_base_ = ['mmseg::_base_/models/fcn_r50-d8.py', './_base_/composite_segmentation.py']
norm_cfg = dict(type='BN', requires_grad=True)
# sized for 128x128 images on a CPU; 11 classes; BN, not the stock SyncBN (one process); no
# ImageNet weights (none can be downloaded here)
model = dict(
    data_preprocessor=dict(size=(128, 128)),
    pretrained=None,
    backbone=dict(depth=18, stem_channels=16, base_channels=16, dilations=(1, 1, 1, 2),
                  strides=(1, 2, 2, 1), norm_cfg=norm_cfg),
    decode_head=dict(in_channels=128, channels=32, num_convs=1, num_classes=11,
                     norm_cfg=norm_cfg,
                     loss_decode=dict(class_weight={{_base_.class_weight}})),
    auxiliary_head=None)

# students train half as long as the teachers (6 epochs), as in the other demo tasks
train_cfg = dict(max_epochs=3, val_interval=3)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=100),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=0, end=3, T_max=3)
]
