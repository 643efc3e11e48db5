"""The step-memory replay behind ``tools/benchmark/step_memory.py``: the peak of live tensor
bytes, counted from the profiler's allocation and free events in time order."""
import dataclasses
import os.path as osp

import torch

from mmtkd.benchmark.step_memory import (format_table, peak_allocated_bytes, period_peak,
                                         resident_bytes)
from tests.test_models.test_pay_only_for_configured_kd import retinanet_teacher  # noqa: F401

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))

MB = 4 * 2**18  # bytes of 2**18 float32 values


def test_peak_counts_what_is_alive_at_once():
    x = torch.randn(2**18)

    def two_alive_then_one():
        y = x * 2
        z = y + 1  # y and z alive: 2 MB
        del y
        return z.sum()

    def one_alive_at_a_time():
        (x * 2).sum()  # freed before the next one
        (x + 1).sum()

    first, second = peak_allocated_bytes(two_alive_then_one), peak_allocated_bytes(
        one_alive_at_a_time)
    assert 2 * MB <= first['peak'] < 2 * MB + 1024
    assert MB <= second['peak'] < MB + 1024
    assert abs(second['end']) < 1024  # everything freed again


def test_backward_allocations_are_seen():
    """Allocations inside the backward pass, each at its own time."""
    w = torch.randn(2**18, requires_grad=True)
    forward = peak_allocated_bytes(lambda: (w * w).sum())
    backward = peak_allocated_bytes(lambda: (w * w).sum().backward())
    assert MB <= forward['peak'] < MB + 1024  # w * w, freed once summed
    # the backward of w * w: its two products (grad * w, one per factor) alive together
    assert backward['peak'] >= 2 * MB
    assert w.grad is not None


class OneTemporaryAtATime(torch.autograd.Function):
    """Three 1 MB temporaries, each freed by Python before the next one exists."""

    @staticmethod
    def forward(ctx, x):
        total = x.sum()
        for scale in (2, 3, 4):
            total = total + (x * scale).sum()
        return total

    @staticmethod
    def backward(ctx, grad):
        return None


def test_temporaries_freed_inside_a_python_function_are_seen_freed():
    """One profiled operator (the Function) whose children allocate and whose Python code
    frees: one temporary alive at a time, not three."""
    x = torch.randn(2**18)
    assert MB <= peak_allocated_bytes(lambda: OneTemporaryAtATime.apply(x))['peak'] < 2 * MB


def test_resident_bytes_count_shared_storage_once():
    base = torch.zeros(1024)
    assert resident_bytes([base, base.view(32, 32), base[:10], torch.zeros(256)]) == 4096 + 1024


def test_table_ratio_to_aver():

    class Args:
        size, batch, task = 320, 2, 'detection'

    results = dict(
        aver=dict(resident_mb=100.0, step_peak_mb=100.0, peak_mb=200.0),
        mtkd_rl=dict(resident_mb=100.0, step_peak_mb=106.0, peak_mb=206.0))
    table = format_table(results, Args)
    assert '| mtkd_rl | 100.0 | 106.0 | 206.0 | 1.030 | - | - |' in table
    assert '| aver | 100.0 | 100.0 | 200.0 | 1.000 | - | - |' in table
    results['floor'] = dict(resident_mb=100.0, step_peak_mb=87.5, peak_mb=187.5)
    table = format_table(results, Args)
    assert '| mtkd_rl | 100.0 | 106.0 | 206.0 | 1.030 | 1.099 | 1.099 |' in table
    assert '| floor | 100.0 | 87.5 | 187.5 | 0.938 | 1.000 | 1.000 |' in table
    results['mtkd_rl']['teacher_losses'] = True
    results['floor_teacher_losses'] = dict(resident_mb=100.0, step_peak_mb=106.0, peak_mb=206.0)
    assert '| mtkd_rl | 100.0 | 106.0 | 206.0 | 1.030 | 1.099 | 1.000 |' in format_table(
        results, Args)


