"""The hinged credit (``CreditUpdate(scale='hinge')``) and the foreground-only agreement
(``TaskAgreementReward(region='foreground')``): by hand, and on a real detector's anchors."""
import pytest
import torch

from mmtkd.engine.agent.reward_normalisation import hinged_at_zero, normalise_credit
from mmtkd.engine.agent.rewards import TaskAgreementReward
from mmtkd.models.distillers.task_agreement import task_agreement
from mmtkd.models.tasks import DetectionTask, DistillOutputs
from mmtkd.models.tasks.base_task import concat_levels


def test_teachers_that_agree_on_average_are_not_ranked_by_how_much():
    credit = [torch.tensor([[0.3, 0.2, -0.1]]), torch.tensor([[0.5, 0.2, -0.3]])]
    # window means 0.4, 0.2, -0.2: the two positive ones shift to 0, the negative one stays
    shifted = hinged_at_zero(credit)
    torch.testing.assert_close(torch.cat(shifted).mean(0), torch.tensor([0.0, 0.0, -0.2]))
    centred = torch.cat(normalise_credit(credit, 'hinge'))
    torch.testing.assert_close(centred.sum(1), torch.zeros(2))  # centred over teachers
    means = centred.mean(0)
    assert means[0] == pytest.approx(means[1]) and means[2] < means[0]
    # without the hinge, the softer good teacher is below the better one
    plain = torch.cat(normalise_credit(credit, 'none')).mean(0)
    assert plain[1] < plain[0] - 0.1


def test_foreground_agreement_ignores_the_other_scores():
    scores = torch.tensor([[2.0, -1.0, 0.5]], requires_grad=True)
    target = torch.tensor([[1.0, 0.0, 1.0]])
    task_loss = torch.nn.functional.binary_cross_entropy_with_logits(
        scores, target, reduction='sum')
    # teacher 0 agrees with the task on element 0 only, teacher 1 on elements 1 and 2 only
    kd = torch.stack([((scores - torch.tensor([[5.0, 3.0, -3.0]]))**2).sum(1),
                      ((scores - torch.tensor([[-5.0, -3.0, 3.0]]))**2).sum(1)], 1)
    mask = torch.tensor([[1.0, 0.0, 0.0]])
    only_first = task_agreement(task_loss, kd, [scores], mask)
    torch.testing.assert_close(only_first, torch.tensor([[1.0, -1.0]]))
    everywhere = task_agreement(task_loss, kd, [scores])
    assert everywhere[0, 0] < 1 and everywhere[0, 1] > -1


def test_detection_foreground_masks_follow_the_anchor_layout():
    task = DetectionTask()
    task.cls_out_channels = 2
    # one level, 2 anchors per location, 1 x 2 locations; mmdet's order is (H, W, A)
    scores = torch.zeros(1, 2 * 2, 1, 2)
    labels = torch.tensor([[2, 1, 2, 2]])  # background = 2; anchor 1 of location 0 is positive
    targets = type('Targets', (), dict(labels=[labels]))()
    mask = task.agreement_mask(DistillOutputs([scores], [], dict(anchor_targets=targets)))
    expected = torch.zeros(1, 2, 2, 1, 2, dtype=torch.bool)  # (B, A, K, H, W)
    expected[0, 1, :, 0, 0] = True
    torch.testing.assert_close(mask, expected.reshape(1, 4 * 2))
    assert task.agreement_mask(DistillOutputs([scores], [], {})) is None


def test_region_and_batching_are_checked_and_reach_the_weighting():
    with pytest.raises(ValueError, match='region must be one of'):
        TaskAgreementReward(region='background')
    from mmengine.registry import MODELS
    weighting = MODELS.build(
        dict(
            type='mmtkd.MTKDRLWeighting',
            update='credit',
            reward=dict(type='mmtkd.TaskAgreementReward', region='foreground', batched=False),
            state='constant',
            mixing='none',
            warmup_iters=0))
    assert weighting.agreement_region == 'foreground' and weighting.agreement_batched is False


def test_detection_foreground_class_masks_keep_the_assigned_class_only():
    task = DetectionTask()
    task.cls_out_channels = 3
    # one level, 2 anchors per location, 1 x 2 locations; background = 3
    scores = torch.zeros(2, 2 * 3, 1, 2)
    # image 0: anchor 1 of location 0 is class 2; image 1: anchor 0 of location 1 is class 0
    labels = torch.tensor([[3, 2, 3, 3], [3, 3, 0, 3]])
    targets = type('Targets', (), dict(labels=[labels]))()
    outputs = DistillOutputs([scores], [], dict(anchor_targets=targets))
    mask = task.agreement_mask(outputs, 'foreground_class')
    expected = torch.zeros(2, 2, 3, 1, 2, dtype=torch.bool)  # (B, A, K, H, W)
    expected[0, 1, 2, 0, 0] = True
    expected[1, 0, 0, 0, 1] = True
    torch.testing.assert_close(mask, expected.reshape(2, 6 * 2))
    every_class = task.agreement_mask(outputs, 'foreground')
    assert every_class.sum() == 2 * 3 and (every_class >= mask).all()


