# MTKD-RL on the tree-crown set: narrow RetinaNet-R18 student, three one-class RetinaNet teachers
# with different backbones whose checkpoints `tools/demo.py --task trees` writes to
# work_dirs/demo/teachers/.
_base_ = ['./_base_/tree_crowns_detection.py', './_base_/tree_crowns_detection_models.py']
custom_imports = dict(imports=['mmtkd'], allow_failed_imports=False)

teacher_dir = 'work_dirs/demo/teachers/'
model = dict(
    type='mmtkd.MultiTeacherDistiller',
    student={{_base_.student_res18}},
    teachers=dict(
        res18=dict(config={{_base_.teacher_res18}}, checkpoint=teacher_dir + 'trees_res18.pth'),
        res34=dict(config={{_base_.teacher_res34}}, checkpoint=teacher_dir + 'trees_res34.pth'),
        regnetx=dict(config={{_base_.teacher_regnetx}},
                     checkpoint=teacher_dir + 'trees_regnetx.pth')),
    # 6 iterations per epoch: the agent warms up for 10 epochs, then updates at every epoch end
    # (and every 30 iterations)
    weighting=dict(type='mmtkd.MTKDRLWeighting', warmup_epochs=10, interval=30,
                   normalize_state=True),
    logit_kd_loss=dict(type='mmtkd.SigmoidKLDivLoss', temperature=1.0),
    feature_kd_loss=dict(type='mmtkd.FeatureMSELoss'),
    adapt_equal_channels=False,
    alpha=1.0,
    beta=5.0,
    probe_input_shape=(3, 256, 256))
train_cfg = dict(max_epochs=40, val_interval=40)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=30),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=0, end=40, T_max=40)
]
custom_hooks = [dict(type='mmtkd.MTKDRLAgentHook'), dict(type='mmtkd.StudentExportHook')]
