# MTKD-RL on the composite segmentation set: a narrow FCN-R18 student distilled from three
# teachers of different families (PSPNet-R18 with an auxiliary head, DeepLabV3-R34, SegFormer
# on MiT) whose checkpoints tools/demo.py --task segmentation writes to work_dirs/demo/teachers/.
# Pixel-wise KD on the decode-head logits (the SegFormer's stride-4 logits are resized to the
# student's stride 16), feature KD on the last backbone stage through connectors (other channel
# counts and strides).
_base_ = ['./compseg_student_nokd.py']  # the student alone: data, schedule, runtime
custom_imports = dict(imports=['mmtkd'], allow_failed_imports=False)

teacher_dir = 'work_dirs/demo/teachers/'
model = dict(
    _delete_=True,  # the student alone becomes the distiller's student
    type='mmtkd.MultiTeacherDistiller',
    student={{_base_.model}},
    teachers=dict(
        pspnet=dict(config='{{ fileDirname }}/compseg_teacher_pspnet.py',
                    checkpoint=teacher_dir + 'compseg_pspnet.pth'),
        deeplabv3=dict(config='{{ fileDirname }}/compseg_teacher_deeplabv3.py',
                       checkpoint=teacher_dir + 'compseg_deeplabv3.pth'),
        segformer=dict(config='{{ fileDirname }}/compseg_teacher_segformer.py',
                       checkpoint=teacher_dir + 'compseg_segformer.pth')),
    weighting=dict(type='mmtkd.MTKDRLWeighting', warmup_epochs=1, interval=50,
                   normalize_state=True),
    logit_kd_loss=dict(type='mmtkd.LogitKLDivLoss', temperature=1.0),
    feature_kd_loss=dict(type='mmtkd.FeatureMSELoss'),
    alpha=1.0,
    beta=5.0,
    probe_input_shape=(3, 128, 128))
custom_hooks = [dict(type='mmtkd.MTKDRLAgentHook'), dict(type='mmtkd.StudentExportHook')]
