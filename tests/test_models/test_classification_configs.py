"""The shipped ImageNet configs build offline (stock mmpretrain configs, teacher checkpoints
written by the test) and take one real training step."""
import glob
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import MODELS
from mmpretrain.structures import DataSample

from mmtkd.engine import AgentLearner
from mmtkd.testing import offline_distiller_cfg

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
