"""The compatibility matrix: every family of the README's table as student and as teacher (random
weights), two training steps on real composite images through its stock data pipeline, and
the KD it gets checked against the README's row."""
import os.path as osp

import pytest
import torch
from mmengine.logging import MessageHub
from mmengine.optim import build_optim_wrapper
from mmengine.registry import MODELS

from mmtkd.datasets import composite as build_composite
from mmtkd.datasets import fashion_mnist as build_fashion_mnist
from mmtkd.testing import save_model_checkpoint
from mmtkd.testing.compatibility import (FAMILIES, KD_KINDS, observed_kd, readme_block,
                                         readme_table, real_batches)

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


@pytest.fixture(scope='module')
def composite(tmp_path_factory) -> str:
    if not osp.isdir(build_fashion_mnist.DEBIAN_SOURCE):
        pytest.skip('Debian package dataset-fashion-mnist not installed')
    base = tmp_path_factory.mktemp('matrix_data')
    fashion = build_fashion_mnist.build(build_fashion_mnist.DEBIAN_SOURCE, str(base / 'fm'))
    root = str(base / 'composite')
    build_composite.build(root, train=8, val=4, fashion_root=fashion)
    return root


def readme() -> str:
    with open(osp.join(ROOT, 'README.md')) as f:
        return f.read()


def test_readme_table_is_the_generated_one():
    assert readme_block(readme()) == readme_table()


@pytest.mark.parametrize('name', list(FAMILIES))
def test_family_trains_as_student_and_teacher_on_real_images(name, composite, tmp_path):
    family = FAMILIES[name]
    teacher = family.model()
    checkpoint = save_model_checkpoint(teacher, str(tmp_path / 'teacher.pth'), seed=1)
    model = MODELS.build(
        dict(
            type='mmtkd.MultiTeacherDistiller',
            student=family.model(),
            teachers=dict(teacher=dict(config=teacher, checkpoint=checkpoint)),
            weighting=dict(type='mmtkd.ConfidenceWeighting')))  # reads the teachers' losses
    model.init_weights()  # as the runner does (the loaded teacher is left alone)
    teacher_losses = []
    model.weighting.register_forward_pre_hook(
        lambda module, args: teacher_losses.append(args[0].teacher_loss))
    # the transformers' recipe (AdamW, clipped gradients) suits every family for two steps
    optim = build_optim_wrapper(
        model,
        dict(optimizer=dict(type='AdamW', lr=1e-4), clip_grad=dict(max_norm=0.1, norm_type=2)))
    MessageHub.get_current_instance().update_info('iter', 0)  # as a runner sets it (YOLOX reads it)
    student_before = {k: v.clone() for k, v in model.student.state_dict().items()}
    teacher_before = {k: v.clone() for k, v in model.teachers['teacher'].state_dict().items()}
    logs = [model.train_step(batch, optim) for batch in real_batches(family.task, composite)]
    for log in logs:
        assert all(torch.isfinite(torch.as_tensor(v)).all() for v in log.values()), log
    student_moved = any(not torch.equal(student_before[k], v)
                        for k, v in model.student.state_dict().items() if v.is_floating_point())
    teacher_kept = all(
        torch.equal(teacher_before[k], v)
        for k, v in model.teachers['teacher'].state_dict().items())
    assert student_moved and teacher_kept
    features, logits = observed_kd(logs[-1])
    observed = dict(
        zip(KD_KINDS,
            (features, logits,
             all(
                 loss is not None and bool(torch.isfinite(loss).all()) and bool((loss > 0).all())
                 for loss in teacher_losses))))
    # the README row of this family says what this run showed
    row = [
        line for line in readme_table({
            name: observed
        }).splitlines() if line.startswith(f'| {name} |')
    ]
    assert row and row[0] in readme_block(readme())
    assert observed == dict.fromkeys(KD_KINDS, True)
