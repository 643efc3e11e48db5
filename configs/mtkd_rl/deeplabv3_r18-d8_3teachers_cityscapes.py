# MTKD-RL on Cityscapes (512x1024, 80k iterations): DeepLabV3-R18-D8 student distilled from
# DeepLabV3-R101-D8, PSPNet-R101-D8 and DeepLabV3+-R101-D8 teachers of the mmseg model zoo.
# Data, schedule and runtime are the stock mmseg recipe (4 GPUs x 2 images).
_base_ = ['mmseg::deeplabv3/deeplabv3_r18-d8_4xb2-80k_cityscapes-512x1024.py']
custom_imports = dict(imports=['mmtkd'], allow_failed_imports=False)

_zoo = 'https://download.openmmlab.com/mmsegmentation/v0.5/'
model = dict(
    _delete_=True,
    type='mmtkd.MultiTeacherDistiller',
    student={{_base_.model}},
    teachers=dict(
        deeplabv3_r101=dict(
            config='mmseg::deeplabv3/deeplabv3_r101-d8_4xb2-80k_cityscapes-512x1024.py',
            checkpoint=_zoo + 'deeplabv3/deeplabv3_r101-d8_512x1024_80k_cityscapes/'
            'deeplabv3_r101-d8_512x1024_80k_cityscapes_20200606_113503-9e428899.pth'),
        pspnet_r101=dict(
            config='mmseg::pspnet/pspnet_r101-d8_4xb2-80k_cityscapes-512x1024.py',
            checkpoint=_zoo + 'pspnet/pspnet_r101-d8_512x1024_80k_cityscapes/'
            'pspnet_r101-d8_512x1024_80k_cityscapes_20200606_112211-e1e1100f.pth'),
        deeplabv3plus_r101=dict(
            config='mmseg::deeplabv3plus/deeplabv3plus_r101-d8_4xb2-80k_cityscapes-512x1024.py',
            checkpoint=_zoo + 'deeplabv3plus/deeplabv3plus_r101-d8_512x1024_80k_cityscapes/'
            'deeplabv3plus_r101-d8_512x1024_80k_cityscapes_20200606_114143-068fcfe9.pth'),
    ),
    # iteration-based schedule: warm-up and agent interval in iterations; dense-task states are
    # normalised (running mean / std) before the agent sees them
    weighting=dict(
        type='mmtkd.MTKDRLWeighting', warmup_iters=2000, interval=1000, normalize_state=True),
    # pixel-wise KD (CIRKD): per-pixel KL at T, x T^2, averaged over valid pixels of the image;
    # use dict(type='mmtkd.ChannelWiseDivergenceLoss', temperature=4.0) for CWD instead
    logit_kd_loss=dict(type='mmtkd.LogitKLDivLoss', temperature=1.0),
    feature_kd_loss=dict(type='mmtkd.FeatureMSELoss'),
    alpha=1.0,
    beta=5.0)

custom_hooks = [dict(type='mmtkd.MTKDRLAgentHook'), dict(type='mmtkd.StudentExportHook')]
