# MTKD-RL on the composite detection set: narrow RetinaNet-R18 student, three RetinaNet teachers
# with different backbones whose checkpoints tools/demo.py writes to work_dirs/demo/teachers/.
_base_ = ['./composite_student_nokd.py']  # the student alone: data, schedule, runtime
custom_imports = dict(imports=['mmtkd'], allow_failed_imports=False)

teacher_dir = 'work_dirs/demo/teachers/'
model = dict(
    _delete_=True,  # the student alone becomes the distiller's student
    type='mmtkd.MultiTeacherDistiller',
    student={{_base_.student_res18}},
    teachers=dict(
        res18=dict(config={{_base_.teacher_res18}},
                   checkpoint=teacher_dir + 'composite_res18.pth'),
        res34=dict(config={{_base_.teacher_res34}},
                   checkpoint=teacher_dir + 'composite_res34.pth'),
        regnetx=dict(config={{_base_.teacher_regnetx}},
                     checkpoint=teacher_dir + 'composite_regnetx.pth')),
    weighting=dict(type='mmtkd.MTKDRLWeighting', warmup_epochs=1, interval=50,
                   normalize_state=True),
    logit_kd_loss=dict(type='mmtkd.SigmoidKLDivLoss', temperature=1.0),
    feature_kd_loss=dict(type='mmtkd.FeatureMSELoss'),
    adapt_equal_channels=False,
    alpha=1.0,
    beta=5.0,
    probe_input_shape=(3, 128, 128))
custom_hooks = [dict(type='mmtkd.MTKDRLAgentHook'), dict(type='mmtkd.StudentExportHook')]
