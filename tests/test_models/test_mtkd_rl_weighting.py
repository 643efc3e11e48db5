"""MTKD-RL: state, heuristics, mixing, warm-up, reward and both agent updates, by hand."""
import math

import numpy as np
import pytest
import torch
from mmengine.logging import MessageHub

from mmtkd.engine import AgentLearner
from mmtkd.engine.agent.reward_normalisation import normalise_rewards
from mmtkd.models.distillers import StepRecord, weighted_kd
from mmtkd.models.weighting import MTKDRLWeighting, TeacherSignals
from mmtkd.models.weighting.mtkd_rl import (WeightMixer, compact_state, heuristic_weights,
                                            official_state)


def normalise_reward(reward, clamp):
    """The official within-batch rule, as the learner applies it to one stored batch."""
    return normalise_rewards([reward], 'batch', clamp=clamp)[0]


def signals(batch=2, teachers=2, classes=3, dim=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    rand = lambda *s: torch.rand(*s, generator=g)  # noqa: E731
    return TeacherSignals(
        logit_kd=rand(batch, teachers),
        feature_kd=rand(batch, teachers),
        feature_cos=rand(batch, teachers) * 2 - 1,
        teacher_loss=rand(batch, teachers) * 2,
        teacher_entropy=rand(batch, teachers),
        teacher_confidence=rand(batch, teachers),
        embeddings=[rand(batch, dim) for _ in range(teachers)],
        logit_summaries=[rand(batch, classes) for _ in range(teachers)],
        student_loss=rand(batch))


class Driven:
    """An MTKDRLWeighting and its AgentLearner, driven as the distiller and MTKDRLAgentHook
    drive them: act, record the step (per-sample losses from ``weighted_kd``, beta 5), store it
    after the optimiser step, update."""

    def __init__(self, weighting, learner):
        self.weighting, self.learner = weighting, learner

    def __call__(self, s):
        return self.weighting(s)

    def __getattr__(self, name):  # buffer, agent, optimizer, update, num_updates, state_dict...
        return getattr(self.learner, name)

    def train(self, mode=True):
        self.weighting.train(mode)
        return self

    def eval(self):
        return self.train(False)

    def set_progress(self, epoch, iteration):
        hub = MessageHub.get_current_instance()
        hub.update_info('epoch', epoch)
        hub.update_info('iter', iteration)

    def observe(self, s, weights):
        _, logit = weighted_kd(weights.logit, s.logit_kd, 1.0)
        _, feature = weighted_kd(weights.feature, s.feature_kd, 5.0)
        self.weighting.record(StepRecord(s, weights, [logit, feature], s.student_loss, None, None))
        if not self.learner.reward.after_step:
            self.learner.take_step()

    def complete_reward(self, loss_after):
        self.learner.take_step(loss_after)

    def observe_batches(self, count, **signal_kwargs):
        """Train mode, then act on and store ``count`` random batches (seeds 0..count-1)."""
        self.train()
        for seed in range(count):
            s = signals(seed=seed, **signal_kwargs)
            self.observe(s, self(s))


def build(teachers=2, classes=3, dim=2, **kwargs):
    weighting = MTKDRLWeighting(**kwargs)
    weighting.setup(teachers, [dim] * teachers, classes, beta=5.0)
    return Driven(weighting, AgentLearner(weighting, **weighting.learning_cfg))


def test_official_state_layout():
    s = signals()
    state = official_state(s)
    assert state.shape == (2, 2 * (2 + 3 + 3))
    # teacher 1 block starts at 8: [cos, KL, CE, e (2), z (3)]
    torch.testing.assert_close(state[:, 8], s.feature_cos[:, 1])
    torch.testing.assert_close(state[:, 9], s.logit_kd[:, 1])
    torch.testing.assert_close(state[:, 10], s.teacher_loss[:, 1])
    torch.testing.assert_close(state[:, 11:13], s.embeddings[1])
    torch.testing.assert_close(state[:, 13:16], s.logit_summaries[1])


def test_compact_state_layout():
    s = signals()
    state = compact_state(s)
    assert state.shape == (2, 8)
    torch.testing.assert_close(
        state[:, 4:8],
        torch.stack([
            s.logit_kd[:, 1], s.teacher_loss[:, 1], s.teacher_confidence[:, 1], s.teacher_entropy[:,
                                                                                                  1]
        ], 1))


def test_heuristic_weights_by_hand():
    s = signals(batch=1)
    s.teacher_loss = torch.tensor([[0.0, math.log(3)]])
    s.logit_kd = torch.tensor([[math.log(3), 0.0]])
    s.feature_cos = torch.tensor([[0.0, math.log(3)]])
    h = heuristic_weights(s)
    torch.testing.assert_close(h[0, 0, 0], torch.tensor([0.75, 0.25]))  # confidence
    torch.testing.assert_close(h[0, 0, 1], torch.tensor([0.75, 0.25]))  # softmax(KL)
    torch.testing.assert_close(h[0, 1, 1], torch.tensor([0.25, 0.75]))  # softmax(cos)
    inverse = heuristic_weights(s, divergence='inverse')
    torch.testing.assert_close(inverse[0, 0, 1], torch.tensor([0.25, 0.75]))  # softmax(-KL)


def test_mixing_modes_by_hand():
    learned = torch.tensor([[[0.5, 0.5], [0.2, 0.8]]])
    heuristics = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]], [[0.6, 0.4], [0.1, 0.9]]]])
    torch.testing.assert_close(WeightMixer('none')(learned, heuristics), learned)
    static = WeightMixer('static')(learned, heuristics)
    torch.testing.assert_close(static[0, 0], torch.tensor([0.5, 0.5]))
    torch.testing.assert_close(static[0, 1], torch.tensor([0.9 / 3, 2.1 / 3]))
    dynamic = WeightMixer('dynamic')
    torch.testing.assert_close(dynamic(learned, heuristics), static)  # p = ones -> thirds
    with torch.no_grad():
        dynamic.mix_params[0] = torch.tensor([0.0, math.log(3), -1e9])
    torch.testing.assert_close(
        dynamic(learned, heuristics)[0, 0], 0.25 * learned[0, 0] + 0.75 * heuristics[0, 0, 0])


