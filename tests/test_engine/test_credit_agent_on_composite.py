"""The recommended agent on real detection data: on a few composite images, with a RetinaNet
teacher trained on them (twice in the pool), the same teacher with its classes rolled and an
untrained one, it takes both bad teachers' weight away, through the demo's real runners and
configs."""
import os.path as osp
import unittest
from pathlib import Path
from typing import Dict, Tuple

import pytest
from mmengine.runner import Runner
from mmengine.testing import RunnerTestCase

from mmtkd.benchmark.quality import teacher_shares
from mmtkd.benchmark.recommended import recommended_weighting
from mmtkd.benchmark.teacher_pools import permute_class_outputs, untrained_teacher
from mmtkd.datasets import composite as build_composite
from mmtkd.datasets import fashion_mnist as build_fashion_mnist
from mmtkd.demo.tasks import TASKS, load_cfg
from mmtkd.utils import save_atomically

IMAGES = 32


def _quiet(cfg, logger_interval=1):
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=-1, save_last=False)
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=logger_interval)
    for loader in (cfg.train_dataloader, cfg.val_dataloader, cfg.test_dataloader):
        loader.num_workers, loader.persistent_workers = 0, False
    return cfg


@unittest.skipIf(not osp.isdir(build_fashion_mnist.DEBIAN_SOURCE),
                 'Debian package dataset-fashion-mnist not installed')
class TestRecommendedAgentOnComposite(RunnerTestCase):
    """Runs real runners in this process; RunnerTestCase restores the default scope, logger
    and message hub afterwards, so later tests build their models in their own scope."""

    def test_recommended_drops_untrained_and_wrong_class_detection_teachers(self):
        tmp_path = Path(self.temp_dir.name)
        trained, untrained = _teachers(tmp_path)
        _recommended_drops_bad_teachers(tmp_path, trained, untrained)


def _teachers(tmp_path: Path) -> Tuple[str, str]:
    """A teacher trained on the test's composite images and an untrained one."""
    task = TASKS['detection']
    fashion = build_fashion_mnist.build(build_fashion_mnist.DEBIAN_SOURCE, str(tmp_path / 'fm'))
    data_root = str(tmp_path / 'composite')
    build_composite.build(data_root, train=IMAGES, val=4, fashion_root=fashion)
    teachers = tmp_path / 'teachers'

    # a teacher that knows these images: trained on them at a constant learning rate
    cfg = _quiet(
        load_cfg(
            task,
            'teacher_res18',
            str(tmp_path / 'teacher'),
            data_root,
            str(teachers),
            epochs=30,
            subset=IMAGES))
    cfg.param_scheduler = []
    runner = Runner.from_cfg(cfg)
    runner.train()
    trained = str(teachers / 'trained.pth')
    save_atomically({'state_dict': runner.model.state_dict()}, trained)
    untrained = untrained_teacher(task, 'res18', str(teachers / 'untrained.pth'))
    return trained, untrained


def _distil(tmp_path: Path, name: str, teachers: Dict[str, str], weighting: dict) -> Runner:
    task = TASKS['detection']
    work_dir = str(tmp_path / name)
    cfg = _quiet(
        load_cfg(
            task,
            'mtkd_rl',
            work_dir,
            str(tmp_path / 'composite'),
            str(tmp_path / 'teachers'),
            epochs=15,
            subset=IMAGES))
    spec = cfg.model.teachers.res18
    cfg.model.teachers = {
        teacher: dict(spec, checkpoint=checkpoint)
        for teacher, checkpoint in teachers.items()
    }
    cfg.model.weighting = weighting
    runner = Runner.from_cfg(cfg)
    runner.train()
    return runner


def _recommended_drops_bad_teachers(tmp_path: Path, trained: str, untrained: str) -> None:
    """The recommended agent (hinged class-margin credit) with two copies of the trained
    teacher, the trained teacher with its classes rolled (right objects, wrong classes) and the
    untrained one: both bad teachers lose their weight (their logged margin credit is negative,
    the trained teacher's positive) and neither copy of the trained one is preferred."""
    task = TASKS['detection']
    permuted = permute_class_outputs(trained, str(tmp_path / 'teachers' / 'permuted.pth'),
                                     task.class_scores, task.num_classes)
    teachers = dict(good_a=trained, good_b=trained, wrong=permuted, bad=untrained)
    runner = _distil(tmp_path, 'distil', teachers, recommended_weighting(task.name))
    shares = teacher_shares(runner.work_dir)
    for bad in ('wrong', 'bad'):
        logit_share, feature_share = shares['logit'][bad], shares['feat'][bad]
        assert logit_share < 0.12 and feature_share < 0.12, (bad, logit_share, feature_share)
    for kind in ('logit', 'feat'):  # every teacher's share, of weights that sum to 1
        assert sorted(shares[kind]) == sorted(teachers)
        assert sum(shares[kind].values()) == pytest.approx(1, abs=1e-6)
    assert shares['logit']['good_a'] == pytest.approx(shares['logit']['good_b'], abs=0.05)
    credit = {
        name: runner.message_hub.get_scalar(f'train/agent_credit/{name}').current()
        for name in teachers
    }
    assert credit['wrong'] < 0 < min(credit['good_a'], credit['good_b']), credit
    assert credit['bad'] < 0, credit
