"""Feature credit (``TaskAgreementReward(features=True)``): each teacher's feature-KD gradient at
the student's features compared with the task loss's, normalised apart from the logit credit,
and learned into feature weights apart from the logit weights."""
import pytest
import torch
import torch.nn.functional as F
from mmengine.registry import MODELS

from mmtkd.benchmark.recommended import CREDIT_AGENT, candidate_weightings, measured_every
from mmtkd.engine import AgentLearner, BaseReward, CreditUpdate
from mmtkd.engine.agent.reward_normalisation import normalise_credit
from mmtkd.engine.agent.rewards import TaskAgreementReward
from mmtkd.models.distillers.task_agreement import (TaskLossGradients, feature_agreement,
                                                    task_agreement)
from mmtkd.registry import AGENT_REWARDS
from mmtkd.testing import tiny_classification_distiller_cfg
from ..conftest import teacher_configs
from ..test_models.test_distiller import batch
from .test_credit_agent import CREDIT, train_agent

FEATURE_CREDIT = dict(
    CREDIT, reward=dict(type='mmtkd.TaskAgreementReward', features=True), update='credit')
TEACHERS = ('res18', 'res34', 'mbv2')


def _features_head_and_task_loss():
    """A (4, 8, 3, 3) feature map read by a real 1x1-conv head and cross-entropy."""
    torch.manual_seed(0)
    features = torch.randn(4, 8, 3, 3, requires_grad=True)
    head = torch.nn.Conv2d(8, 5, 1)
    labels = torch.tensor([0, 1, 2, 3])
    task = F.cross_entropy(head(features).mean((2, 3)), labels)
    return features, task


def test_feature_agreement_is_the_cosine_of_task_and_feature_kd_gradients():
    """By hand, through a real connector: each teacher's feature-KD gradient at the student's
    features against the task loss's; a teacher whose features are where the task wants the
    student's agrees (+1), one on the other side disagrees (-1), a random one is near 0."""
    features, task = _features_head_and_task_loss()
    (g_task, ) = torch.autograd.grad(task, features, retain_graph=True)
    mse = MODELS.build(dict(type='mmtkd.FeatureMSELoss'))
    resize = MODELS.build(dict(type='mmtkd.ResizeOnlyAdapter', in_channels=8, out_channels=8))
    targets = [
        features.detach() - 0.1 * g_task.sign(),  # where the task loss goes down
        features.detach() + 0.1 * g_task.sign(),  # where it goes up
        torch.randn(4, 8, 3, 3),  # an untrained teacher's
    ]
    kd = torch.stack([mse(resize(features, (3, 3)), t, reduction_override='none') for t in targets],
                     1)
    agreement = feature_agreement(task, kd, [features])
    for m in range(3):
        (g_kd, ) = torch.autograd.grad(kd[:, m].sum(), features, retain_graph=True)
        torch.testing.assert_close(agreement[:, m],
                                   F.cosine_similarity(g_task.flatten(1), g_kd.flatten(1), dim=1))
    assert (agreement[:, 0] > 0.5).all() and (agreement[:, 1] < -0.5).all()
    assert agreement[:, 2].abs().max() < agreement[:, 0].min()
    assert not agreement.requires_grad
    # one teacher at a time: the same values
    torch.testing.assert_close(feature_agreement(task, kd, [features], batched=False), agreement)


