"""The mmseg EncoderDecoder families a user would pick, built from their stock configs, each as
the student and as a teacher of another family in one pool: features of other channel counts
and strides go through the connectors, logits of another stride are resized, the auxiliary
heads keep their losses, and one step trains the student only (pixel KL and channel-wise KD)."""
import pytest
import torch
from mmengine.registry import MODELS
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample

from mmtkd.engine import AgentLearner
from mmtkd.testing import save_model_checkpoint, stock_model

NUM_CLASSES = 19
#: family -> stock mmseg config (the R18 variants of the Cityscapes recipes, MiT-B0 SegFormer)
FAMILIES = {
    'fcn': 'mmseg::fcn/fcn_r18-d8_4xb2-80k_cityscapes-512x1024.py',
    'pspnet': 'mmseg::pspnet/pspnet_r18-d8_4xb2-80k_cityscapes-512x1024.py',
    'deeplabv3': 'mmseg::deeplabv3/deeplabv3_r18-d8_4xb2-80k_cityscapes-512x1024.py',
    'deeplabv3plus': 'mmseg::deeplabv3plus/deeplabv3plus_r18-d8_4xb2-80k_cityscapes-512x1024.py',
    'segformer': 'mmseg::segformer/segformer_mit-b0_8xb2-160k_ade20k-512x512.py',
}
NAMES = list(FAMILIES)
SIZE = 32


def family_model(name: str) -> dict:
    """The stock model of ``name`` for 32x32 inputs on one CPU process (BN, no pretrained
    weights, 19 classes)."""
    model = stock_model(FAMILIES[name])
    model.data_preprocessor.size = (SIZE, SIZE)
    for part in (model.get('backbone'), model.decode_head, model.get('auxiliary_head')):
        if part is not None and 'norm_cfg' in part:
            part.norm_cfg = dict(type='BN', requires_grad=True)
    model.decode_head.num_classes = NUM_CLASSES
    if model.get('auxiliary_head'):
        model.auxiliary_head.num_classes = NUM_CLASSES
    return model


def labelled_batch(batch: int = 2):
    torch.manual_seed(0)
    samples = []
    for _ in range(batch):
        s = SegDataSample(gt_sem_seg=PixelData(data=torch.randint(0, NUM_CLASSES, (1, SIZE, SIZE))))
        s.set_metainfo(dict(img_shape=(SIZE, SIZE), pad_shape=(SIZE, SIZE), ori_shape=(SIZE, SIZE)))
        samples.append(s)
    return torch.rand(batch, 3, SIZE, SIZE) * 255, samples


@pytest.fixture(scope='module')
def checkpoints(tmp_path_factory):
    folder = tmp_path_factory.mktemp('families')
    return {
        name: save_model_checkpoint(family_model(name), str(folder / f'{name}.pth'), seed=i)
        for i, name in enumerate(NAMES)
    }


# every family once as the student, with the next two families (cyclically) as its teachers:
# every family is also a teacher twice, ResNet students learn from the SegFormer's MiT (other
# channels, stride-4 logits) and the SegFormer student from ResNet-D8 teachers
POOLS = [(NAMES[i], (NAMES[(i + 1) % 5], NAMES[(i + 2) % 5])) for i in range(5)]
# pixel-wise KL on every pool; channel-wise KD (CWD) on two (it shares every other code path)
CASES = [(s, t, 'pixel_kl')
         for s, t in POOLS] + [(s, t, 'cwd')
                               for s, t in POOLS if s in ('deeplabv3plus', 'segformer')]


@pytest.mark.parametrize(
    'student,teachers,logit_kd', CASES, ids=[f'{s}-{kd}' for s, _, kd in CASES])
def test_family_distils_from_other_families(checkpoints, student, teachers, logit_kd):
    loss = dict(
        pixel_kl=dict(type='mmtkd.LogitKLDivLoss', temperature=1.0),
        cwd=dict(type='mmtkd.ChannelWiseDivergenceLoss', temperature=4.0))[logit_kd]
    distiller = MODELS.build(
        dict(
            type='mmtkd.MultiTeacherDistiller',
            student=family_model(student),
            teachers={t: dict(config=family_model(t), checkpoint=checkpoints[t])
                      for t in teachers},
            weighting=dict(type='mmtkd.MTKDRLWeighting', warmup_iters=0),
            logit_kd_loss=loss,
            feature_kd_loss=dict(type='mmtkd.FeatureMSELoss'),
            probe_input_shape=(3, SIZE, SIZE))).train()
    AgentLearner.attach_to(distiller)  # as MTKDRLAgentHook does
    data = distiller.data_preprocessor(
        dict(zip(('inputs', 'data_samples'), labelled_batch())), training=True)
    losses = distiller(**data, mode='loss')
    assert losses['loss_logit_kd'] > 0 and losses['loss_feat_kd'] > 0
    assert 'decode.loss_ce' in losses
    if distiller.student.with_auxiliary_head:
        assert 'aux.loss_ce' in losses  # the student's auxiliary head keeps its loss
    total = sum(v for k, v in losses.items() if 'loss' in k)
    assert torch.isfinite(total)
    total.backward()
    student_grads = [p.grad for p in distiller.student.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in student_grads)
    assert all(p.grad is None for p in distiller.teachers.parameters())
    # the connectors learn too: they map the student's features to each teacher's
    assert all(p.grad is not None for p in distiller.connectors.parameters())
