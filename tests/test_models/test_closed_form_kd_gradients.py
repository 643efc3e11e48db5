"""The agreement reward without a backward pass through the KD terms: the closed-form gradients
of the logit KD (sigmoid KL on a RetinaNet's anchors, softmax KL on a classifier's logits) give
the same agreement as autograd, on real models, with and without a foreground threshold; and
the reward no longer differentiates the KD terms."""
import pytest
import torch

from mmtkd.benchmark.recommended import FIRST_CREDIT_AGENT, recommended_weighting
from mmtkd.engine import AgentLearner
from mmtkd.models.distillers.task_agreement import summed_task_loss, task_agreement
from mmtkd.models.losses import LogitKLDivLoss, SigmoidKLDivLoss
from .test_distiller import batch, build
from .test_pay_only_for_configured_kd import detection_batch, detection_distiller, retinanet_teacher

__all__ = ['retinanet_teacher']  # the fixture, imported for pytest


@pytest.mark.parametrize('loss', [
    SigmoidKLDivLoss(temperature=2.0, loss_weight=0.5),
    LogitKLDivLoss(temperature=4.0, loss_weight=3.0)
])
def test_student_gradient_is_the_autograd_one(loss):
    student = torch.randn(3, 5, 2, 2, requires_grad=True)
    teacher = torch.randn(3, 5, 2, 2)
    (expected, ) = torch.autograd.grad(
        loss(student, teacher, reduction_override='none').sum(), student)
    torch.testing.assert_close(loss.student_gradient(student, teacher), expected)


def _agreements(model, data, threshold=None, margin=False):
    """The agreement reward with the task's closed-form KD gradients and with autograd (on the
    foreground anchors' class margins with ``margin``, as the recommended agent measures it)."""
    inputs, samples = model.data_preprocessor(data, True).values()
    teacher_outs = model.teacher_forwards(inputs, samples)
    losses, student_out = model.task.student_forward(model.student, inputs, samples)
    if threshold is not None:  # half the teacher's anchors count as foreground
        max_logits = torch.cat(
            [model.task._per_anchor_view(t).amax(2).flatten() for t in teacher_outs[0].logits])
        model.task.foreground_threshold = float(max_logits.median().sigmoid())
    logit_kd = model._logit_kd(student_out, teacher_outs, samples)
    kd_grads = model.task.logit_kd_gradients(model.logit_kd_loss, student_out, teacher_outs)
    assert kd_grads is not None
    scores = model.task.agreement_scores(student_out)
    task_loss = summed_task_loss(losses)
    mask = direction = None
    if margin:
        mask = model.task.agreement_mask(student_out, 'foreground')
        assert 0 < mask.sum() < mask.numel()
        direction = model.task.agreement_direction(student_out)
    closed = task_agreement(
        None if margin else task_loss,
        logit_kd,
        scores,
        mask,
        direction=direction,
        kd_grads=kd_grads)
    if margin:  # the closed form changed it in place
        direction = model.task.agreement_direction(student_out)
    return closed, task_agreement(
        task_loss, logit_kd, scores, mask, batched=True, direction=direction)


@pytest.mark.parametrize('threshold,margin', [(None, False), ('median', False), (None, True),
                                              ('median', True)])
def test_detection_closed_form_equals_autograd(retinanet_teacher, threshold, margin):
    model = detection_distiller(retinanet_teacher)
    closed, by_autograd = _agreements(model, detection_batch(), threshold, margin)
    assert closed.abs().sum() > 0
    torch.testing.assert_close(closed, by_autograd, atol=1e-5, rtol=1e-4)


def test_classification_closed_form_equals_autograd(teacher_checkpoints):
    model = build(teacher_checkpoints)
    closed, by_autograd = _agreements(model, batch())
    assert closed.abs().sum() > 0
    torch.testing.assert_close(closed, by_autograd, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize('agent,backward_passes', [('first', 1), ('recommended', 0)])
def test_agreement_reward_differentiates_no_kd_term(retinanet_teacher, monkeypatch, agent,
                                                    backward_passes):
    """With the closed form, the reward's only backward pass is the task loss's; with the class
    margin in its place (the recommended agent on a detector) there is none."""
    weighting = FIRST_CREDIT_AGENT if agent == 'first' else recommended_weighting()
    model = detection_distiller(retinanet_teacher, weighting=weighting)
    AgentLearner.attach_to(model)  # as MTKDRLAgentHook does
    calls = []
    grad = torch.autograd.grad
    monkeypatch.setattr(torch.autograd, 'grad', lambda *a, **k: calls.append(k) or grad(*a, **k))
    inputs, samples = model.data_preprocessor(detection_batch(), True).values()
    model.loss(inputs, samples)
    assert len(calls) == backward_passes and not any(c.get('is_grads_batched') for c in calls)


@pytest.mark.parametrize('region', ['foreground', 'foreground_class'])
def test_agreement_on_the_foreground_support_equals_the_full_layout(retinanet_teacher, region):
    """On a real RetinaNet batch: the support holds every score of every positive anchor (its
    positions give the full-layout mask, direction and closed-form gradients exactly), and the
    agreement computed there only equals the one computed on every score, with the class
    margin and with the task loss's gradient (autograd, gathered)."""
    model = detection_distiller(retinanet_teacher)
    inputs, samples = model.data_preprocessor(detection_batch(), True).values()
    teacher_outs = model.teacher_forwards(inputs, samples)
    losses, student_out = model.task.student_forward(model.student, inputs, samples)
    logit_kd = model._logit_kd(student_out, teacher_outs, samples)
    scores, task = model.task.agreement_scores(student_out), model.task
    support = task.agreement_support(student_out)
    total = sum(s[0].numel() for s in student_out.logits)
    assert support.valid.any() and support.positions.shape[1] < total / 10

    full_mask = task.agreement_mask(student_out, region)
    mask = task.agreement_mask(student_out, region, support)
    assert mask.sum() == full_mask.sum() > 0  # no foreground score is left out
    torch.testing.assert_close(full_mask.gather(1, support.positions), mask)
    direction = task.agreement_direction(student_out, support)
    torch.testing.assert_close(
        task.agreement_direction(student_out).gather(1, support.positions), direction)
    gradients = zip(
        task.logit_kd_gradients(model.logit_kd_loss, student_out, teacher_outs),
        task.logit_kd_gradients(model.logit_kd_loss, student_out, teacher_outs, support))
    for full, gathered in gradients:
        torch.testing.assert_close(full.gather(1, support.positions), gathered)

    def agreement(with_support, margin):
        extra = dict(support=support) if with_support else {}
        return task_agreement(
            None if margin else summed_task_loss(losses),
            logit_kd,
            scores,
            task.agreement_mask(student_out, region, **extra),
            direction=task.agreement_direction(student_out, **extra) if margin else None,
            kd_grads=task.logit_kd_gradients(model.logit_kd_loss, student_out, teacher_outs,
                                             **extra),
            support=support.positions if with_support else None)

    for margin in (True, False):
        on_support = agreement(True, margin)
        assert on_support.abs().sum() > 0
        torch.testing.assert_close(on_support, agreement(False, margin), atol=1e-5, rtol=1e-4)