def test_both_agreements_share_one_backward_pass_of_the_task_loss():
    """The task loss's gradient at the scores and at the features (through the head) taken
    once: the loss's backward runs once, and both agreements equal those that take the
    gradient themselves."""
    features, _ = _features_head_and_task_loss()
    head = torch.nn.Conv2d(8, 5, 1)
    scores = head(features).mean((2, 3))
    losses = dict(loss_cls=F.cross_entropy(scores, torch.tensor([0, 1, 2, 3])))
    loss_backwards = []
    losses['loss_cls'].grad_fn.register_hook(lambda *grads: loss_backwards.append(1))
    logit_kd = torch.stack([(scores - t).pow(2).sum(1) for t in torch.randn(3, 4, 5)], 1)
    feature_kd = torch.stack([(features - t).pow(2).flatten(1).sum(1)
                              for t in torch.randn(3, 4, 8, 3, 3)], 1)
    task_grads = TaskLossGradients(losses, dict(scores=scores, features=[features]))
    logit = task_agreement(None, logit_kd, scores, direction=task_grads('scores'))
    feature = feature_agreement(None, feature_kd, [features], direction=task_grads('features'))
    assert len(loss_backwards) == 1
    task_loss = losses['loss_cls']
    torch.testing.assert_close(logit, task_agreement(task_loss, logit_kd, scores))
    torch.testing.assert_close(feature, feature_agreement(task_loss, feature_kd, [features]))
    assert feature.abs().max() > 0.05 and logit.abs().max() > 0.05
    # a group the task loss does not read: a zero gradient, whose agreement is 0
    unread = torch.randn(4, 6, requires_grad=True)
    assert not TaskLossGradients(losses, dict(unread=unread))('unread').any()


def test_feature_credit_is_normalised_apart_from_the_logit_credit():
    logit = [torch.tensor([[0.6, 0.2, -0.1]]), torch.tensor([[0.4, 0.4, -0.3]])]
    feature = [torch.tensor([[-0.2, 0.1, 0.3]]), torch.tensor([[-0.4, 0.2, 0.2]])]
    both = [torch.stack([c, f], -1) for c, f in zip(logit, feature)]
    for scale in ('window_std', 'none', 'hinge'):
        out = normalise_credit(both, scale, channels=('credit', 'feature_credit'))
        assert [o.shape for o in out] == [(1, 2, 3)] * 2
        torch.testing.assert_close(
            torch.cat([o[:, 0] for o in out]), torch.cat(normalise_credit(logit, scale)))
        torch.testing.assert_close(
            torch.cat([o[:, 1] for o in out]), torch.cat(normalise_credit(feature, scale)))
    # a veto takes from the logit credit only
    veto = [torch.tensor([[0.5, 0.2, -0.1]]), torch.tensor([[0.1, 0.4, -0.2]])]
    three = [torch.stack([c, v, f], -1) for c, v, f in zip(logit, veto, feature)]
    out = normalise_credit(
        three, 'none', veto_penalty=2.0, channels=('credit', 'veto', 'feature_credit'))
    plain = normalise_credit(both, 'none', channels=('credit', 'feature_credit'))
    torch.testing.assert_close(
        torch.cat(out),
        torch.cat(plain) - torch.tensor([[0.0, 0.0, 2.0], [0.0, 0.0, 0.0]]))


def test_reward_channels_follow_its_options():
    assert TaskAgreementReward().channels == ('credit', )
    assert TaskAgreementReward(features=True).channels == ('credit', 'feature_credit')
    assert TaskAgreementReward(
        veto=dict(), features=True).channels == ('credit', 'veto', 'feature_credit')
    assert 'feature_agreement' in TaskAgreementReward(features=True).signals
    assert 'feature_agreement' not in TaskAgreementReward().signals
    assert 'feature_agreement' in MODELS.build(FEATURE_CREDIT).reward_signals


@AGENT_REWARDS.register_module()
class _FeaturesOfTheFirstHurt(BaseReward):
    """Logit credit against the third teacher, feature credit against the first."""

    per_teacher = True
    channels = ('credit', 'feature_credit')

    def reward(self, step, loss_after=None):
        logit = torch.ones_like(step.signals.logit_kd)
        logit[:, 2] = -1
        feature = torch.ones_like(logit)
        feature[:, 0] = -1
        return torch.stack([logit, feature], -1)


