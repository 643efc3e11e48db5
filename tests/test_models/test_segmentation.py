"""Segmentation: per-image pixel KD and CE by hand (ignore_index respected), shipped Cityscapes
configs offline (train + val iteration on written masks), and bad input."""
import math
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import MODELS
from mmengine.runner import Runner
from mmengine.structures import PixelData
from mmengine.testing import RunnerTestCase
from mmseg.structures import SegDataSample

from mmtkd.engine import AgentLearner
from mmtkd.models.losses import ChannelWiseDivergenceLoss, LogitKLDivLoss
from mmtkd.models.tasks import DistillOutputs, SegmentationTask
from mmtkd.testing import (isolated_run_cfg, offline_distiller_cfg, save_model_checkpoint,
                           stock_model, write_cityscapes_segmentation)

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
SEG_CONFIGS = [
    osp.join(ROOT, 'configs', 'mtkd_rl', f'deeplabv3_r18-d8_3teachers_cityscapes{suffix}.py')
    for suffix in ('', '_feature_credit')
] + [
    osp.join(ROOT, 'configs', 'baselines', f'deeplabv3_r18-d8_3teachers_cityscapes_{name}.py')
    for name in ('aver', 'camkd', 'ebkd')
]
KL_BY_HAND = 0.75 * math.log(1.5) + 0.25 * math.log(0.5)


def sample(label):
    s = SegDataSample()
    s.gt_sem_seg = PixelData(data=torch.as_tensor(label)[None])
    return s


def test_pixel_kd_averages_over_valid_pixels_only():
    task = SegmentationTask()
    student = torch.zeros(2, 2, 1, 2)
    teacher = torch.zeros(2, 2, 1, 2)
    teacher[:, 0, 0, 0] = math.log(3)  # pixel 0 differs (KL_BY_HAND), pixel 1 agrees
    labels = [torch.tensor([[0, 1]]), torch.tensor([[0, 255]])]
    kd = task.logit_kd(
        LogitKLDivLoss(temperature=1.0), DistillOutputs(student, []), DistillOutputs(teacher, []),
        [sample(label) for label in labels])
    torch.testing.assert_close(kd, torch.tensor([KL_BY_HAND / 2, KL_BY_HAND]))


def test_all_ignored_image_gives_zero_not_nan():
    task = SegmentationTask()
    logits = torch.randn(1, 3, 2, 2)
    samples = [sample(torch.full((2, 2), 255))]
    kd = task.logit_kd(LogitKLDivLoss(), DistillOutputs(logits, []),
                       DistillOutputs(torch.randn(1, 3, 2, 2), []), samples)
    assert kd.item() == 0.0
    ce = task.per_sample_loss(None, DistillOutputs(logits, []), samples)
    assert ce.item() == 0.0


def test_per_image_ce_respects_ignore_index():
    task = SegmentationTask()
    logits = torch.zeros(1, 2, 1, 2)
    logits[0, 0, 0, 0] = math.log(3)  # p(class 0) = 0.75 at pixel 0
    ce = task.per_sample_loss(None, DistillOutputs(logits, []), [sample(torch.tensor([[0, 255]]))])
    torch.testing.assert_close(ce, torch.tensor([-math.log(0.75)]))


def test_teacher_logits_are_resized_and_cwd_is_per_image():
    task = SegmentationTask()
    student, teacher = torch.zeros(1, 2, 2, 2), torch.zeros(1, 2, 4, 4)
    kd = task.logit_kd(ChannelWiseDivergenceLoss(), DistillOutputs(student, []),
                       DistillOutputs(teacher, []), [sample(torch.zeros(8, 8))])
    assert kd.shape == (1, ) and kd.item() == pytest.approx(0.0, abs=1e-6)


def tiny_segmentation_cfg(config: str, work: str) -> Config:
    cfg = Config.fromfile(config)
    offline_distiller_cfg(cfg, osp.join(work, '..', 'teachers'))
    data_root = osp.join(work, 'data')
    for split in ('train', 'val'):
        write_cityscapes_segmentation(data_root, split, ignored_images=(1, ))
    cfg.model.student.data_preprocessor.size = (64, 128)
    pipeline = [
        dict(type='LoadImageFromFile'),
        dict(type='LoadAnnotations'),
        dict(type='PackSegInputs')
    ]
    for loader, split in ((cfg.train_dataloader, 'train'), (cfg.val_dataloader, 'val')):
        loader.batch_size = 2
        loader.num_workers = 0
        loader.persistent_workers = False
        loader.dataset.update(
            data_root=data_root,
            pipeline=pipeline,
            data_prefix=dict(img_path=f'leftImg8bit/{split}', seg_map_path=f'gtFine/{split}'))
    cfg.test_dataloader = cfg.val_dataloader
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=1, val_interval=1)
    isolated_run_cfg(cfg, work)
    cfg.default_hooks.checkpoint.interval = 1
    return cfg