def test_running_normaliser_keeps_the_statistics_of_every_state_seen_in_six_kernels():
    """Batches of different sizes folded in one by one give the mean and (biased) variance of
    all their states, also after a state-dict round trip (the host copy of the count is
    reloaded); an update dispatches six kernels and reads nothing off the device."""
    from mmtkd.benchmark.host_ops import count_ops
    from mmtkd.models.weighting.mtkd_rl.agent_state import RunningNormalizer
    generator = torch.Generator().manual_seed(0)
    batches = [torch.randn(n, 5, generator=generator) * 3 + 1 for n in (4, 1, 7, 2)]
    normalizer = RunningNormalizer(5)
    for states in batches[:3]:
        normalizer.update(states)
    restored = RunningNormalizer(5)
    restored.load_state_dict(normalizer.state_dict())
    counted = count_ops(lambda: restored.update(batches[3]))
    seen = torch.cat(batches)
    torch.testing.assert_close(restored.mean, seen.mean(0))
    torch.testing.assert_close(restored.var, seen.var(0, unbiased=False))
    assert float(restored.count) == len(seen)
    assert counted['kernels'] == 6 and counted['syncs'] == 0
    torch.testing.assert_close(
        restored(seen), (seen - seen.mean(0)) / (seen.var(0, unbiased=False).sqrt() + 1e-6))