def test_floor_step_holds_every_teachers_outputs_through_the_students_step(
        retinanet_teacher):  # noqa: F811 (the imported fixture)
    """The floor's memory: the student's step with the teachers' outputs alive, what any
    distillation must keep; a floor that let them go would flatter the distiller's ratio."""
    from mmengine.optim import build_optim_wrapper

    from mmtkd.benchmark.speed import TrainingStep, floor_step, teacher_forwards
    from tests.test_models.test_pay_only_for_configured_kd import (detection_batch,
                                                                   detection_distiller)
    distiller = detection_distiller(retinanet_teacher)
    distiller.train()
    data = detection_batch()
    optim = build_optim_wrapper(distiller.student, dict(optimizer=dict(type='SGD', lr=0.01)))
    training = TrainingStep(lambda: distiller.student.train_step(dict(data), optim), distiller,
                            optim, data, 'cpu')
    args = type('Args', (), dict(teacher_precision='fp32'))
    outputs = [forward() for forward in teacher_forwards(distiller, data, 'cpu', args).values()]
    held = resident_bytes(t for t in _tensors(outputs))
    assert held > 0
    del outputs
    training.step()  # first-step allocations (anchors cached by the head) out of the way
    student = peak_allocated_bytes(training.step)['peak']
    floor = peak_allocated_bytes(floor_step(training, args))
    # the replay sees an operator's allocations net of its own frees, so the held bytes show up
    # at the student's peak up to such in-operator transients; without them held, the floor's
    # peak would be the student's
    assert floor['peak'] >= student + held // 2
    assert floor['end'] == peak_allocated_bytes(training.step)['end']  # nothing kept after


def _tensors(outputs):
    """Every tensor in nested lists / tuples / dicts / dataclasses (``DistillOutputs``)."""
    if isinstance(outputs, torch.Tensor):
        yield outputs
    elif dataclasses.is_dataclass(outputs):
        yield from _tensors(vars(outputs))
    elif isinstance(outputs, dict):
        for value in outputs.values():
            yield from _tensors(value)
    elif isinstance(outputs, (list, tuple)):
        for value in outputs:
            yield from _tensors(value)


def test_floor_with_teacher_losses_adds_mmdets_own_loss_of_each_teacher(
        retinanet_teacher):  # noqa: F811 (the imported fixture)
    """The floor of a weighting that reads the teachers' losses (CA-MKD, the official state):
    each teacher's forward plus mmdet's own loss of it on the batch, the same values as the
    teacher's ``loss`` mode."""
    from mmtkd.benchmark.speed import reads_teacher_losses, teacher_forwards
    from tests.test_models.test_pay_only_for_configured_kd import (detection_batch,
                                                                   detection_distiller)
    distiller = detection_distiller(
        retinanet_teacher, weighting=dict(type='mmtkd.ConfidenceWeighting'))
    assert reads_teacher_losses(distiller)
    assert not reads_teacher_losses(detection_distiller(retinanet_teacher))  # AVER
    data = detection_batch()
    args = type('Args', (), dict(teacher_precision='fp32'))
    (forward, ) = teacher_forwards(distiller, data, 'cpu', args, with_losses=True).values()
    outputs, losses = forward()
    assert outputs.extras['head_outputs'] is not None
    teacher = distiller.teachers['r34']
    batch = distiller.data_preprocessor(dict(data), True)
    with torch.no_grad():
        expected = teacher.loss(batch['inputs'], batch['data_samples'])
    for key in ('loss_cls', 'loss_bbox'):
        assert torch.allclose(sum(losses[key]), sum(expected[key]))


def test_a_reward_measured_one_step_in_every_is_replayed_over_a_whole_period(teacher_checkpoints):
    """The credit agent with ``every=2`` stores (and takes gradients for its agreement on) one
    step in two: after one warm-up step, the next step alone is not the stored one and peaks
    lower; the replay of a period sees the stored step's peak."""
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import MODELS

    from mmtkd.benchmark.recommended import CREDIT_AGENT, candidate_weightings, measured_every
    from mmtkd.benchmark.speed import TrainingStep, reward_period
    from mmtkd.engine import AgentLearner
    from mmtkd.testing import tiny_classification_distiller_cfg
    from ..conftest import teacher_configs
    from ..test_models.test_distiller import batch

    def credit_agent_step():
        torch.manual_seed(0)
        weighting = measured_every(candidate_weightings()[CREDIT_AGENT], 2)
        distiller = MODELS.build(
            tiny_classification_distiller_cfg(teacher_checkpoints, teacher_configs(), weighting))
        learner = AgentLearner.attach_to(distiller)
        distiller.train()
        optim = build_optim_wrapper(distiller, dict(optimizer=dict(type='SGD', lr=0.01)))
        data = batch(4)

        def step():
            distiller.train_step(dict(data), optim)
            learner.take_step()

        return TrainingStep(step, distiller, optim, data, 'cpu', learner)

    training = credit_agent_step()
    assert reward_period(training) == 2
    training.step()  # the warm-up step: stored
    stored_before = len(training.learner.buffer)
    unstored = peak_allocated_bytes(training.step)['peak']
    assert len(training.learner.buffer) == stored_before  # the replayed step was not stored
    training = credit_agent_step()
    training.step()
    whole_period = period_peak(training.step, reward_period(training))['peak']
    assert len(training.learner.buffer) == stored_before + 1  # the period stored one step
    assert whole_period > unstored
