"""The benchmarks' segmentation setting: the shipped Cityscapes recipe at the benchmark's square
size, a batch its real data preprocessor and student accept, and the recommended row built with
the segmentors' weighting."""
import subprocess
import sys

import pytest
import torch

from mmtkd.benchmark.recommended import (CREDIT_AGENT, RECOMMENDED, candidate_weightings,
                                         recommended_weighting)
from mmtkd.benchmark.speed import ROOT, row_weighting
from mmtkd.benchmark.step_settings import STEP_SETTINGS, segmentation_batch, step_config


def test_the_segmentation_recipe_is_padded_to_the_benchmark_size_and_trains_on_its_batch():
    from mmengine.registry import MODELS

    import mmtkd  # noqa: F401
    from mmtkd.testing.offline import strip_pretrained
    cfg = step_config('segmentation', 64)
    assert cfg.model.student.data_preprocessor.size == (64, 64)  # the recipe pads to 512x1024
    student_cfg = strip_pretrained(cfg.model.student)
    student = MODELS.build(dict(student_cfg, _scope_='mmseg'))
    data = student.data_preprocessor(segmentation_batch(48, 2), True)
    assert data['inputs'].shape == (2, 3, 64, 64)
    labels = torch.stack([s.gt_sem_seg.data for s in data['data_samples']])
    assert labels.shape == (2, 1, 64, 64)
    ignored = (labels == 255).float().mean()
    assert 0.2 < ignored < 0.6  # the tenth of pixels set to 255, and the padding
    assert labels[labels != 255].max() < 19
    losses = student.loss(data['inputs'], data['data_samples'])
    assert torch.isfinite(losses['decode.loss_ce']) and losses['decode.loss_ce'] > 0


def test_the_recommended_row_builds_each_settings_shipped_weighting():
    assert row_weighting(RECOMMENDED, 'segmentation') == recommended_weighting('segmentation')
    assert row_weighting(RECOMMENDED, 'segmentation') == candidate_weightings(
    )[f'{CREDIT_AGENT}_feature_credit_ranked_every5_passes10']
    assert row_weighting(RECOMMENDED) == candidate_weightings()[CREDIT_AGENT]
    assert row_weighting(
        'floor', 'segmentation') == row_weighting('aver') == dict(type='mmtkd.AverageWeighting')
    assert set(STEP_SETTINGS) == {'detection', 'segmentation'}


@pytest.mark.parametrize('script', ['host_ops.py', 'step_memory.py', 'speed.py'])
def test_teacher_losses_floor_is_refused_on_segmentation_before_anything_is_built(script, tmp_path):
    run = subprocess.run([
        sys.executable, f'tools/benchmark/{script}', '--task', 'segmentation', '--rows',
        'floor_teacher_losses', '--teacher-dir',
        str(tmp_path / 'teachers'), '--out',
        str(tmp_path / 'out.json')
    ],
                         cwd=ROOT,
                         capture_output=True,
                         text=True,
                         timeout=300)
    assert run.returncode == 2
    assert 'floor_teacher_losses is measured on the detection setting only' in run.stderr
    assert not (tmp_path / 'teachers').exists() and not (tmp_path / 'out.json').exists()
