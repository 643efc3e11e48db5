"""The speed benchmark's reduced-precision check on a real (tiny) distiller: it really runs the
teachers in the asked precision, compares KD losses against fp32 and leaves the distiller as it
found it. (The timings themselves belong to the benchmark's table, not to a test.)"""
import os.path as osp
import sys

import pytest
import torch
from mmengine.registry import MODELS

from mmtkd.benchmark.speed import format_precision_table, precision_check
from mmtkd.testing import tiny_classification_distiller_cfg
from ..conftest import teacher_configs
from ..test_models.test_distiller import batch

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def test_precision_check_reports_kd_loss_change_against_fp32(teacher_checkpoints):
    distiller = MODELS.build(
        tiny_classification_distiller_cfg(teacher_checkpoints, teacher_configs()))
    distiller.train()
    seen = []
    for teacher in distiller.teachers.values():
        teacher.backbone.register_forward_hook(lambda module, args, out: seen.append(
            torch.get_autocast_dtype('cpu') if torch.is_autocast_enabled('cpu') else None))
    results = precision_check(
        distiller, batch(4), iters=1, warmup=0, device='cpu', precisions=('fp32', 'bf16'))
    assert list(results) == ['fp32', 'bf16']
    assert None in seen and torch.bfloat16 in seen  # the teachers ran in both precisions
    fp32, bf16 = results['fp32'], results['bf16']
    for key in ('loss_logit_kd', 'loss_feat_kd'):
        assert fp32[f'{key}_rel_change'] == 0
        assert bf16[key] != fp32[key]  # bf16 teachers give (slightly) other targets
        assert bf16[f'{key}_rel_change'] == pytest.approx(
            abs(bf16[key] - fp32[key]) / abs(fp32[key]))
        assert bf16[f'{key}_rel_change'] < 0.1
    assert distiller.teacher_autocast is None  # restored
    table = format_precision_table(results, 'tiny classifiers, cpu')
    assert table.startswith('tiny classifiers, cpu')
    assert '| fp32 |' in table and '| bf16 |' in table


def test_trained_teacher_precision_check_needs_the_demo_teachers(tmp_path):
    import subprocess
    command = [
        sys.executable,
        osp.join(ROOT, 'tools', 'benchmark', 'teacher_precision.py'), '--teacher-dir',
        str(tmp_path / 'empty'), '--out',
        str(tmp_path / 'out')
    ]
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode != 0
    assert "no trained composite teachers ['res18', 'res34', 'regnetx']" in run.stderr
    assert 'run tools/demo.py --task detection first' in run.stderr
    assert not (tmp_path / 'out').exists()  # failed before writing anything


def test_profiles_count_gpu_events_per_step_only_on_a_gpu(tmp_path):
    """``speed.py --profile-dir`` writes each row's operator table; on a GPU it also counts the
    device events per step (the measured counterpart of host_ops.py's count), which the table
    compares with AVER's; on CPU there is nothing to count."""
    from mmtkd.benchmark.speed import format_gpu_kernels, profile
    x = torch.randn(64, 64)
    args = type('Args', (), dict(profile_dir=str(tmp_path)))
    path, gpu_kernels = profile(lambda: (x @ x).relu().sum(), 'aver', args, 'cpu', steps=2)
    assert gpu_kernels is None
    with open(path) as f:
        text = f.read()
    assert text.startswith('aver: 2 training steps') and 'aten::mm' in text
    assert format_gpu_kernels(dict(aver=dict(median_s=1.0))) == ''
    table = format_gpu_kernels(
        dict(aver=dict(gpu_kernels_per_step=2000.0), mtkd_rl=dict(gpu_kernels_per_step=2100.0)))
    assert '| aver | 2000 | 1.000 |' in table and '| mtkd_rl | 2100 | 1.050 |' in table
