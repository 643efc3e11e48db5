"""The credit with a veto (``TaskAgreementReward(veto=...)``): the credit ranks the teachers, the
veto's sign over the window takes weight from a teacher that pulls against the task; by hand,
on a real RetinaNet (both agreements computed, each as its own setting would be) and on a real
classifier (the veto reuses the credit: one agreement, not two)."""
import pytest
import torch
from mmengine.registry import MODELS

from mmtkd.benchmark.recommended import candidate_weightings
from mmtkd.engine import AgentLearner, CreditUpdate
from mmtkd.engine.agent.reward_normalisation import normalise_credit
from mmtkd.engine.agent.rewards import TaskAgreementReward
from mmtkd.testing import tiny_classification_distiller_cfg
from ..conftest import teacher_configs
from ..test_models.test_distiller import batch
from ..test_models.test_pay_only_for_configured_kd import (detection_batch, detection_distiller,
                                                           retinanet_teacher)

__all__ = ['retinanet_teacher']  # the fixture, imported for pytest

VETO = candidate_weightings()['mtkd_rl_credit_veto']


def test_veto_takes_the_penalty_from_teachers_with_a_negative_mean_only():
    credit = [torch.tensor([[0.6, 0.2, 0.1]]), torch.tensor([[0.4, 0.4, 0.3]])]
    # veto means over the window: +0.3, -0.1 (one sample negative, one not: the mean counts),
    # +0.05
    veto = [torch.tensor([[0.5, 0.2, -0.1]]), torch.tensor([[0.1, -0.4, 0.2]])]
    with_veto = [torch.stack([c, v], -1) for c, v in zip(credit, veto)]
    for scale in CreditUpdate.SCALES:
        plain = torch.cat(normalise_credit(credit, scale))
        vetoed = torch.cat(normalise_credit(with_veto, scale, veto_penalty=2.5))
        torch.testing.assert_close(vetoed, plain - torch.tensor([0.0, 2.5, 0.0]))
    # no penalty, no change
    torch.testing.assert_close(
        torch.cat(normalise_credit(with_veto, veto_penalty=0.0)),
        torch.cat(normalise_credit(credit)))


def test_veto_options_are_checked_and_reach_the_weighting():
    with pytest.raises(ValueError, match='veto must be dict'):
        TaskAgreementReward(veto=dict(region='background'))
    with pytest.raises(ValueError, match='veto must be dict'):
        TaskAgreementReward(veto=dict(direction='class_margin', penalty=3))
    with pytest.raises(ValueError, match='veto_penalty must be >= 0'):
        CreditUpdate(veto_penalty=-1)
    weighting = MODELS.build(VETO)
    assert weighting.agreement_veto == dict(region='foreground', direction='class_margin')
    assert weighting.agreement_region == 'all' and weighting.agreement_direction == 'task_loss'


def _stored_reward(model, data):
    learner = AgentLearner.attach_to(model)  # as MTKDRLAgentHook does
    inputs, samples = model.data_preprocessor(data, True).values()
    model.loss(inputs, samples)
    signals = model.weighting._step.signals
    learner.take_step()
    return signals, learner.buffer[0]['reward']


def test_detector_measures_credit_everywhere_and_the_veto_on_the_class_margin(retinanet_teacher):
    """A real RetinaNet step: the stored reward is (B, M, 2), its first channel the task-loss
    agreement on every anchor (the first agent's credit), its second the class-margin agreement
    on the foreground anchors (the recommended agent's); the update's credit has the usual
    (B, M) shape."""
    first = detection_distiller(
        retinanet_teacher, weighting=candidate_weightings()['mtkd_rl_credit'])
    margin = detection_distiller(
        retinanet_teacher, weighting=candidate_weightings()['mtkd_rl_credit_hinge_margin'])
    model = detection_distiller(retinanet_teacher, weighting=VETO)
    for distiller in (first, margin):  # the same teachers and student
        distiller.load_state_dict(model.state_dict(), strict=False)
    data = detection_batch()
    signals, reward = _stored_reward(model, data)
    batch_size, num_teachers = signals.logit_kd.shape
    assert reward.shape == (batch_size, num_teachers, 2)
    torch.testing.assert_close(reward[..., 0], _stored_reward(first, data)[1])
    torch.testing.assert_close(reward[..., 1], _stored_reward(margin, data)[1])
    assert not torch.allclose(reward[..., 0], reward[..., 1])
    credit = normalise_credit([reward])
    assert credit[0].shape == (batch_size, num_teachers)


def test_classifier_veto_is_its_credit_computed_once(teacher_checkpoints, monkeypatch):
    """A classifier has no foreground nor class margin of its own: the veto is the task-loss
    agreement itself, taken from the same computation (one backward pass of the task loss)."""
    model = MODELS.build(
        tiny_classification_distiller_cfg(teacher_checkpoints, teacher_configs(), weighting=VETO))
    model.train()
    calls = []
    grad = torch.autograd.grad
    monkeypatch.setattr(torch.autograd, 'grad', lambda *a, **k: calls.append(k) or grad(*a, **k))
    signals, reward = _stored_reward(model, batch(size=4))
    assert signals.veto_agreement is signals.task_agreement
    assert reward.shape == (4, 3, 2) and len(calls) == 1
