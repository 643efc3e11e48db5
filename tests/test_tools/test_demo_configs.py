"""Smoke runs of the demo path on a few real images: every demo config through an MMEngine runner,
and ``tools/demo.py`` end to end (teachers trained, cached and reused, table and plot written)."""
import glob
import json
import os.path as osp
import subprocess
import sys
import uuid

import pytest
from mmengine.config import Config
from mmengine.runner import Runner

from mmtkd.datasets import composite as build_composite
from mmtkd.datasets import fashion_mnist as build_fashion_mnist
from mmtkd.datasets import tree_crowns as build_tree_crowns
from mmtkd.testing import offline_distiller_cfg

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))

DEMO_CONFIGS = sorted(glob.glob(osp.join(ROOT, 'configs', 'demo', '*.py')))
needs_fashion_mnist = pytest.mark.skipif(
    not osp.isdir(build_fashion_mnist.DEBIAN_SOURCE),
    reason='Debian package dataset-fashion-mnist not installed')


@pytest.fixture(scope='module')
def data_roots(tmp_path_factory):
    """A Fashion-MNIST layout, a composite detection / segmentation set of 8 + 4 images and the
    tree-crown tiles."""
    base = tmp_path_factory.mktemp('demo_data')
    fashion = build_fashion_mnist.build(build_fashion_mnist.DEBIAN_SOURCE, str(base / 'fm'))
    composite = str(base / 'composite')
    build_composite.build(composite, train=8, val=4, fashion_root=fashion)
    trees = str(base / 'trees')
    build_tree_crowns.build(trees)
    return dict(fmnist=fashion, composite=composite, compseg=composite, trees=trees)


@needs_fashion_mnist
@pytest.mark.parametrize('config', DEMO_CONFIGS, ids=osp.basename)
def test_demo_config_trains_and_tests(config, data_roots, tmp_path_factory):
    prefix = osp.basename(config).split('_')[0]
    data_root = data_roots[prefix]
    cfg = Config.fromfile(config)
    if 'teachers' in cfg.model:
        offline_distiller_cfg(cfg, str(tmp_path_factory.getbasetemp() / f'teachers_{prefix}'))
    for loader in (cfg.train_dataloader, cfg.val_dataloader, cfg.test_dataloader):
        loader.dataset.update(data_root=data_root, indices=8)
        loader.update(batch_size=4, num_workers=0, persistent_workers=False)
    if 'ann_file' in cfg.test_evaluator:
        cfg.val_evaluator.ann_file = cfg.test_evaluator.ann_file = osp.join(
            data_root, 'annotations', 'val.json')
    cfg.train_cfg.update(max_epochs=1, val_interval=1)
    cfg.param_scheduler = dict(type='ConstantLR', factor=1.0)
    cfg.work_dir = str(tmp_path_factory.mktemp('demo'))
    cfg.experiment_name = cfg.visualizer.name = f'demo_{uuid.uuid4().hex}'
    cfg.log_level = 'WARNING'
    runner = Runner.from_cfg(cfg)
    runner.train()
    metrics = runner.test()
    if 'accuracy/top1' in metrics:
        assert 0 <= metrics['accuracy/top1'] <= 100
    elif prefix == 'compseg':  # IoUMetric, in percent
        assert 0 <= metrics['mIoU'] <= 100 and 0 < metrics['aAcc'] <= 100
    else:  # CocoMetric gives nothing when a 1-epoch detector detects nothing above 0.05
        assert all(0 <= v <= 1 or v == -1 for k, v in metrics.items() if 'mAP' in k)


def run_demo(work_dir, data_root, *extra):
    result = subprocess.run([
        sys.executable,
        osp.join(ROOT, 'tools', 'demo.py'), '--task', 'detection', '--epochs', '1', '--subset', '4',
        '--work-dir', work_dir, '--data-root', data_root, *extra
    ],
                            cwd=ROOT,
                            capture_output=True,
                            text=True,
                            timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


@needs_fashion_mnist
def test_demo_script_caches_teachers_and_prints_the_table(data_roots, tmp_path):
    work_dir = str(tmp_path / 'demo')
    first = run_demo(work_dir, data_roots['composite'])
    for teacher in ('res18', 'res34', 'regnetx'):
        assert f'[demo] training teacher {teacher}' in first
        assert osp.isfile(osp.join(work_dir, 'teachers', f'composite_{teacher}.pth'))
    assert '| student + MTKD-RL (official agent) | 1.02 |' in first and 'mAP (%)' in first
    assert '| student + MTKD-RL (credit agent, recommended) | 1.02 |' in first
    (results, ) = glob.glob(osp.join(work_dir, 'runs', '*', 'demo_results.json'))
    rows = json.load(open(results))['rows']
    assert [row['model'] for row in rows] == [
        'teacher res18', 'teacher res34', 'teacher regnetx', 'student (no KD)',
        'student + MTKD-RL (official agent)', 'student + MTKD-RL (credit agent, recommended)'
    ]
    assert all(0 <= row['metrics']['coco/bbox_mAP'] <= 1 for row in rows)
    for agent in ('mtkd_rl', 'credit'):
        (figure, ) = glob.glob(osp.join(work_dir, 'runs', '*', agent, 'teacher_weights.png'))
        assert f'teacher-weight plot: {figure}' in first

    second = run_demo(work_dir, data_roots['composite'])
    assert '[demo] training teacher' not in second
    assert second.count('[demo] teacher') == 3 and second.count(': cached (') == 3
    assert len(glob.glob(osp.join(work_dir, 'runs', '*', 'demo_results.json'))) == 2
