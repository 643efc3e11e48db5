"""The credit agent: per-teacher credit from gradient agreement, the full-information update that
learns from it, their normalisation, and a learner that leaves the global random stream alone
(so that a seed pairs the student of every weighting)."""
import pytest
import torch
import torch.nn.functional as F
from mmengine.registry import MODELS

from mmtkd.engine import AgentLearner, BaseReward, CreditUpdate
from mmtkd.engine.agent.reward_normalisation import normalise_credit
from mmtkd.models.distillers.task_agreement import task_agreement
from mmtkd.registry import AGENT_REWARDS
from mmtkd.testing import tiny_classification_distiller_cfg
from ..conftest import teacher_configs
from ..test_models.test_distiller import batch

CREDIT = dict(
    type='mmtkd.MTKDRLWeighting',
    update='credit',
    reward='agreement',
    state='compact',
    mixing='none',
    warmup_iters=0)


def train_agent(distiller, learner, data: dict, updates: int = 5, steps_per_update: int = 4):
    """Distil on ``data`` and update the agent after every ``steps_per_update`` steps, as the
    hook does at its interval, ``updates`` times."""
    for _ in range(updates):
        for _ in range(steps_per_update):
            distiller(**data, mode='loss')
            learner.take_step()
        learner.update()


def test_agreement_is_the_cosine_of_task_and_kd_gradients_on_the_class_scores():
    torch.manual_seed(0)
    scores = torch.randn(4, 5, requires_grad=True)
    labels = torch.tensor([0, 1, 2, 3])
    right = F.one_hot(labels, 5).float() * 8  # a confident teacher of the ground truth
    wrong = torch.roll(right, 1, dims=1)  # the same teacher with its classes rolled
    kd_loss = MODELS.build(dict(type='mmtkd.LogitKLDivLoss', temperature=4.0))
    kd = torch.stack([kd_loss(scores, t, reduction_override='none') for t in (right, wrong)], 1)
    task = F.cross_entropy(scores, labels)
    agreement = task_agreement(task, kd, scores)
    # by hand: d CE / dz = softmax(z) - y, d KL_T / dz = T (softmax(z/T) - softmax(t/T))
    g_task = scores.detach().softmax(1) - F.one_hot(labels, 5)
    for m, teacher in enumerate((right, wrong)):
        g_kd = (scores.detach() / 4).softmax(1) - (teacher / 4).softmax(1)
        torch.testing.assert_close(agreement[:, m], F.cosine_similarity(g_task, g_kd, dim=1))
    assert (agreement[:, 0] > 0.5).all() and (agreement[:, 1] < agreement[:, 0]).all()
    assert not agreement.requires_grad


def test_progress_weighs_each_samples_cosine_by_how_much_its_task_still_pulls():
    torch.manual_seed(0)
    scores = torch.randn(4, 5)
    labels = torch.tensor([0, 1, 2, 3])
    scores[0] = F.one_hot(labels[0], 5) * 8  # a sample the student already fits
    scores.requires_grad_()
    teacher = F.one_hot(labels, 5).float() * 2  # right everywhere, softer than the student on 0
    kd_loss = MODELS.build(dict(type='mmtkd.LogitKLDivLoss', temperature=4.0))
    kd = kd_loss(scores, teacher, reduction_override='none')[:, None]
    task = F.cross_entropy(scores, labels)
    cosine = task_agreement(task, kd, scores)
    progress = task_agreement(task, kd, scores, measure='progress')
    g_norm = (scores.detach().softmax(1) - F.one_hot(labels, 5)).norm(dim=1)
    torch.testing.assert_close(progress[:, 0], cosine[:, 0] * g_norm / g_norm.mean())
    # the fitted sample's cosine says the soft teacher pulls against the task; its progress is
    # about nothing, and the teacher's mean credit turns from the cosine's sign to the task's
    assert cosine[0, 0] < -0.5 and progress[0, 0].abs() < 0.01
    assert progress[1:, 0].gt(0).all()
    with pytest.raises(ValueError, match='measure must be one of'):
        task_agreement(task, kd, scores, measure='dot')


def test_the_reward_s_measure_reaches_the_distiller_s_agreement(teacher_checkpoints):
    data, agreements = None, {}
    for measure in ('cosine', 'progress'):
        reward = dict(type='mmtkd.TaskAgreementReward', measure=measure)
        cfg = tiny_classification_distiller_cfg(
            teacher_checkpoints, teacher_configs(), weighting=dict(CREDIT, reward=reward))
        torch.manual_seed(0)  # the same student for both
        distiller = MODELS.build(cfg).train()
        AgentLearner.attach_to(distiller)
        assert distiller.weighting.agreement_measure == measure
        data = data or distiller.data_preprocessor(batch(size=4), training=True)
        distiller(**data, mode='loss')
        agreements[measure] = distiller.weighting._step.signals.task_agreement
    ratio = agreements['progress'] / agreements['cosine']
    # each sample's credits scaled alike across teachers, by its task gradient's share
    torch.testing.assert_close(ratio, ratio[:, :1].expand_as(ratio))
    torch.testing.assert_close(ratio[:, 0].mean(), torch.tensor(1.0))
    assert ratio[:, 0].std() > 0.01
    with pytest.raises(ValueError, match='measure must be one of'):
        AGENT_REWARDS.build(dict(type='TaskAgreementReward', measure='dot'))