def test_normalise_reward_values_and_guards():
    reward = torch.tensor([1.0, 2.0, 3.0])
    torch.testing.assert_close(normalise_reward(reward, clamp=False), torch.tensor([-1., 0., 1.]))
    torch.testing.assert_close(normalise_reward(reward, clamp=True), torch.tensor([0., 0., 1.]))
    for degenerate in (torch.tensor([2.0]), torch.tensor([4.0, 4.0, 4.0])):
        out = normalise_reward(degenerate, clamp=True)
        assert torch.isfinite(out).all() and (out == 0).all()


def test_warmup_gives_all_ones_then_mixed_weights():
    weighting = build(warmup_iters=2)
    weighting.train()
    s = signals()
    weighting.set_progress(0, 1)
    weights = weighting(s)
    assert (weights.logit == 1).all() and (weights.feature == 1).all()
    weighting.set_progress(0, 2)
    weights = weighting(s)
    torch.testing.assert_close(weights.logit.sum(1), torch.ones(2))
    assert (weights.logit < 1).all()


@pytest.mark.parametrize('gate, signal', [('entropy', 'teacher_entropy'),
                                          ('confidence', 'teacher_confidence')])
def test_a_gate_spreads_the_agents_weights_by_each_samples_teacher_signal(gate, signal):
    """``gate='entropy'`` / ``'confidence'``: per sample, the agent's weight of each teacher
    times EBKD's ``1 - H_m / sum H`` / the teacher's probability of the ground truth,
    renormalised to the agent's sum; the distiller is asked for that signal only."""
    plain = build(teachers=3, warmup_iters=0, state='constant', mixing='none', seed=0)
    gated = build(teachers=3, warmup_iters=0, state='constant', mixing='none', seed=0, gate=gate)
    assert signal in gated.weighting.required_signals
    assert not plain.weighting.required_signals
    assert len(gated.weighting.required_signals) == 1
    s = signals(batch=4, teachers=3)
    for driven in (plain, gated):
        driven.eval()
    agent = plain(s)
    assert torch.allclose(agent.logit, agent.logit[:1])  # one weight per teacher
    per_sample = dict(
        entropy=1 - s.teacher_entropy / s.teacher_entropy.sum(1, keepdim=True),
        confidence=s.teacher_confidence)[gate]
    for got, mine in ((gated(s).logit, agent.logit), (gated(s).feature, agent.feature)):
        expected = mine * per_sample
        torch.testing.assert_close(got, expected / expected.sum(1, keepdim=True))
        assert not torch.allclose(got, got[:1])  # per sample now


@pytest.mark.parametrize(
    'gate, signal, expected',
    [
        # EBKD's confidences 0.9, 0.7, 0.4: the kept teachers' 0.5 * 0.7 and 0.5 * 0.4, over their
        # sum
        ('entropy', [0.1, 0.3, 0.6], [0.7 / 1.1, 0.4 / 1.1]),
        # the second teacher wrong about the sample (p = 0.05), the third right (p = 0.95)
        ('confidence', [0.9, 0.05, 0.95], [0.05, 0.95]),
    ])
def test_a_gate_keeps_a_dropped_teacher_dropped_and_the_agents_sum(gate, signal, expected):
    from mmtkd.models.weighting.mtkd_rl.mixing import GATE_SIGNALS, gated
    dropped = torch.tensor([[[0.0, 0.5, 0.5], [0.0, 0.5, 0.5]]])
    given = {GATE_SIGNALS[gate]: torch.tensor([signal])}
    out = gated(dropped, gate, TeacherSignals(torch.zeros(1, 3), torch.zeros(1, 3), **given))
    assert out[0, :, 0].eq(0).all()
    torch.testing.assert_close(out.sum(-1), torch.ones(1, 2))
    torch.testing.assert_close(out[0, :, 1:], torch.tensor([expected] * 2))


