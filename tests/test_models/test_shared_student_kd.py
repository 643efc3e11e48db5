"""One student's KD to several teachers at once (``shared_student_kd``): the same values and
gradients as one autograd term per teacher (also batched, as the agreement reward takes them),
nothing but its inputs kept for the backward pass, and a RetinaNet distiller's logit KD through
it equal to the per-teacher one."""
import pytest
import torch

from mmtkd.models.losses import FeatureMSELoss, LogitKLDivLoss, SigmoidKLDivLoss, shared_student_kd
from mmtkd.models.tasks import BaseTaskAdapter
from .test_pay_only_for_configured_kd import detection_batch, detection_distiller, retinanet_teacher

__all__ = ['retinanet_teacher']  # the fixture, imported for pytest

LOSSES = [
    SigmoidKLDivLoss(),
    SigmoidKLDivLoss(temperature=2.0, loss_weight=0.5),
    LogitKLDivLoss(temperature=4.0, loss_weight=3.0)
]


def per_teacher(loss, student, teachers):
    """The reference: one autograd term per teacher, summed per sample."""
    return torch.stack([
        loss(student, t, reduction_override='none').reshape(student.shape[0], -1).sum(1)
        for t in teachers
    ], 1)


@pytest.mark.parametrize('loss', LOSSES)
def test_values_and_gradients_are_the_per_teacher_ones(loss):
    torch.manual_seed(0)
    student = torch.randn(3, 5, 4, 4, requires_grad=True)
    teachers = [torch.randn(3, 5, 4, 4) for _ in range(3)]
    weights = torch.rand(3, 3)
    expected = per_teacher(loss, student, teachers)
    shared = shared_student_kd(loss, student, teachers)
    torch.testing.assert_close(shared, expected)
    for out in (expected, shared):  # a weighted mixture, as the distiller's loss
        out.grad_student = torch.autograd.grad((out * weights).sum(), student, retain_graph=True)
    torch.testing.assert_close(shared.grad_student, expected.grad_student)
    # one gradient per teacher in one batched backward pass (the agreement reward's autograd
    # fallback)
    selectors = torch.eye(3)[:, None, :].expand(3, 3, 3)
    batched = [
        torch.autograd.grad(out, student, selectors, is_grads_batched=True, retain_graph=True)[0]
        for out in (expected, shared)
    ]
    torch.testing.assert_close(batched[1], batched[0])


def saved_storages(fn):
    """The storages autograd keeps for the backward pass of what ``fn`` computes."""
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        fn()
    return {t.untyped_storage().data_ptr() for t in saved}


def test_keeps_only_its_inputs_for_the_backward_pass():
    student = torch.randn(2, 6, 8, 8, requires_grad=True)
    teachers = [torch.randn(2, 6, 8, 8) for _ in range(3)]
    inputs = {x.untyped_storage().data_ptr() for x in [student] + teachers}
    loss = SigmoidKLDivLoss()
    assert saved_storages(lambda: shared_student_kd(loss, student, teachers)) <= inputs
    # where autograd keeps each teacher's soft targets (what the shared form saves)
    assert saved_storages(lambda: per_teacher(loss, student, teachers)) - inputs


def test_refuses_what_it_cannot_differentiate():
    with pytest.raises(TypeError, match='FeatureMSELoss has no closed-form'):
        shared_student_kd(FeatureMSELoss(), torch.zeros(1, 2), [torch.zeros(1, 2)])
    with pytest.raises(ValueError, match=r"teacher inputs \(1, 3\) differ from the student's"):
        shared_student_kd(SigmoidKLDivLoss(), torch.zeros(1, 2), [torch.zeros(1, 3)])


def test_retinanet_logit_kd_is_the_per_teacher_one(retinanet_teacher):
    model = detection_distiller(retinanet_teacher, ('a', 'b', 'c')).train()
    inputs, samples = model.data_preprocessor(detection_batch(), True).values()
    teacher_outs = model.teacher_forwards(inputs, samples)
    _, student_out = model.task.student_forward(model.student, inputs, samples)
    weights = torch.rand(len(samples), 3)
    values, grads = [], []
    for logit_kds in (model.task.logit_kds,
                      lambda *args: BaseTaskAdapter.logit_kds(model.task, *args)):
        kd = logit_kds(model.logit_kd_loss, student_out, teacher_outs, samples)
        values.append(kd)
        grads.append(
            torch.autograd.grad((kd * weights).sum(), student_out.logits, retain_graph=True))
    assert values[0].shape == (len(samples), 3) and (values[0] > 0).all()
    # through the shared form: no soft targets kept for the backward pass
    held = {
        x.untyped_storage().data_ptr()
        for out in [student_out] + teacher_outs
        for x in out.logits
    }
    assert saved_storages(lambda: model.task.logit_kds(model.logit_kd_loss, student_out,
                                                       teacher_outs, samples)) <= held
    torch.testing.assert_close(values[0], values[1])
    for shared, reference in zip(*grads):
        torch.testing.assert_close(shared, reference)


def test_teacher_entropies_are_computed_before_the_students_forward(retinanet_teacher):
    """EBKD's signal on a single-stage detector: its temporaries (the scores of every level,
    their sigmoid and entropy) exist before the student's activations do, so they never raise
    the step's peak memory."""
    model = detection_distiller(
        retinanet_teacher, ('a', ), weighting=dict(type='mmtkd.EntropyWeighting')).train()
    events = []
    entropy = model.task.entropy
    model.task.entropy = lambda out: events.append('entropy') or entropy(out)
    model.student.backbone.register_forward_hook(lambda *_: events.append('student'))
    inputs, samples = model.data_preprocessor(detection_batch(), True).values()
    losses = model(inputs, samples, mode='loss')
    assert events == ['entropy', 'student'] and losses['loss_logit_kd'] > 0


def test_a_teacher_with_other_levels_takes_the_per_teacher_path():
    """The shared form needs every level of the student's shape: a teacher with fewer levels is
    compared one teacher at a time (on the levels they share), as before."""
    from mmtkd.models.tasks import DetectionTask, DistillOutputs
    task = DetectionTask()
    task.cls_out_channels = 2
    student = DistillOutputs(
        [torch.randn(2, 2, 4, 4), torch.randn(2, 2, 2, 2)], [torch.zeros(2, 1, 1, 1)])
    teachers = [
        DistillOutputs([torch.randn(2, 2, 4, 4), torch.randn(2, 2, 2, 2)], []),
        DistillOutputs([torch.randn(2, 2, 4, 4)], [])
    ]
    loss = SigmoidKLDivLoss()
    torch.testing.assert_close(
        task.logit_kds(loss, student, teachers, None),
        BaseTaskAdapter.logit_kds(task, loss, student, teachers, None))
