"""tools/train.py and tools/test.py on a plain mmpretrain config (no mmtkd in it): train,
resume with --resume, and evaluate the checkpoint."""
import os.path as osp

import pytest

from mmtkd.datasets import fashion_mnist as build_fashion_mnist
from ..conftest import run_script

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))

CONFIG = osp.join(ROOT, 'configs', 'demo', 'fmnist_student_nokd.py')


def run(script: str, *args: str) -> str:
    return run_script(osp.join(ROOT, 'tools', script), *args)


@pytest.mark.skipif(
    not osp.isdir(build_fashion_mnist.DEBIAN_SOURCE),
    reason='Debian package dataset-fashion-mnist not installed')
def test_train_resume_and_test_a_stock_style_config(tmp_path):
    data_root = build_fashion_mnist.build(build_fashion_mnist.DEBIAN_SOURCE, str(tmp_path / 'fm'))
    options = [
        f'train_dataloader.dataset.data_root={data_root}',
        f'val_dataloader.dataset.data_root={data_root}',
        f'test_dataloader.dataset.data_root={data_root}', 'train_dataloader.dataset.indices=16',
        'val_dataloader.dataset.indices=16', 'test_dataloader.dataset.indices=16',
        'train_dataloader.num_workers=0', 'val_dataloader.num_workers=0',
        'test_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False',
        'val_dataloader.persistent_workers=False', 'test_dataloader.persistent_workers=False',
        'train_dataloader.batch_size=8'
    ]
    work_dir = str(tmp_path / 'work')
    run('train.py', CONFIG, '--work-dir', work_dir, '--cfg-options', *options,
        'train_cfg.max_epochs=1')
    assert osp.isfile(osp.join(work_dir, 'epoch_1.pth'))
    log = run('train.py', CONFIG, '--work-dir', work_dir, '--resume', '--cfg-options', *options,
              'train_cfg.max_epochs=2')
    assert 'resumed epoch: 1' in log and osp.isfile(osp.join(work_dir, 'epoch_2.pth'))
    log = run('test.py', CONFIG, osp.join(work_dir, 'epoch_2.pth'), '--work-dir',
              str(tmp_path / 'test'), '--cfg-options', *options)
    assert 'accuracy/top1' in log
