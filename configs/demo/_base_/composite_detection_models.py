# Demo detectors for 128x128 composite images: RetinaNets with three teacher backbones of
# different architectures and a narrow ResNet-18 student. All share the FPN strides (8, 16, 32),
# the anchor layout and the class count, which multi-teacher dense KD needs.
def _retinanet(backbone, in_channels):
    return dict(
        type='RetinaNet',
        data_preprocessor=dict(type='DetDataPreprocessor', mean=[123.675, 116.28, 103.53],
                               std=[58.395, 57.12, 57.375], bgr_to_rgb=True,
                               pad_size_divisor=32),
        backbone=backbone,
        neck=dict(type='FPN', in_channels=in_channels, out_channels=64, start_level=1,
                  add_extra_convs=False, num_outs=3),
        bbox_head=dict(
            type='RetinaHead',
            num_classes=10,
            in_channels=64,
            stacked_convs=2,
            feat_channels=64,
            # objects are 15-60 px: anchors of 16-90 px on strides 8 / 16 / 32
            anchor_generator=dict(type='AnchorGenerator', octave_base_scale=2,
                                  scales_per_octave=2, ratios=[0.5, 1.0, 2.0],
                                  strides=[8, 16, 32]),
            bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[.0, .0, .0, .0],
                            target_stds=[1.0, 1.0, 1.0, 1.0]),
            loss_cls=dict(type='FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25,
                          loss_weight=1.0),
            loss_bbox=dict(type='L1Loss', loss_weight=1.0)),
        train_cfg=dict(
            assigner=dict(type='MaxIoUAssigner', pos_iou_thr=0.5, neg_iou_thr=0.4,
                          min_pos_iou=0, ignore_iof_thr=-1),
            sampler=dict(type='PseudoSampler'),
            allowed_border=-1,
            pos_weight=-1,
            debug=False),
        test_cfg=dict(nms_pre=1000, min_bbox_size=0, score_thr=0.05,
                      nms=dict(type='nms', iou_threshold=0.5), max_per_img=100))


def _resnet(depth, base_channels):
    return dict(type='ResNet', depth=depth, base_channels=base_channels, num_stages=4,
                out_indices=(0, 1, 2, 3), norm_cfg=dict(type='BN', requires_grad=True),
                norm_eval=False, style='pytorch')


teacher_res34 = _retinanet(_resnet(34, 32), [32, 64, 128, 256])
teacher_res18 = _retinanet(_resnet(18, 32), [32, 64, 128, 256])
teacher_regnetx = _retinanet(
    dict(type='RegNet', arch='regnetx_400mf', out_indices=(0, 1, 2, 3),
         norm_cfg=dict(type='BN', requires_grad=True), norm_eval=False),
    [32, 64, 160, 384])
student_res18 = _retinanet(_resnet(18, 16), [16, 32, 64, 128])
