"""RTMDet's stock EMAHook on a distiller: it averages the student (and connectors) only, the
teachers are not averaged nor copied (the averaged model shares them), and the exported student
is the averaged one, as the recipe validates and saves it."""
import os.path as osp

import pytest
import torch
from mmengine.runner import Runner

from mmtkd.datasets import composite as build_composite
from mmtkd.datasets import fashion_mnist as build_fashion_mnist
from mmtkd.testing import save_model_checkpoint
from mmtkd.testing.compatibility import FAMILIES, dataset_cfg


@pytest.mark.skipif(
    not osp.isdir(build_fashion_mnist.DEBIAN_SOURCE),
    reason='Debian package dataset-fashion-mnist not installed')
@pytest.mark.parametrize('update_buffers', [True, False])
def test_rtmdet_ema_hook_averages_the_student_and_the_export_is_the_average(
        tmp_path, update_buffers):
    fashion = build_fashion_mnist.build(build_fashion_mnist.DEBIAN_SOURCE, str(tmp_path / 'fm'))
    root = str(tmp_path / 'composite')
    build_composite.build(root, train=8, val=4, fashion_root=fashion)
    teacher = FAMILIES['RTMDet'].model()
    checkpoint = save_model_checkpoint(teacher, str(tmp_path / 'teacher.pth'), seed=1)
    work_dir = str(tmp_path / 'work')
    cfg = dict(
        model=dict(
            type='mmtkd.MultiTeacherDistiller',
            student=FAMILIES['RTMDet'].model(),
            teachers=dict(rtm=dict(config=teacher, checkpoint=checkpoint))),
        work_dir=work_dir,
        train_dataloader=dict(
            dataset=dataset_cfg('detection', root),
            sampler=dict(type='DefaultSampler', shuffle=False),
            collate_fn=dict(type='pseudo_collate'),
            batch_size=2,
            num_workers=0),
        train_cfg=dict(by_epoch=False, max_iters=4),
        optim_wrapper=dict(optimizer=dict(type='AdamW', lr=1e-3)),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=4)),
        # the stock RTMDet recipe's EMAHook (a large momentum, so that 4 steps show it), and
        # with mmengine's default update_buffers=False
        custom_hooks=[
            dict(
                type='EMAHook',
                ema_type='ExpMomentumEMA',
                momentum=0.5,
                update_buffers=update_buffers,
                priority=49),
            dict(type='mmtkd.StudentExportHook')
        ],
        default_scope='mmdet',
        log_level='WARNING')
    runner = Runner.from_cfg(cfg)
    runner.train()
    ema_hook = next(h for h in runner.hooks if type(h).__name__ == 'EMAHook')
    averaged = ema_hook.ema_model.module
    # what EMAHook averages: the distiller's state_dict, which leaves the teachers out
    assert ema_hook.ema_model.avg_parameters
    assert not any(k.startswith('teachers.') for k in ema_hook.ema_model.avg_parameters)
    # nor copied: the averaged distiller holds the very teacher modules of the trained one
    assert averaged.teachers is runner.model.teachers
    assert averaged.student is not runner.model.student
    saved = torch.load(osp.join(work_dir, 'iter_4.pth'), map_location='cpu', weights_only=False)
    exported = torch.load(
        osp.join(work_dir, 'iter_4_student.pth'), map_location='cpu', weights_only=False)
    key = 'bbox_head.rtm_cls.0.weight'
    raw = runner.model.student.state_dict()[key]
    ema = averaged.student.state_dict()[key]
    assert not torch.equal(raw, ema)  # the average is not the last step's weights
    torch.testing.assert_close(exported['state_dict'][key], ema)
    torch.testing.assert_close(saved['state_dict'][f'student.{key}'], ema)
