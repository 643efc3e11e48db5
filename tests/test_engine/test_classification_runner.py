"""Runner-level: a 3-teacher mmpretrain distillation trains, validates, saves and resumes."""
import copy
import os.path as osp
import uuid

import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner
from mmengine.testing import RunnerTestCase

from mmtkd.testing import (save_model_checkpoint, tiny_classification_distiller_cfg,
                           write_image_folder)
from ..conftest import NUM_CLASSES, teacher_configs


def distillation_runner_cfg(work: str, **model_kwargs) -> Config:
    """A complete mmpretrain-style runner config: 3 teachers loaded from disk, tiny images."""
    data_root = write_image_folder(osp.join(work, 'data'), NUM_CLASSES, per_class=4)
    checkpoints = {
        name: save_model_checkpoint(cfg, osp.join(work, f'{name}.pth'), seed=i)
        for i, (name, cfg) in enumerate(teacher_configs().items())
    }
    dataset = dict(
        type='CustomDataset',
        data_root=data_root,
        pipeline=[dict(type='LoadImageFromFile'),
                  dict(type='PackInputs')])
    loader = dict(
        dataset=dataset,
        batch_size=4,
        num_workers=0,
        sampler=dict(type='DefaultSampler', shuffle=True))
    return Config(
        dict(
            default_scope='mmpretrain',
            work_dir=osp.join(work, 'run'),
            experiment_name=f'mmtkd_test_{uuid.uuid4().hex}',
            model=tiny_classification_distiller_cfg(checkpoints, teacher_configs(), **model_kwargs),
            train_dataloader=loader,
            val_dataloader=dict(loader, sampler=dict(type='DefaultSampler', shuffle=False)),
            val_evaluator=dict(type='Accuracy', topk=(1, )),
            optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01, momentum=0.9)),
            param_scheduler=dict(type='MultiStepLR', milestones=[1], by_epoch=True),
            train_cfg=dict(by_epoch=True, max_epochs=2, val_interval=1),
            val_cfg=dict(),
            default_hooks=dict(
                logger=dict(type='LoggerHook', interval=1),
                checkpoint=dict(type='CheckpointHook', interval=1)),
            randomness=dict(seed=0),
            env_cfg=dict(dist_cfg=dict(backend='gloo')),
            log_level='WARNING'))


class TestClassificationDistillationRunner(RunnerTestCase):

    def setUp(self) -> None:
        super().setUp()
        self.cfg = distillation_runner_cfg(self.temp_dir.name)

    def test_train_validate_save_resume(self):
        runner = Runner.from_cfg(copy.deepcopy(self.cfg))
        runner.train()
        assert 0 <= runner.message_hub.get_scalar('val/accuracy/top1').current() <= 100
        # the logged teacher weights reached the message hub (and so every visualiser backend)
        assert runner.message_hub.get_scalar('train/weight_logit/res34').current() > 0
        ckpt_path = osp.join(self.cfg.work_dir, 'epoch_2.pth')
        checkpoint = torch.load(ckpt_path, weights_only=True)
        assert not [k for k in checkpoint['state_dict'] if k.startswith('teachers.')]
        assert checkpoint['optimizer']['state'], 'optimiser state (momentum) must be saved'
        trained = {k: v.clone() for k, v in runner.model.student.state_dict().items()}

        cfg = copy.deepcopy(self.cfg)
        cfg.train_cfg.max_epochs = 3
        cfg.resume, cfg.load_from = True, ckpt_path
        resumed = Runner.from_cfg(cfg)
        resumed.train()
        assert resumed.train_loop.epoch == 3
        assert resumed.iter == runner.iter + runner.iter // 2
        assert resumed.message_hub.get_info('epoch') is not None
        # The scheduler state was restored: lr was decayed once at epoch 1 and stays decayed.
        assert resumed.optim_wrapper.get_lr()['lr'][0] == pytest.approx(0.001)
        changed = [
            k for k, v in resumed.model.student.state_dict().items()
            if v.dtype.is_floating_point and not torch.equal(v, trained[k])
        ]
        assert changed, 'resumed training must continue updating the student'
