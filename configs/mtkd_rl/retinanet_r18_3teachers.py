# MTKD-RL on COCO 2017: RetinaNet-R18-FPN student distilled from RetinaNet R50 / R101 /
# X101-32x4d teachers of the mmdet model zoo. Data, schedule and runtime are the stock mmdet
# recipe (8 GPUs x 2 images); `tools/dist_train.sh THIS_CONFIG 8`.
_base_ = ['mmdet::retinanet/retinanet_r18_fpn_1x_coco.py']
custom_imports = dict(imports=['mmtkd'], allow_failed_imports=False)

_zoo = 'https://download.openmmlab.com/mmdetection/v2.0/retinanet/'
model = dict(
    _delete_=True,
    type='mmtkd.MultiTeacherDistiller',
    student={{_base_.model}},
    teachers=dict(
        r50=dict(
            config='mmdet::retinanet/retinanet_r50_fpn_1x_coco.py',
            checkpoint=_zoo + 'retinanet_r50_fpn_1x_coco/'
            'retinanet_r50_fpn_1x_coco_20200130-c2398f9e.pth'),
        r101=dict(
            config='mmdet::retinanet/retinanet_r101_fpn_1x_coco.py',
            checkpoint=_zoo + 'retinanet_r101_fpn_1x_coco/'
            'retinanet_r101_fpn_1x_coco_20200130-7a93545f.pth'),
        x101=dict(
            config='mmdet::retinanet/retinanet_x101-32x4d_fpn_1x_coco.py',
            checkpoint=_zoo + 'retinanet_x101_32x4d_fpn_1x_coco/'
            'retinanet_x101_32x4d_fpn_1x_coco_20200130-5c8b7ec4.pth'),
    ),
    # dense-task states mix detection losses, scores and FPN embeddings of very different
    # scales: normalise them (running mean / std) before the agent sees them
    weighting=dict(
        type='mmtkd.MTKDRLWeighting', warmup_epochs=1, interval=1000, normalize_state=True),
    # per-anchor sigmoid KD, summed over classes, averaged over the image's anchors
    logit_kd_loss=dict(type='mmtkd.SigmoidKLDivLoss', temperature=1.0),
    # feature KD on every FPN level; all FPNs have 256 channels, so no adapter is needed
    feature_kd_loss=dict(type='mmtkd.FeatureMSELoss'),
    adapt_equal_channels=False,
    alpha=1.0,
    beta=5.0)

custom_hooks = [dict(type='mmtkd.MTKDRLAgentHook'), dict(type='mmtkd.StudentExportHook')]
