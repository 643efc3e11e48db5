# MTKD-RL on Fashion-MNIST: ResNet-18 (width 8) student, three demo teachers of different
# architectures whose checkpoints tools/demo.py writes to work_dirs/demo/teachers/.
_base_ = ['./fmnist_student_nokd.py']  # the student alone: data, schedule, runtime
custom_imports = dict(imports=['mmtkd'], allow_failed_imports=False)

teacher_dir = 'work_dirs/demo/teachers/'
model = dict(
    _delete_=True,  # the student alone becomes the distiller's student
    type='mmtkd.MultiTeacherDistiller',
    student={{_base_.student_res18}},
    teachers=dict(
        res18=dict(config={{_base_.teacher_res18}},
                   checkpoint=teacher_dir + 'fmnist_res18.pth'),
        res34=dict(config={{_base_.teacher_res34}},
                   checkpoint=teacher_dir + 'fmnist_res34.pth'),
        regnetx=dict(config={{_base_.teacher_regnetx}},
                     checkpoint=teacher_dir + 'fmnist_regnetx.pth')),
    weighting=dict(type='mmtkd.MTKDRLWeighting', warmup_epochs=1, interval=100),
    logit_kd_loss=dict(type='mmtkd.LogitKLDivLoss', temperature=4.0),
    feature_kd_loss=dict(type='mmtkd.FeatureMSELoss'),
    alpha=1.0,
    beta=5.0,
    probe_input_shape=(1, 28, 28))
custom_hooks = [dict(type='mmtkd.MTKDRLAgentHook')]