def test_a_confidence_gated_agent_weighs_each_sample_by_its_teachers_truth(teacher_checkpoints):
    """``gate='confidence'`` on a real distiller: the teachers' probabilities of the labels are
    computed for it, and the agent's one weight per teacher becomes per-sample weights
    proportional to them, summing to the agent's."""
    cfg = tiny_classification_distiller_cfg(
        teacher_checkpoints,
        teacher_configs(),
        weighting=dict(CREDIT, state='constant', gate='confidence'))
    distiller = MODELS.build(cfg).train()
    AgentLearner.attach_to(distiller)
    data = distiller.data_preprocessor(batch(size=4), training=True)
    distiller(**data, mode='loss')
    step = distiller.weighting._step
    confidence = step.signals.teacher_confidence
    torch.testing.assert_close(confidence, (-step.signals.teacher_loss).exp())
    weights = step.weights.logit
    torch.testing.assert_close(weights.sum(1), torch.ones(4))
    # one agent weight per teacher (constant state), spread by the confidences
    agent = weights / confidence
    torch.testing.assert_close(agent / agent.sum(1, keepdim=True),
                               (agent / agent.sum(1, keepdim=True))[:1].expand(4, -1))
    assert not torch.allclose(weights, weights[:1].expand(4, -1))


def test_distiller_computes_agreement_only_on_the_steps_the_learner_stores(teacher_checkpoints):
    weighting = dict(CREDIT, reward=dict(type='mmtkd.TaskAgreementReward', every=2))
    cfg = tiny_classification_distiller_cfg(
        teacher_checkpoints, teacher_configs(), weighting=weighting)
    distiller = MODELS.build(cfg).train()
    learner = AgentLearner.attach_to(distiller)
    data = distiller.data_preprocessor(batch(size=4), training=True)
    computed = []
    for _ in range(4):
        distiller(**data, mode='loss')
        agreement = distiller.weighting._step.signals.task_agreement
        computed.append(agreement is not None)
        # the agreement reward reads no student loss: no step pays for its per-sample loss
        assert distiller.weighting._step.student_loss is None
        if agreement is not None:
            assert agreement.shape == (4, 3) and (agreement.abs() <= 1 + 1e-5).all()
            assert agreement.std() > 0  # differs per sample and teacher
        learner.take_step()
    assert computed == [True, False, True, False] and len(learner.buffer) == 2
    aver = MODELS.build(
        tiny_classification_distiller_cfg(
            teacher_checkpoints, teacher_configs(),
            weighting=dict(type='mmtkd.AverageWeighting'))).train()
    assert not aver.weighting.learning_signals()  # AVER's step never pays for it


def test_credit_is_centred_over_teachers_and_scaled_over_the_window():
    rewards = [torch.tensor([[1., 2., 6.], [0., 0., 3.]]), torch.tensor([[4., 4., 4.]])]
    out = normalise_credit(rewards)
    centred = torch.cat([r - r.mean(1, keepdim=True) for r in rewards]).flatten()
    torch.testing.assert_close(torch.cat(out).flatten(), centred / centred.std())
    assert all(o.shape == r.shape for o, r in zip(out, rewards))
    torch.testing.assert_close(out[1], torch.zeros(1, 3))  # equal credit: no preference
    # unscaled: centred only, in the reward's own units
    raw = normalise_credit(rewards, scale='none')
    torch.testing.assert_close(torch.cat(raw).flatten(), centred)


def test_credit_update_refuses_an_unknown_scale():
    with pytest.raises(ValueError, match="scale must be one of .*'window'"):
        CreditUpdate(scale='window')


@AGENT_REWARDS.register_module()
class _ThirdTeacherHurts(BaseReward):
    """A per-teacher reward as a registered class: the third teacher always has less credit."""

    per_teacher = True

    def reward(self, step, loss_after=None):
        credit = torch.ones_like(step.signals.logit_kd)
        credit[:, 2] = -1
        return credit