def test_max_normalised_weights_keep_each_teacher_at_most_one_mth_and_hand_nothing_on():
    """``normalise='max'``: the policy's weights over ``M`` times their largest; equal weights
    stay AVER's 1/M, a dropped teacher's weight is not given to the others (the total falls
    below 1), and anything but 'sum' / 'max' is refused."""
    from mmtkd.models.weighting.mtkd_rl.mtkd_rl_weighting import normalised_weights
    by_sum = build(teachers=3, warmup_iters=0, state='constant', mixing='none', seed=0)
    by_max = build(
        teachers=3, warmup_iters=0, state='constant', mixing='none', seed=0, normalise='max')
    s = signals(batch=4, teachers=3)
    for driven in (by_sum, by_max):
        driven.eval()
    policy, kept = by_sum(s), by_max(s)
    for mine, got in ((policy.logit, kept.logit), (policy.feature, kept.feature)):
        torch.testing.assert_close(got, mine / (3 * mine.amax(1, keepdim=True)))
        assert got.amax(1).sub(1 / 3).abs().max() < 1e-6
    weights = torch.tensor([[[0.5, 0.5, 0.0], [1 / 3, 1 / 3, 1 / 3]]])
    torch.testing.assert_close(
        normalised_weights(weights, 'max'), torch.tensor([[[1 / 3, 1 / 3, 0.0], [1 / 3] * 3]]))
    assert normalised_weights(weights, 'sum') is weights
    with pytest.raises(ValueError, match='normalise must be one of'):
        MTKDRLWeighting(normalise='total')


def test_weights_sum_to_one_for_every_variant():
    for kwargs in (dict(), dict(mixing='dynamic'), dict(update='ppo', mixing='none'),
                   dict(state='compact', normalize_state=True)):
        weighting = build(warmup_epochs=0, **kwargs)
        weighting.train()
        weights = weighting(signals(batch=5))
        torch.testing.assert_close(weights.logit.sum(1), torch.ones(5))
        torch.testing.assert_close(weights.feature.sum(1), torch.ones(5))


def test_official_reward_is_stored_raw_and_normalised_in_its_batch_at_the_update():
    weighting = build(warmup_epochs=0)
    weighting.train()
    s = signals(batch=3)
    weights = weighting(s)
    weighting.observe(s, weights)
    reward = -(
        s.student_loss + (weights.logit * s.logit_kd).sum(1) + 5.0 *
        (weights.feature * s.feature_kd).sum(1))
    stored = weighting.buffer[-1]
    torch.testing.assert_close(stored['reward'], reward)
    torch.testing.assert_close(stored['states'], official_state(s))
    normalised = normalise_rewards([stored['reward']], 'batch', clamp=True)[0]
    torch.testing.assert_close(normalised, normalise_reward(reward, clamp=True))


def _manual_official_bias_gradient(logits, heuristics, reward):
    """d/d(head bias) of mean_{b,m}(-r_b log w_bm), w = (softmax(z) + c + d) / 3, by hand."""
    batch, teachers = logits.shape
    grad = np.zeros(teachers)
    for b in range(batch):
        learned = np.exp(logits[b]) / np.exp(logits[b]).sum()
        w = (learned + heuristics[b, 0] + heuristics[b, 1]) / 3
        for j in range(teachers):
            for m in range(teachers):
                dl_m_dz_j = learned[m] * ((m == j) - learned[j])
                grad[j] += -reward[b] / w[m] * dl_m_dz_j / 3
    return grad / (batch * teachers)


