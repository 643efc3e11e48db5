"""AVER, CA-MKD and EBKD against hand-computed weights."""
import math

import torch

from mmtkd.models.weighting import (AverageWeighting, ConfidenceWeighting, EntropyWeighting,
                                    FixedWeighting, TeacherSignals)


def make_signals(teacher_loss=None, teacher_entropy=None, batch=1, teachers=2):
    zeros = torch.zeros(batch, teachers)
    return TeacherSignals(
        logit_kd=zeros,
        feature_kd=zeros,
        feature_cos=zeros,
        teacher_loss=zeros if teacher_loss is None else teacher_loss,
        teacher_entropy=zeros if teacher_entropy is None else teacher_entropy,
        teacher_confidence=zeros,
        embeddings=[],
        logit_summaries=[],
        student_loss=torch.zeros(batch))


def test_average_weighting_is_one_over_m():
    weights = AverageWeighting()(make_signals(batch=3, teachers=4))
    torch.testing.assert_close(weights.logit, torch.full((3, 4), 0.25))
    torch.testing.assert_close(weights.feature, torch.full((3, 4), 0.25))


def test_average_weighting_warmup_follows_the_runners_iteration():
    import pytest
    from mmengine.logging import MessageHub
    weighting = AverageWeighting(warmup_iters=5)
    hub = MessageHub.get_instance('test_aver_warmup')
    for iteration, expected in ((0, 1.0), (4, 1.0), (5, 0.25), (9, 0.25)):
        hub.update_info('iter', iteration)
        weights = weighting(make_signals(batch=2, teachers=4))
        torch.testing.assert_close(weights.logit, torch.full((2, 4), expected))
    hub.update_info('iter', 0)
    assert weighting.eval()(make_signals(teachers=4)).logit[0, 0] == 0.25  # not when testing
    with pytest.raises(ValueError, match='warmup_iters must be >= 0'):
        AverageWeighting(warmup_iters=-1)


def test_fixed_weighting_gives_each_teacher_its_weight_on_every_sample():
    weights = FixedWeighting(weights=[0, 0.25, 0.75])(make_signals(batch=2, teachers=3))
    expected = torch.tensor([[0.0, 0.25, 0.75], [0.0, 0.25, 0.75]])
    torch.testing.assert_close(weights.logit, expected)
    torch.testing.assert_close(weights.feature, expected)


def test_fixed_weighting_rejects_weights_that_cannot_weigh_a_pool():
    import pytest
    for bad in ([], [0, 0], [-0.5, 1.0], [float('nan'), 1.0]):
        with pytest.raises(ValueError, match='non-negative and not all zero, one per teacher'):
            FixedWeighting(weights=bad)
    weighting = FixedWeighting(weights=[0.5, 0.5])
    weighting.setup(num_teachers=2, embed_dims=[4, 4], num_classes=10, beta=1.0)
    with pytest.raises(ValueError, match='2 weights for 3 teachers'):
        weighting.setup(num_teachers=3, embed_dims=[4, 4, 4], num_classes=10, beta=1.0)


def test_confidence_weighting_matches_camkd():
    # softmax([0, ln 3]) = [0.25, 0.75] -> (1 - s) / (M - 1) = [0.75, 0.25]
    signals = make_signals(teacher_loss=torch.tensor([[0.0, math.log(3)], [1.0, 1.0]]), batch=2)
    weights = ConfidenceWeighting()(signals)
    torch.testing.assert_close(weights.logit, torch.tensor([[0.75, 0.25], [0.5, 0.5]]))
    torch.testing.assert_close(weights.feature, weights.logit)


def test_confidence_weighting_three_teachers_sum_to_one():
    signals = make_signals(teacher_loss=torch.tensor([[0.1, 2.0, 0.7]]), teachers=3)
    weights = ConfidenceWeighting()(signals).logit
    expected = (1 - torch.tensor([[0.1, 2.0, 0.7]]).softmax(1)) / 2
    torch.testing.assert_close(weights, expected)
    assert weights.sum().item() == __import__('pytest').approx(1.0)
    assert weights[0, 0] > weights[0, 2] > weights[0, 1]


def test_entropy_weighting_matches_ebkd():
    signals = make_signals(teacher_entropy=torch.tensor([[1.0, 3.0]]))
    weights = EntropyWeighting()(signals)
    torch.testing.assert_close(weights.logit, torch.tensor([[0.75, 0.25]]))


def test_single_teacher_gets_weight_one():
    signals = make_signals(
        teacher_loss=torch.tensor([[0.3]]), teacher_entropy=torch.tensor([[0.2]]), teachers=1)
    assert ConfidenceWeighting()(signals).logit.item() == 1.0
    assert EntropyWeighting()(signals).logit.item() == 1.0