def test_each_head_learns_from_its_own_credit(teacher_checkpoints):
    weighting = dict(CREDIT, reward=dict(type='mmtkd._FeaturesOfTheFirstHurt'), interval=4)
    distiller = MODELS.build(
        tiny_classification_distiller_cfg(
            teacher_checkpoints, teacher_configs(), weighting=weighting)).train()
    learner = AgentLearner.attach_to(distiller)
    data = distiller.data_preprocessor(batch(size=8), training=True)
    train_agent(distiller, learner, data)
    torch.testing.assert_close(learner.credit_means, torch.tensor([[1., -1.], [1., 1.], [-1., 1.]]))
    weights = distiller(**data, mode='loss')
    logit = [weights[f'weight_logit/{t}'].item() for t in TEACHERS]
    feat = [weights[f'weight_feat/{t}'].item() for t in TEACHERS]
    assert logit[2] < 0.1 and logit[0] == pytest.approx(logit[1], abs=0.05)
    assert feat[0] < 0.1 and feat[1] == pytest.approx(feat[2], abs=0.05)


def test_distiller_stores_both_agreements_on_a_real_classifier(teacher_checkpoints, monkeypatch):
    distiller = MODELS.build(
        tiny_classification_distiller_cfg(
            teacher_checkpoints, teacher_configs(), weighting=FEATURE_CREDIT)).train()
    learner = AgentLearner.attach_to(distiller)
    task_loss_backwards = []
    grad = torch.autograd.grad

    def counted_grad(outputs, *args, **kwargs):
        if outputs.dim() == 0:  # the task loss (the KD terms are (B, M))
            task_loss_backwards.append(1)
        return grad(outputs, *args, **kwargs)

    monkeypatch.setattr(torch.autograd, 'grad', counted_grad)
    distiller(**distiller.data_preprocessor(batch(size=4), training=True), mode='loss')
    monkeypatch.undo()
    assert len(task_loss_backwards) == 1  # shared by the logit and the feature agreement
    signals = distiller.weighting._step.signals
    learner.take_step()
    reward = learner.buffer[0]['reward']
    assert reward.shape == (4, 3, 2)
    torch.testing.assert_close(reward[..., 0], signals.task_agreement)
    torch.testing.assert_close(reward[..., 1], signals.feature_agreement)
    assert (signals.feature_agreement.abs() <= 1 + 1e-5).all()
    assert signals.feature_agreement.std() > 0  # differs per sample and teacher
    assert not torch.allclose(signals.feature_agreement, signals.task_agreement)
    assert learner.update() is not None


def test_feature_credit_without_feature_kd_is_refused_before_training(teacher_checkpoints):
    cfg = tiny_classification_distiller_cfg(
        teacher_checkpoints, teacher_configs(), weighting=FEATURE_CREDIT)
    cfg['feature_kd_loss'] = None
    with pytest.raises(ValueError, match='feature_kd_loss=None'):
        MODELS.build(cfg)


def test_feature_credit_can_be_ranked_where_the_logit_credit_is_hinged():
    """``CreditUpdate(scale='hinge', feature_scale='none')``: a teacher whose features agree
    more than the others' keeps that lead in its feature credit, while the logit credit's hinge
    zeroes positive means as before."""
    logit = [torch.tensor([[0.3, 0.1, -0.2]])]
    feature = [torch.tensor([[0.1, 0.0, 0.0]])]
    both = [torch.stack([c, f], -1) for c, f in zip(logit, feature)]
    channels = ('credit', 'feature_credit')
    out = normalise_credit(both, 'hinge', channels=channels, feature_scale='none')[0]
    torch.testing.assert_close(out[:, 0], normalise_credit(logit, 'hinge')[0])
    torch.testing.assert_close(out[:, 1], torch.tensor([[0.1, 0.0, 0.0]]) - 0.1 / 3)
    hinged = normalise_credit(both, 'hinge', channels=channels)[0]
    torch.testing.assert_close(hinged[:, 1], torch.zeros(1, 3))  # the lead is hinged away
    rule = CreditUpdate(scale='hinge', feature_scale='none')
    assert (rule.credit_scale, rule.feature_credit_scale) == ('hinge', 'none')
    assert CreditUpdate(scale='hinge').feature_credit_scale == 'hinge'
    with pytest.raises(ValueError, match='feature_scale must be one of'):
        CreditUpdate(feature_scale='rank')