def test_official_update_gradient_and_sgd_step_match_manual_computation():
    torch.manual_seed(0)
    weighting = build(warmup_epochs=0)
    weighting.train()
    s = signals(batch=4, seed=3)
    weighting.observe(s, weighting(s))
    entry = weighting.buffer[0]
    agent = weighting.agent
    with torch.no_grad():
        hidden = agent.policy.trunk(entry['states'])
        z_logit = agent.policy.logit_head(hidden).numpy()
        z_feat = agent.policy.feature_head(hidden).numpy()
    # stored raw, normalised within the batch at the update
    reward = normalise_rewards([entry['reward']], 'batch', clamp=True)[0].numpy()
    heur = entry['heuristics'].numpy()
    grad_logit = _manual_official_bias_gradient(z_logit, heur[:, 0], reward)
    grad_feat = _manual_official_bias_gradient(z_feat, heur[:, 1], reward)
    bias_before = agent.policy.logit_head.bias.detach().clone().numpy()
    feat_bias_before = agent.policy.feature_head.bias.detach().clone().numpy()
    assert reward.max() > 0, 'the test needs a non-zero reward'
    weighting.update()
    np.testing.assert_allclose(
        agent.policy.logit_head.bias.detach().numpy(),
        bias_before - 0.1 * grad_logit,
        rtol=1e-5,
        atol=1e-7)
    np.testing.assert_allclose(
        agent.policy.feature_head.bias.detach().numpy(),
        feat_bias_before - 0.1 * grad_feat,
        rtol=1e-5,
        atol=1e-7)
    assert len(weighting.buffer) == 0 and weighting.num_updates == 1


def test_ppo_first_pass_loss_is_minus_mean_advantage():
    weighting = build(warmup_epochs=0, update='ppo', mixing='none', entropy_coef=0.0, ppo_epochs=1)
    weighting.train()
    s = signals(batch=6)
    weighting.observe(s, weighting(s))
    entry = weighting.buffer[0]
    assert entry['actions'].shape == (6, 2, 2) and entry['log_prob'].shape == (6, )
    # at the first step the policy is unchanged: ratio 1, loss = -mean(advantage) = 0
    advantage = normalise_rewards([entry['reward']], 'batch', clamp=False)[0]
    loss = weighting.update()
    assert loss == pytest.approx(-advantage.mean().item(), abs=1e-6)
    torch.testing.assert_close(advantage.mean(), torch.tensor(0.0), atol=1e-6, rtol=0)


def test_gaussian_log_prob_is_the_normal_density():
    from mmtkd.models.weighting.mtkd_rl.policy import gaussian_log_prob
    g = torch.Generator().manual_seed(0)
    value, mean = torch.randn(5, 2, 3, generator=g), torch.randn(5, 2, 3, generator=g)
    log_std = torch.randn(2, 3, generator=g)
    expected = torch.distributions.Normal(mean, log_std.exp()).log_prob(value)
    torch.testing.assert_close(gaussian_log_prob(value, mean, log_std), expected)


def test_ppo_samples_in_training_only():
    weighting = build(warmup_epochs=0, update='ppo', mixing='none')
    s = signals(batch=3)
    weighting.eval()
    torch.testing.assert_close(weighting(s).logit, weighting(s).logit)
    weighting.train()
    assert not torch.equal(weighting(s).logit, weighting(s).logit)


def test_improvement_reward_waits_for_the_hook():
    weighting = build(warmup_epochs=0, reward='improvement')
    weighting.train()
    s = signals(batch=3)
    weighting.observe(s, weighting(s))
    assert len(weighting.buffer) == 0
    weighting.complete_reward(s.student_loss - torch.tensor([0.3, 0.1, 0.2]))
    torch.testing.assert_close(weighting.buffer[0]['reward'], torch.tensor([0.3, 0.1, 0.2]))
    normalised = normalise_rewards([weighting.buffer[0]['reward']], 'batch', clamp=True)[0]
    torch.testing.assert_close(normalised, torch.tensor([1.0, 0.0, 0.0]))


def test_buffer_is_bounded_and_on_cpu():
    weighting = build(warmup_epochs=0, buffer_size=3)
    weighting.observe_batches(5)
    assert len(weighting.buffer) == 3
    assert all(v.device.type == 'cpu' for b in weighting.buffer for v in b.values())


def test_agent_is_invisible_to_the_module_tree():
    driven = build()
    weighting = driven.weighting  # acts with the policy the learner lends it
    assert weighting.policy is not None
    assert list(weighting.parameters()) == []
    assert weighting.state_dict() == {}
    assert sum(p.numel() for p in driven.agent.parameters()) > 0


