"""mmseg's own ``tools/train.py`` and ``tools/test.py``, as shipped in the mmseg package, run the
segmentation demo's MTKD-RL config (mmtkd comes in through ``custom_imports``), and the student
that ``StudentExportHook`` exports, loaded into the stock student config, gives the distiller's
test results exactly (the whole per-class IoU / accuracy table)."""
import os.path as osp
import re

import mmseg
import pytest
from mmengine.config import Config

from mmtkd.datasets import composite as build_composite
from mmtkd.datasets import fashion_mnist as build_fashion_mnist
from mmtkd.testing import offline_distiller_cfg
from ..conftest import run_script

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
MMSEG_TOOLS = osp.join(osp.dirname(mmseg.__file__), '.mim', 'tools')
DISTILLER = osp.join(ROOT, 'configs', 'demo', 'compseg_fcn_3teachers_mtkd_rl.py')
STUDENT = osp.join(ROOT, 'configs', 'demo', 'compseg_student_nokd.py')


def run(script: str, *args: str) -> str:
    return run_script(osp.join(MMSEG_TOOLS, script), *args)


def per_class_table(log: str) -> str:
    """The per-class IoU / Acc table IoUMetric prints, and the summary line."""
    rows = [
        line for line in log.split('per class results:')[-1].splitlines()
        if line.startswith(('|', '+'))
    ]
    summary = re.search(r'aAcc: [\d.]+\s+mIoU: [\d.]+\s+mAcc: [\d.]+', log)
    assert len(rows) > 11 and summary, log[-3000:]  # 11 classes, a header and rules
    return '\n'.join(rows + [summary.group(0)])


@pytest.mark.skipif(
    not osp.isdir(build_fashion_mnist.DEBIAN_SOURCE),
    reason='Debian package dataset-fashion-mnist not installed')
def test_stock_mmseg_tools_train_and_test_and_the_exported_student_matches(tmp_path):
    fashion = build_fashion_mnist.build(build_fashion_mnist.DEBIAN_SOURCE, str(tmp_path / 'fm'))
    data_root = str(tmp_path / 'composite')
    build_composite.build(data_root, train=8, val=4, fashion_root=fashion)
    # random-weight teachers written to disk, named on the command line like any checkpoint
    teachers = offline_distiller_cfg(Config.fromfile(DISTILLER), str(tmp_path / 'teachers'))
    options = [
        f'model.teachers.{name}.checkpoint={spec.checkpoint}'
        for name, spec in teachers.model.teachers.items()
    ]
    data = []
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        data += [
            f'{loader}.dataset.data_root={data_root}', f'{loader}.batch_size=4',
            f'{loader}.num_workers=0', f'{loader}.persistent_workers=False'
        ]
    work_dir = str(tmp_path / 'work')
    run('train.py', DISTILLER, '--work-dir', work_dir, '--cfg-options', *options, *data,
        'train_cfg.max_epochs=1', 'train_cfg.val_interval=2')
    distiller_ckpt = osp.join(work_dir, 'epoch_1.pth')
    student_ckpt = osp.join(work_dir, 'epoch_1_student.pth')
    assert osp.isfile(distiller_ckpt) and osp.isfile(student_ckpt)

    distilled = run('test.py', DISTILLER, distiller_ckpt, '--work-dir', str(tmp_path / 't1'),
                    '--cfg-options', *options, *data)
    alone = run('test.py', STUDENT, student_ckpt, '--work-dir', str(tmp_path / 't2'),
                '--cfg-options', *data)
    assert per_class_table(distilled) == per_class_table(alone)
