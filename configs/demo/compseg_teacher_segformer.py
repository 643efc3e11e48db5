# Demo segmentation teacher: SegFormer on a MiT backbone (a transformer; features of other
# channel counts and strides than the ResNet student's), trained on the composite set by
# tools/demo.py --task segmentation.
_base_ = ['mmseg::_base_/models/segformer_mit-b0.py', './_base_/composite_segmentation.py']
norm_cfg = dict(type='BN', requires_grad=True)
# sized for 128x128 images on a CPU; 11 classes; BN, not the stock SyncBN (one process); no
# ImageNet weights (none can be downloaded here)
model = dict(
    data_preprocessor=dict(size=(128, 128)),
    backbone=dict(embed_dims=16, num_heads=[1, 2, 5, 8], drop_path_rate=0.0),
    decode_head=dict(in_channels=[16, 32, 80, 128], channels=64, num_classes=11,
                     norm_cfg=norm_cfg,
                     loss_decode=dict(class_weight={{_base_.class_weight}})))