def test_without_a_learner_the_weighting_says_which_hook_to_add():
    weighting = MTKDRLWeighting(warmup_epochs=0)
    weighting.setup(2, [2, 2], 3, beta=5.0)
    with pytest.raises(RuntimeError, match="custom_hooks=.*MTKDRLAgentHook"):
        weighting(signals())


def test_agent_state_round_trip():
    a = build(warmup_epochs=0, update='ppo', mixing='none')
    a.observe_batches(3)
    a.update()
    s = signals(seed=9)
    a.observe(s, a(s))
    b = build(warmup_epochs=0, update='ppo', mixing='none', seed=5)
    b.load_state_dict(a.state_dict())
    for (k, va), vb in zip(a.agent.state_dict().items(), b.agent.state_dict().values()):
        torch.testing.assert_close(va, vb, msg=k)
    assert len(b.buffer) == 1 and b.num_updates == 1
    b.train()
    torch.testing.assert_close(a(s).logit, b(s).logit)  # same generator state -> same sample


@pytest.mark.parametrize('kwargs, message', [
    (dict(update='reinforce'), 'update'),
    (dict(state='tiny'), 'state'),
    (dict(update='ppo', mixing='dynamic'), 'dynamic'),
    (dict(mixing='half'), 'mixing'),
    (dict(interval=0), 'interval'),
    (dict(gate='margin'), 'gate'),
])
def test_bad_options_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        build(**kwargs)


def test_non_finite_states_and_divergence_fail_with_clear_messages():
    weighting = build(warmup_epochs=0)
    weighting.train()
    s = signals(batch=4)
    s.teacher_loss[0, 1] = float('inf')  # e.g. a teacher's detection loss overflowed
    weighting.observe(s, weighting(s))
    with pytest.raises(FloatingPointError, match='non-finite agent states'):
        weighting.update()

    weighting = build(warmup_epochs=0, optimizer=dict(type='SGD', lr=1e38))
    weighting.observe_batches(3, batch=4)
    with pytest.raises(FloatingPointError, match='normalize_state=True'):
        weighting.update()


def test_host_and_device_copies_keep_values_and_dtype():
    from mmtkd.models.weighting.mtkd_rl.transfer import to_device_async, to_host_async
    devices = ['cpu'] + (['cuda'] if torch.cuda.is_available() else [])
    for device in devices:
        x = torch.arange(6., device=device).reshape(2, 3)
        host = to_host_async(x)
        if device == 'cuda':
            assert host.is_pinned()
            torch.cuda.current_stream().synchronize()
        assert host.device.type == 'cpu' and torch.equal(host, x.cpu())
        like = torch.zeros(1, dtype=torch.float16, device=device)
        y = to_device_async(torch.ones(2, dtype=torch.float64), like)
        assert y.device == like.device and y.dtype == torch.float16
        assert torch.equal(y.cpu(), torch.ones(2, dtype=torch.float16))


def test_batches_of_one_are_normalised_against_the_window():
    rewards = [torch.tensor([1.0]), torch.tensor([2.0]), torch.tensor([3.0])]
    expected = [torch.tensor([-1.0]), torch.tensor([0.0]), torch.tensor([1.0])]
    for mode in ('batch', 'window'):
        out = normalise_rewards(rewards, mode, clamp=False)
        for got, want in zip(out, expected):
            torch.testing.assert_close(got, want)
    # batch mode: batches of two or more keep their own statistics, single ones use the window
    out = normalise_rewards([torch.tensor([0.0, 10.0]), torch.tensor([5.0])], 'batch', False)
    torch.testing.assert_close(out[0], torch.tensor([-0.7071, 0.7071]), atol=1e-4, rtol=0)
    torch.testing.assert_close(out[1], torch.tensor([0.0]))
    # one sample in the whole window: nothing to compare with, zeros rather than NaN
    assert normalise_rewards([torch.tensor([4.0])], 'batch', True)[0].item() == 0.0


