# MTKD-RL on COCO 2017 for query-based detectors: a DINO-4scale R18 student distilled from two
# DINO-4scale R50 teachers (12 epochs, box AP 49.0; the "improved" recipe, 50.1) and a Deformable
# DETR R50 (box refinement, two-stage, 47.0) of the mmdet model zoo: two DETR families in one
# pool. Data, schedule and runtime are the stock DINO recipe (8 GPUs x 2 images, 12 epochs);
# `tools/dist_train.sh THIS_CONFIG 8`.
_base_ = ['./_base_/dino-4scale_r18_8xb2-12e_coco.py']
custom_imports = dict(imports=['mmtkd'], allow_failed_imports=False)

_zoo = 'https://download.openmmlab.com/mmdetection/v3.0/'
model = dict(
    _delete_=True,
    type='mmtkd.MultiTeacherDistiller',
    student={{_base_.model}},
    teachers=dict(
        dino_r50=dict(
            config='mmdet::dino/dino-4scale_r50_8xb2-12e_coco.py',
            checkpoint=_zoo + 'dino/dino-4scale_r50_8xb2-12e_coco/'
            'dino-4scale_r50_8xb2-12e_coco_20221202_182705-55b2bba2.pth'),
        dino_r50_improved=dict(
            config='mmdet::dino/dino-4scale_r50_improved_8xb2-12e_coco.py',
            checkpoint=_zoo + 'dino/dino-4scale_r50_improved_8xb2-12e_coco/'
            'dino-4scale_r50_improved_8xb2-12e_coco_20230818_162607-6f47a913.pth'),
        deformable_r50=dict(
            config='mmdet::deformable_detr/deformable-detr-refine-twostage_r50_16xb2-50e_coco.py',
            checkpoint=_zoo + 'deformable_detr/deformable-detr-refine-twostage_r50_16xb2-50e_coco/'
            'deformable-detr-refine-twostage_r50_16xb2-50e_coco_20221021_184714-acc8a5ff.pth'),
    ),
    weighting=dict(
        type='mmtkd.MTKDRLWeighting', warmup_epochs=1, interval=1000, normalize_state=True),
    # query-level KD: each student query of the last decoder layer matched one-to-one to a
    # teacher query by their boxes (DETR's L1 + GIoU costs), sigmoid KL of the matched class
    # scores; DINO's denoising queries are left out (DETRDetectionTask, docs)
    logit_kd_loss=dict(type='mmtkd.SigmoidKLDivLoss', temperature=1.0),
    # feature KD on the four neck levels; every neck has 256 channels, so no adapter is needed
    feature_kd_loss=dict(type='mmtkd.FeatureMSELoss'),
    adapt_equal_channels=False,
    alpha=1.0,
    beta=5.0)

custom_hooks = [dict(type='mmtkd.MTKDRLAgentHook'), dict(type='mmtkd.StudentExportHook')]