def test_credit_update_moves_weight_off_the_teacher_with_less_credit(teacher_checkpoints):
    weighting = dict(CREDIT, reward=dict(type='mmtkd._ThirdTeacherHurts'), interval=4)
    cfg = tiny_classification_distiller_cfg(
        teacher_checkpoints, teacher_configs(), weighting=weighting)
    distiller = MODELS.build(cfg).train()
    learner = AgentLearner.attach_to(distiller)
    data = distiller.data_preprocessor(batch(size=8), training=True)
    first = distiller(**data, mode='loss')
    assert torch.allclose(first['weight_logit/mbv2'], torch.tensor(1 / 3), atol=0.05)
    distiller.weighting.pop_step()
    train_agent(distiller, learner, data)
    # the raw credit of the last window, per teacher, before centring (what the hook logs)
    torch.testing.assert_close(learner.credit_means, torch.tensor([1., 1., -1.]))
    weights = distiller(**data, mode='loss')
    logit = [weights[f'weight_logit/{t}'].item() for t in ('res18', 'res34', 'mbv2')]
    feat = [weights[f'weight_feat/{t}'].item() for t in ('res18', 'res34', 'mbv2')]
    for row in (logit, feat):
        assert row[2] < 0.1  # the teacher with less credit lost its weight ...
        assert row[0] == pytest.approx(row[1], abs=0.05)  # ... the equal ones stay equal


def test_credit_on_the_logit_head_only_leaves_the_feature_weights_equal(teacher_checkpoints):
    update = dict(type='mmtkd.CreditUpdate', heads=('logit', ))
    weighting = dict(
        CREDIT, reward=dict(type='mmtkd._ThirdTeacherHurts'), update=update, interval=4)
    cfg = tiny_classification_distiller_cfg(
        teacher_checkpoints, teacher_configs(), weighting=weighting)
    distiller = MODELS.build(cfg).train()
    learner = AgentLearner.attach_to(distiller)
    data = distiller.data_preprocessor(batch(size=8), training=True)
    train_agent(distiller, learner, data)
    weights = distiller(**data, mode='loss')
    logit = [weights[f'weight_logit/{t}'].item() for t in ('res18', 'res34', 'mbv2')]
    feat = [weights[f'weight_feat/{t}'].item() for t in ('res18', 'res34', 'mbv2')]
    assert logit[2] < 0.1  # the credit moves the logit weights ...
    assert feat == pytest.approx([1 / 3] * 3, abs=0.02)  # ... and not the feature ones


def test_credit_update_refuses_unknown_heads():
    for heads in ((), ('logits', )):
        with pytest.raises(ValueError, match='heads must be a non-empty subset'):
            CreditUpdate(heads=heads)


def test_per_teacher_reward_needs_a_per_teacher_update():
    with pytest.raises(ValueError, match='per-teacher update rule'):
        MODELS.build(dict(CREDIT, update='official'))
    with pytest.raises(ValueError, match='per-teacher update rule'):
        MODELS.build(dict(CREDIT, reward='official'))


def test_learner_leaves_the_global_random_stream_alone(teacher_checkpoints):
    cfg = tiny_classification_distiller_cfg(
        teacher_checkpoints, teacher_configs(), weighting=CREDIT)
    distiller = MODELS.build(cfg)
    torch.manual_seed(5)
    agents = [AgentLearner.attach_to(distiller, seed=3).agent for _ in range(2)]
    after = torch.rand(3)
    torch.manual_seed(5)
    torch.testing.assert_close(after, torch.rand(3))  # the student's stream is untouched
    for a, b in zip(agents[0].state_dict().values(), agents[1].state_dict().values()):
        torch.testing.assert_close(a, b)  # and the agent starts from its own seed


def test_constant_state_acts_once_per_update_of_the_agent(teacher_checkpoints):
    """With the constant state and no mixing the weights depend on the agent's parameters only:
    the agent network runs once after each change of them (first step, update, load), not once
    per step, and the weights are those the network gives."""
    weighting = dict(
        CREDIT, reward=dict(type='mmtkd._ThirdTeacherHurts'), state='constant', interval=2)
    distiller = MODELS.build(
        tiny_classification_distiller_cfg(
            teacher_checkpoints, teacher_configs(), weighting=weighting)).train()
    learner = AgentLearner.attach_to(distiller)
    calls = []
    learner.agent.policy.register_forward_hook(lambda *args: calls.append(1))
    data = distiller.data_preprocessor(batch(size=4), training=True)

    def weights():
        out = distiller(**data, mode='loss')
        learner.take_step()
        return torch.stack([out[f'weight_logit/{t}'] for t in ('res18', 'res34', 'mbv2')])

    first = [weights() for _ in range(2)]
    assert len(calls) == 1 and torch.equal(first[0], first[1])
    learner.update()  # (its own passes through the network are not counted)
    calls.clear()
    after = [weights() for _ in range(2)]
    assert len(calls) == 1 and after[1][2] < first[0][2]  # re-acted: the third teacher lost weight
    learner.load_state_dict(learner.state_dict())
    weights()
    assert len(calls) == 2
    # what the network gives for the constant state (ones) in eval mode
    learner.agent.eval()
    expected = learner.agent.act(torch.ones(1, 1), torch.zeros(1, 2, 2, 3))['weights']
    torch.testing.assert_close(expected[0, 0], weights())