def test_official_agent_learns_at_batch_one():
    weighting = build(warmup_epochs=0, interval=8)
    before = {k: v.clone() for k, v in weighting.agent.state_dict().items()}
    weighting.observe_batches(8, batch=1)
    weighting.update()
    moved = [k for k, v in weighting.agent.state_dict().items() if not torch.equal(v, before[k])]
    assert moved, 'at batch 1 the official agent must still move (within-batch rewards are 0)'


@pytest.mark.parametrize('update, stored', [('official', 1), ('ppo', 0)])
def test_warmup_iterations_are_stored_only_where_they_can_teach(update, stored):
    mixing = 'static' if update == 'official' else 'none'
    weighting = build(warmup_iters=1, update=update, mixing=mixing)
    weighting.train()
    weighting.set_progress(0, 0)
    s = signals(batch=3)
    weighting.observe(s, weighting(s))
    assert len(weighting.buffer) == stored
    forced = build(warmup_iters=1, update=update, mixing=mixing, learn_during_warmup=True)
    forced.train()
    forced.set_progress(0, 0)
    forced.observe(s, forced(s))
    assert len(forced.buffer) == 1


def test_the_agent_learns_on_the_host_while_it_acts_on_another_device():
    """The optimiser and its state stay with the host replica when the acting agent moves, and
    an update's only work on the acting agent's device is copying the new parameters there."""
    from torch.utils._python_dispatch import TorchDispatchMode
    a = build(warmup_epochs=0, update='ppo', mixing='none')
    a.observe_batches(2)
    a.update()  # Adam now has moments
    b = build(warmup_epochs=0, update='ppo', mixing='none')
    b.load_state_dict(a.state_dict())
    for loaded in (b.agent, b.host_agent):  # both networks hold the checkpoint's parameters
        assert all(torch.equal(x, y) for x, y in zip(loaded.parameters(), a.agent.parameters()))
    b.observe_batches(2)  # stored on the host
    target = torch.device('cuda' if torch.cuda.is_available() else 'meta')
    b.to_device(target)
    assert next(b.agent.parameters()).device.type == target.type
    moments = [
        v for state in b.optimizer.state.values() for k, v in state.items()
        if k != 'step' and isinstance(v, torch.Tensor)
    ]
    assert moments and all(v.device.type == 'cpu' for v in moments)

    on_target = []

    class OnTarget(TorchDispatchMode):

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            tensors = [x for x in args if isinstance(x, torch.Tensor)]
            if any(x.device.type == target.type for x in tensors):
                on_target.append(func.__name__.split('.')[0])
            return func(*args, **(kwargs or {}))

    before = [p.detach().cpu().clone() for p in b.host_agent.parameters()]
    with OnTarget():
        assert b.update() is not None
    assert on_target == ['copy_'] * len(before)
    assert any(not torch.equal(x, p) for x, p in zip(before, b.host_agent.parameters()))
    if target.type == 'cuda':  # the acting agent holds what the host learned
        assert all(
            torch.equal(x.cpu(), y)
            for x, y in zip(b.agent.parameters(), b.host_agent.parameters()))


def tuple_to(s, device):
    return TeacherSignals(
        **{
            k: (v.to(device) if isinstance(v, torch.Tensor
                                           ) else [t.to(device)
                                                   for t in v] if isinstance(v, list) else v)
            for k, v in vars(s).items()
        })


def test_compact_buffer_storage_halves_the_states_and_still_updates():
    weighting = build(warmup_epochs=0, buffer_dtype='bfloat16')
    weighting.train()
    s = signals(batch=4)
    weighting.observe(s, weighting(s))
    stored = weighting.buffer[0]['states']
    assert stored.dtype == torch.bfloat16
    torch.testing.assert_close(stored.float(), official_state(s), atol=1e-2, rtol=1e-2)
    assert weighting.update() is not None
    with pytest.raises(ValueError, match='buffer_dtype'):
        build(buffer_dtype='int8')
