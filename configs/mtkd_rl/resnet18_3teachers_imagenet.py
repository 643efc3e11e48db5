# MTKD-RL on ImageNet-1k: ResNet-18 student, ResNet-34 / 50 / 101 teachers from the mmpretrain
# model zoo. Everything else (data, schedule, runtime) is the stock mmpretrain recipe.
_base_ = ['mmpretrain::resnet/resnet18_8xb32_in1k.py']
custom_imports = dict(imports=['mmtkd'], allow_failed_imports=False)

_zoo = 'https://download.openmmlab.com/mmclassification/v0/resnet/'
model = dict(
    _delete_=True,
    type='mmtkd.MultiTeacherDistiller',
    student={{_base_.model}},
    teachers=dict(
        res34=dict(
            config='mmpretrain::resnet/resnet34_8xb32_in1k.py',
            checkpoint=_zoo + 'resnet34_8xb32_in1k_20210831-f257d4e6.pth'),
        res50=dict(
            config='mmpretrain::resnet/resnet50_8xb32_in1k.py',
            checkpoint=_zoo + 'resnet50_8xb32_in1k_20210831-ea4938fc.pth'),
        res101=dict(
            config='mmpretrain::resnet/resnet101_8xb32_in1k.py',
            checkpoint=_zoo + 'resnet101_8xb32_in1k_20210831-539c63f8.pth'),
    ),
    weighting=dict(type='mmtkd.MTKDRLWeighting'),
    logit_kd_loss=dict(type='mmtkd.LogitKLDivLoss', temperature=4.0),
    feature_kd_loss=dict(type='mmtkd.FeatureMSELoss'),
    alpha=1.0,
    beta=5.0)

# Trains the agent (every 1000 iterations and at each epoch end) and logs the teacher weights.
custom_hooks = [dict(type='mmtkd.MTKDRLAgentHook')]
