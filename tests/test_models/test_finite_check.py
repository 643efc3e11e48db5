"""A teacher with a NaN parameter stops training at its first step, naming the teacher and the
term, for every weighting strategy; numeric options are type-checked at build time."""
import pytest
import torch
from mmengine.registry import MODELS

from mmtkd.engine import AgentLearner
from mmtkd.testing import tiny_classification_distiller_cfg
from ..conftest import teacher_configs
from .test_distiller import batch

WEIGHTINGS = [
    dict(type='mmtkd.AverageWeighting'),
    dict(type='mmtkd.ConfidenceWeighting'),
    dict(type='mmtkd.EntropyWeighting'),
    dict(type='mmtkd.MTKDRLWeighting', warmup_epochs=1),  # in warm-up: every weight is 1
    dict(
        type='mmtkd.MTKDRLWeighting', update='ppo', mixing='none', state='compact', warmup_iters=0),
]


def build(teacher_checkpoints, **kwargs):
    model = MODELS.build(
        tiny_classification_distiller_cfg(teacher_checkpoints, teacher_configs(), **kwargs))
    AgentLearner.attach_to(model)  # as MTKDRLAgentHook does (None for stateless ones)
    return model.train()


@pytest.mark.parametrize('weighting', WEIGHTINGS, ids=lambda w: w['type'] + w.get('update', ''))
def test_nan_teacher_stops_the_first_step_and_is_named(teacher_checkpoints, weighting):
    model = build(teacher_checkpoints, weighting=weighting)
    with torch.no_grad():
        model.teachers['res34'].head.fc.weight[0, 0] = float('nan')
    data = model.data_preprocessor(batch(), training=True)
    with pytest.raises(FloatingPointError, match=r"logit KD term.*teacher 'res34'") as info:
        model(**data, mode='loss')
    assert 'res18' not in str(info.value) and 'mbv2' not in str(info.value)


def test_nan_in_every_teacher_points_at_the_student(teacher_checkpoints):
    model = build(teacher_checkpoints)
    with torch.no_grad():
        model.student.head.fc.bias.fill_(float('inf'))
    data = model.data_preprocessor(batch(), training=True)
    with pytest.raises(FloatingPointError, match='every teacher.*student'):
        model(**data, mode='loss')


def test_finite_steps_pass_and_the_check_can_be_switched_off(teacher_checkpoints):
    model = build(teacher_checkpoints)
    data = model.data_preprocessor(batch(), training=True)
    assert torch.isfinite(model(**data, mode='loss')['loss_logit_kd'])
    model = build(teacher_checkpoints, check_finite=False)
    with torch.no_grad():
        model.teachers['res34'].head.fc.weight[0, 0] = float('nan')
    assert torch.isnan(model(**data, mode='loss')['loss_logit_kd'])


@pytest.mark.parametrize('key, value', [('alpha', '1.0'), ('beta', None), ('alpha', True)])
def test_non_numeric_loss_weights_are_refused_at_build(teacher_checkpoints, key, value):
    with pytest.raises(TypeError, match=f'{key} must be a number'):
        build(teacher_checkpoints, **{key: value})


@pytest.mark.parametrize('term, message', [
    ('embeddings', r"pooled features \(agent state\).*teacher 'b'"),
    ('feature_cos', r"feature similarity.*teacher 'b'"),
    ('student_loss', r"student's per-sample loss.*every teacher"),
    ('logit_summaries', r"logit summary \(agent state\).*teacher 'c'"),
    (None, None),
])
def test_each_term_of_the_table_is_checked_and_named(term, message):
    """(B, M) terms, lists of M tensors and the student's (B,) loss all enter the one table; the
    error names the term and the teacher whatever group the term is in."""
    from mmtkd.models.distillers.finite_check import raise_if_not_finite
    from mmtkd.models.weighting import TeacherSignals, TeacherWeights
    signals = TeacherSignals(
        logit_kd=torch.ones(2, 3),
        feature_kd=torch.ones(2, 3),
        feature_cos=torch.ones(2, 3),
        embeddings=[torch.ones(2, 4) for _ in range(3)],
        logit_summaries=[torch.ones(2, width) for width in (3, 3, 2)],  # shapes differ
        student_loss=torch.ones(2))
    if term == 'embeddings':
        signals.embeddings[1][0, 2] = float('inf')
    elif term == 'feature_cos':
        signals.feature_cos[1, 1] = float('nan')
    elif term == 'student_loss':
        signals.student_loss[0] = float('nan')
    elif term == 'logit_summaries':
        signals.logit_summaries[2][1, 1] = float('nan')
    weights = TeacherWeights(torch.ones(2, 3), torch.ones(2, 3))
    if term is None:
        raise_if_not_finite(signals, weights, ['a', 'b', 'c'])  # finite: passes
        return
    with pytest.raises(FloatingPointError, match=message):
        raise_if_not_finite(signals, weights, ['a', 'b', 'c'])
