"""Smoke run of every demo config on a few real Fashion-MNIST images (the path demo.sh takes)."""
import glob
import os.path as osp
import sys
import uuid

import pytest
from mmengine.config import Config
from mmengine.runner import Runner

from mmtkd.testing import offline_distiller_cfg

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, osp.join(ROOT, 'tools', 'data'))
import build_fashion_mnist  # noqa: E402

DEMO_CONFIGS = sorted(glob.glob(osp.join(ROOT, 'configs', 'demo', '*.py')))


@pytest.mark.skipif(not osp.isdir(build_fashion_mnist.DEBIAN_SOURCE),
                    reason='Debian package dataset-fashion-mnist not installed')
@pytest.mark.parametrize('config', DEMO_CONFIGS, ids=osp.basename)
def test_demo_config_trains_and_tests(config, tmp_path_factory):
    data_root = build_fashion_mnist.build(build_fashion_mnist.DEBIAN_SOURCE,
                                          str(tmp_path_factory.getbasetemp() / 'fm'))
    work = tmp_path_factory.mktemp('demo')
    cfg = Config.fromfile(config)
    if 'teachers' in cfg.model:
        offline_distiller_cfg(cfg, str(tmp_path_factory.getbasetemp() / 'demo_teachers'))
    for loader in (cfg.train_dataloader, cfg.val_dataloader, cfg.test_dataloader):
        loader.dataset.update(data_root=data_root, indices=8)
        loader.update(batch_size=4, num_workers=0, persistent_workers=False)
    cfg.train_cfg.max_epochs = 1
    cfg.param_scheduler.T_max = 1
    cfg.work_dir = str(work)
    cfg.experiment_name = cfg.visualizer.name = f'demo_{uuid.uuid4().hex}'
    cfg.log_level = 'WARNING'
    runner = Runner.from_cfg(cfg)
    runner.train()
    metrics = runner.test()
    assert 0 <= metrics['accuracy/top1'] <= 100