class TestShippedSegmentationConfigs(RunnerTestCase):

    def test_every_config_trains_and_validates_one_iteration(self):
        for i, config in enumerate(SEG_CONFIGS):
            with self.subTest(config=osp.basename(config)):
                cfg = tiny_segmentation_cfg(config, osp.join(self.temp_dir.name, f'run{i}'))
                runner = Runner.from_cfg(cfg)
                runner.train()
                assert runner.iter == 1
                assert runner.message_hub.get_scalar('val/mIoU') is not None
                losses = runner.message_hub.log_scalars
                assert 'train/decode.loss_ce' in losses and 'train/aux.loss_ce' in losses
                assert 'train/loss_logit_kd' in losses
                assert osp.isfile(osp.join(cfg.work_dir, 'iter_1_student.pth'))


# ---------------------------------------------------------------- bad input
def deeplab(num_classes=19):
    model = stock_model('mmseg::deeplabv3/deeplabv3_r18-d8_4xb2-80k_cityscapes-512x1024.py')
    model.decode_head.num_classes = model.auxiliary_head.num_classes = num_classes
    model.data_preprocessor.size = (32, 32)
    model.backbone.norm_cfg = model.decode_head.norm_cfg = model.auxiliary_head.norm_cfg = dict(
        type='BN', requires_grad=True)
    return model


def test_class_count_mismatch(tmp_path):
    path = save_model_checkpoint(deeplab(7), str(tmp_path / 't.pth'))
    with pytest.raises(ValueError, match="teacher 't'.*7 classes.*19"):
        MODELS.build(
            dict(
                type='mmtkd.MultiTeacherDistiller',
                student=deeplab(),
                teachers=dict(t=dict(config=deeplab(7), checkpoint=path))))


def test_teacher_cfg_options_change_its_config_without_another_file(tmp_path):
    path = save_model_checkpoint(deeplab(), str(tmp_path / 't.pth'))
    fix = {'decode_head.num_classes': 19, 'auxiliary_head': dict(num_classes=19)}
    model = MODELS.build(
        dict(
            type='mmtkd.MultiTeacherDistiller',
            student=deeplab(),
            teachers=dict(t=dict(config=deeplab(7), checkpoint=path, cfg_options=fix))))
    teacher = model.teachers['t']
    assert teacher.decode_head.num_classes == teacher.auxiliary_head.num_classes == 19
    with pytest.raises(KeyError, match=r"teacher 't': unknown keys \['cfg_option'\]"):
        MODELS.build(
            dict(
                type='mmtkd.MultiTeacherDistiller',
                student=deeplab(),
                teachers=dict(t=dict(config=deeplab(), checkpoint=path, cfg_option=fix))))


@pytest.mark.parametrize('weighting', [
    dict(type='mmtkd.AverageWeighting'),
    dict(type='mmtkd.ConfidenceWeighting'),
    dict(type='mmtkd.MTKDRLWeighting', warmup_iters=0),
])
def test_invalid_label_values_are_rejected_before_any_loss(tmp_path, weighting):
    path = save_model_checkpoint(deeplab(), str(tmp_path / 't.pth'))
    model = MODELS.build(
        dict(
            type='mmtkd.MultiTeacherDistiller',
            student=deeplab(),
            teachers=dict(t=dict(config=deeplab(), checkpoint=path)),
            weighting=weighting))
    model.train()
    AgentLearner.attach_to(model)  # as MTKDRLAgentHook does (None for stateless ones)
    bad = torch.zeros(32, 32, dtype=torch.long)
    bad[0, 0] = 40
    samples = [sample(bad)]
    for s in samples:
        s.set_metainfo(dict(img_shape=(32, 32), pad_shape=(32, 32)))
    with pytest.raises(ValueError, match=r'\[40\].*neither a class.*ignore_index=255'):
        model(torch.rand(1, 3, 32, 32), samples, mode='loss')
