# MTKD-RL on COCO 2017 for a two-stage detector: Faster R-CNN R50-FPN student distilled from
# Faster R-CNN R101 / X101-32x4d / X101-64x4d teachers of the mmdet model zoo (box AP 39.4 /
# 41.2 / 42.1 against the student's 37.4 when trained alone). Data, schedule and runtime are the
# stock mmdet recipe (8 GPUs x 2 images); `tools/dist_train.sh THIS_CONFIG 8`.
_base_ = ['mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py']
custom_imports = dict(imports=['mmtkd'], allow_failed_imports=False)

_zoo = 'https://download.openmmlab.com/mmdetection/v2.0/faster_rcnn/'
model = dict(
    _delete_=True,
    type='mmtkd.MultiTeacherDistiller',
    student={{_base_.model}},
    teachers=dict(
        r101=dict(
            config='mmdet::faster_rcnn/faster-rcnn_r101_fpn_1x_coco.py',
            checkpoint=_zoo + 'faster_rcnn_r101_fpn_1x_coco/'
            'faster_rcnn_r101_fpn_1x_coco_20200130-f513f705.pth'),
        x101_32x4d=dict(
            config='mmdet::faster_rcnn/faster-rcnn_x101-32x4d_fpn_1x_coco.py',
            checkpoint=_zoo + 'faster_rcnn_x101_32x4d_fpn_1x_coco/'
            'faster_rcnn_x101_32x4d_fpn_1x_coco_20200203-cff10310.pth'),
        x101_64x4d=dict(
            config='mmdet::faster_rcnn/faster-rcnn_x101-64x4d_fpn_1x_coco.py',
            checkpoint=_zoo + 'faster_rcnn_x101_64x4d_fpn_1x_coco/'
            'faster_rcnn_x101_64x4d_fpn_1x_coco_20200204-833ee192.pth'),
    ),
    weighting=dict(
        type='mmtkd.MTKDRLWeighting', warmup_epochs=1, interval=1000, normalize_state=True),
    # RoI classification KD (softmax KL over the 80 classes and background) with the teachers'
    # RoI heads run on the student's sampled proposals, plus RPN objectness KD per anchor
    task=dict(type='TwoStageDetectionTask', rpn_weight=1.0, roi_weight=1.0),
    logit_kd_loss=dict(type='mmtkd.LogitKLDivLoss', temperature=1.0),
    # feature KD on every FPN level; all FPNs have 256 channels, so no adapter is needed
    feature_kd_loss=dict(type='mmtkd.FeatureMSELoss'),
    adapt_equal_channels=False,
    alpha=1.0,
    beta=5.0)

custom_hooks = [dict(type='mmtkd.MTKDRLAgentHook'), dict(type='mmtkd.StudentExportHook')]