def test_class_region_turns_a_teacher_with_rolled_classes_against_the_task():
    """A positive anchor of class 0 (of four), the student still at RetinaNet's prior: a teacher
    sure of class 1 there, below the student on class 0, is near-orthogonal to the task over all
    of the anchor's scores (it agrees on the classes both push down) but pulls the assigned
    class's score down: on that score only, its agreement is -1; a teacher sure of class 0
    agrees on both regions."""
    scores = torch.full((1, 4), -4.6, requires_grad=True)
    target = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    task_loss = torch.nn.functional.binary_cross_entropy_with_logits(
        scores, target, reduction='sum')

    def sigmoid_kd(teacher_logits):
        p = torch.tensor([teacher_logits]).sigmoid()
        return torch.nn.functional.binary_cross_entropy_with_logits(
            scores, p, reduction='none').sum(1)

    kd = torch.stack([sigmoid_kd([2.0, -6.0, -6.0, -6.0]), sigmoid_kd([-6.0, 2.0, -6.0, -6.0])], 1)
    every_class = task_agreement(task_loss, kd, [scores], torch.ones(1, 4))
    assigned = task_agreement(task_loss, kd, [scores], target)
    assert every_class[0, 0] > 0.9 and assigned[0, 0] > 0.9
    assert abs(every_class[0, 1]) < 0.1
    torch.testing.assert_close(assigned[0, 1], torch.tensor(-1.0))


@pytest.mark.parametrize('batched', [True, False])
def test_agreement_equals_the_cosine_by_hand_batched_or_not(batched):
    """Two levels of per-anchor scores, three teachers' sigmoid KD, a foreground mask: each
    teacher's agreement is the cosine of the two gradients written out by hand, whether the
    teachers' gradients are taken in one batched pass or one at a time."""
    torch.manual_seed(0)
    levels = [torch.randn(2, 6, 4, 4, requires_grad=True), torch.randn(2, 6, 2, 2)]
    levels[1].requires_grad_(True)
    targets = [(torch.rand_like(s) > 0.8).float() for s in levels]
    teachers = [[torch.randn_like(s) for s in levels] for _ in range(3)]
    masks = [(torch.rand_like(s) > 0.5).float() for s in levels]
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    task_loss = sum(bce(s, t, reduction='sum') for s, t in zip(levels, targets))
    kd = torch.stack([
        sum(bce(s, t.sigmoid(), reduction='none').flatten(1).sum(1) for s, t in zip(levels, ts))
        for ts in teachers
    ], 1)
    agreement = task_agreement(task_loss, kd, levels, concat_levels(masks), batched=batched)
    # by hand: d bce(s, p) / ds = sigmoid(s) - p
    task_grad = torch.cat([((s.sigmoid() - t) * m).flatten(1)
                           for s, t, m in zip(levels, targets, masks)], 1).detach()
    for j, ts in enumerate(teachers):
        kd_grad = torch.cat([((s.sigmoid() - t.sigmoid()) * m).flatten(1)
                             for s, t, m in zip(levels, ts, masks)], 1).detach()
        expected = torch.nn.functional.cosine_similarity(task_grad, kd_grad, dim=1)
        torch.testing.assert_close(agreement[:, j], expected)


def test_class_margin_direction_by_hand_and_its_sign_for_a_wrong_class_teacher():
    task = DetectionTask()
    task.cls_out_channels = 3
    scores = torch.zeros(1, 2 * 3, 1, 2)  # 2 anchors x 3 classes, 1 x 2 locations
    labels = torch.tensor([[3, 1, 3, -1]])  # anchor 1 of location 0: class 1; -1 ignored
    targets = type('Targets', (), dict(labels=[labels]))()
    outputs = DistillOutputs([scores], [], dict(anchor_targets=targets))
    direction = task.agreement_direction(outputs)
    expected = torch.zeros(1, 2, 3, 1, 2)  # (B, A, K, H, W)
    expected[0, 1, :, 0, 0] = torch.tensor([0.5, -1.0, 0.5])
    torch.testing.assert_close(direction, expected.reshape(1, 6 * 2))
    assert task.agreement_direction(DistillOutputs([scores], [], {})) is None

    # the student at the prior on a class-0 anchor of four classes: a teacher that raises the
    # right class a little and class 1 a lot loses margin (negative), though on the assigned
    # class alone it agrees with the task; a right teacher agrees on both
    student = torch.full((1, 4), -4.6, requires_grad=True)
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    teachers = torch.tensor([[2.0, -6.0, -6.0, -6.0], [-3.0, 2.0, -6.0, -6.0]])
    kd = torch.stack([bce(student, t[None].sigmoid(), reduction='none').sum(1) for t in teachers],
                     1)
    margin = torch.tensor([[-1.0, 1 / 3, 1 / 3, 1 / 3]])
    by_margin = task_agreement(None, kd, [student], direction=margin)
    assigned = task_agreement(
        bce(student, torch.tensor([[1.0, 0, 0, 0]]), reduction='sum'), kd, [student],
        torch.tensor([[1.0, 0, 0, 0]]))
    assert by_margin[0, 0] > 0.5 and assigned[0, 0] > 0.9
    assert by_margin[0, 1] < -0.2 and assigned[0, 1] > 0.9
