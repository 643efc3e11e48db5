"""The shipped ImageNet configs build offline (stock mmpretrain configs, teacher checkpoints
written by the test) and take one real training step; vision transformers and CNNs in one pool."""
import glob
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import MODELS
from mmpretrain.structures import DataSample

from mmtkd.engine import AgentLearner
from mmtkd.testing import offline_distiller_cfg, save_model_checkpoint, stock_model

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIGS = sorted(glob.glob(osp.join(ROOT, 'configs', '*', 'resnet18_3teachers_imagenet*.py')))


@pytest.mark.parametrize('config', CONFIGS, ids=osp.basename)
def test_imagenet_config_builds_offline_and_trains_one_step(config, tmp_path_factory):
    cfg = Config.fromfile(config)
    assert cfg.model.type == 'mmtkd.MultiTeacherDistiller'
    assert set(cfg.model.teachers) == {'res34', 'res50', 'res101'}
    for spec in cfg.model.teachers.values():
        assert spec.checkpoint.startswith('https://download.openmmlab.com/mmclassification/')
    offline_distiller_cfg(cfg, str(tmp_path_factory.getbasetemp()))
    model = MODELS.build(cfg.model)
    AgentLearner.attach_to(model)  # as the runner's MTKDRLAgentHook does
    model.train()
    optim = build_optim_wrapper(model, cfg.optim_wrapper)
    data = dict(
        inputs=[torch.randint(0, 255, (3, 64, 64), dtype=torch.uint8)] * 2,
        data_samples=[DataSample().set_gt_label(1),
                      DataSample().set_gt_label(7)])
    log_vars = model.train_step(data, optim)
    assert torch.isfinite(log_vars['loss'])
    assert {'loss_cls', 'loss_logit_kd', 'loss_feat_kd', 'weight_logit/res101'} <= set(log_vars)
    # the logged 'loss' is the back-propagated total, not the student's own cross-entropy
    torch.testing.assert_close(
        log_vars['loss'],
        log_vars['loss_cls'] + log_vars['loss_logit_kd'] + log_vars['loss_feat_kd'])


def stock(name: str, num_classes: int = 10) -> dict:
    model = stock_model(f'mmpretrain::{name}')
    model.head.num_classes = num_classes
    if 'img_size' in model.backbone:
        model.backbone.img_size = 64  # a transformer's position embedding for 64x64 inputs
    model.pop('train_cfg', None)  # no Mixup / CutMix: one plain step
    return model


def test_vision_transformers_teach_and_learn_with_cnns(tmp_path):
    """DeiT as the student, with a DeiT and a ResNet teacher (class-token features as 1x1
    maps, through connectors), and a ResNet student with a DeiT teacher: one step each."""
    resnet = stock('resnet/resnet18_8xb32_in1k.py')
    deit = stock('deit/deit-tiny_4xb256_in1k.py')
    paths = {
        name: save_model_checkpoint(cfg, str(tmp_path / f'{name}.pth'), seed=i)
        for i, (name, cfg) in enumerate((('deit', deit), ('resnet', resnet)))
    }
    data = dict(
        inputs=[torch.randint(0, 255, (3, 64, 64), dtype=torch.uint8)] * 2,
        data_samples=[DataSample().set_gt_label(1),
                      DataSample().set_gt_label(7)])
    for student, teachers in ((deit, ('deit', 'resnet')), (resnet, ('deit', ))):
        model = MODELS.build(
            dict(
                type='mmtkd.MultiTeacherDistiller',
                student=student,
                teachers={
                    t: dict(config=dict(deit=deit, resnet=resnet)[t], checkpoint=paths[t])
                    for t in teachers
                },
                weighting=dict(type='mmtkd.MTKDRLWeighting', warmup_iters=0),
                probe_input_shape=(3, 64, 64))).train()
        AgentLearner.attach_to(model)
        optim = build_optim_wrapper(model, dict(optimizer=dict(type='SGD', lr=0.01)))
        log_vars = model.train_step(data, optim)
        assert torch.isfinite(log_vars['loss']) and log_vars['loss_feat_kd'] > 0