def test_rewards_whose_channels_are_not_declared_are_refused():
    with pytest.raises(ValueError, match='sets its channels attribute'):
        normalise_credit([torch.zeros(2, 3, 2)], channels=('credit', ))


def test_feature_credit_one_step_in_five_measures_and_stores_only_those_steps(teacher_checkpoints):
    """The benchmarks' ``..._feature_credit_ranked_every5`` (the ranked feature credit with
    ``reward.every=5``; shipped for segmentors since session 34 with 10 passes per update):
    both agreements on the first step of every five only, and only those steps stored; the
    every-step candidate it is built from is left as it was."""
    name = f'{CREDIT_AGENT}_feature_credit_ranked'
    weightings = candidate_weightings()
    assert weightings[f'{name}_every5']['reward']['every'] == 5
    assert 'every' not in weightings[name]['reward']
    assert weightings[f'{name}_every5'] == measured_every(weightings[name], 5)
    distiller = MODELS.build(
        tiny_classification_distiller_cfg(
            teacher_checkpoints, teacher_configs(),
            weighting=weightings[f'{name}_every5'])).train()
    learner = AgentLearner.attach_to(distiller)
    data = distiller.data_preprocessor(batch(size=4), training=True)
    measured = []
    for _ in range(10):
        distiller(**data, mode='loss')
        signals = distiller.weighting._step.signals
        measured.append(signals.feature_agreement is not None)
        assert (signals.task_agreement is None) == (signals.feature_agreement is None)
        learner.take_step()
    assert measured == [True, False, False, False, False] * 2
    assert len(learner.buffer) == 2 and learner.buffer[0]['reward'].shape == (4, 3, 2)


@pytest.mark.parametrize('feature_tau', [None, 0.005])
def test_each_head_reaches_the_softmax_of_its_credit_at_its_own_tau(feature_tau):
    """The credit update's optimum per head is ``softmax(A / tau)``; with
    ``feature_entropy_coef`` the feature weights use their own ``tau``, the logit weights keep
    ``entropy_coef``."""
    from mmtkd.models.weighting.mtkd_rl.agent import MTKDRLAgent
    torch.manual_seed(0)
    agent = MTKDRLAgent(state_dim=1, num_teachers=3, stochastic=False, mixing='none', hidden=8)
    rule = CreditUpdate(entropy_coef=0.02, feature_entropy_coef=feature_tau)
    # a detector's feature credit: small cosine gaps; the logit credit's larger
    credit = torch.tensor([[-0.10, 0.15, 0.12], [0.00, 0.02, 0.02]])
    batch = dict(
        states=torch.ones(4, 1),
        heuristics=torch.zeros(4, 2, 2, 3),
        reward=credit.expand(4, 2, 3).clone())
    optimizer = torch.optim.Adam(agent.parameters(), lr=3e-2)
    for _ in range(600):
        optimizer.zero_grad()
        rule.loss(agent, batch).backward()
        optimizer.step()
    weights = agent.act(batch['states'][:1], batch['heuristics'][:1])['weights'][0].detach()
    taus = torch.tensor([[0.02], [feature_tau or 0.02]])
    torch.testing.assert_close(weights, torch.softmax(credit / taus, -1), atol=0.02, rtol=0)
    untrained_feature_share = weights[1, 0].item()
    assert (untrained_feature_share < 0.05) == (feature_tau is not None)
    with pytest.raises(ValueError, match='feature_entropy_coef'):
        CreditUpdate(feature_entropy_coef=-0.1)


def test_the_benchmarks_sharper_feature_credit_builds_its_own_feature_tau():
    from mmtkd.engine.agent.updates import build_update
    weightings = candidate_weightings()
    name = f'{CREDIT_AGENT}_feature_credit_ranked_every5'
    sharper = weightings[f'{name}_ftau0005']
    assert dict(sharper, update=weightings[name]['update']) == weightings[name]  # only tau
    rule = build_update(sharper['update'])
    assert (rule.entropy_coef, rule.feature_entropy_coef) == (0.02, 0.005)
