"""AgentLearner with a real distiller: rewards read the loss the distiller back-propagates, the
improvement reward is measured on the step's own (augmented) inputs, and a new reward or update
rule is one registered class."""
import torch
from mmengine.optim import build_optim_wrapper
from mmengine.registry import MODELS

from mmtkd.engine import AgentLearner, BaseReward, SamePassReward
from mmtkd.registry import AGENT_REWARDS
from mmtkd.testing import tiny_classification_distiller_cfg
from ..conftest import teacher_configs
from ..test_models.test_distiller import batch

OFFICIAL = dict(type='mmtkd.MTKDRLWeighting', warmup_epochs=0)


def build(teacher_checkpoints, weighting=OFFICIAL, batch_augments=None, **kwargs):
    cfg = tiny_classification_distiller_cfg(
        teacher_checkpoints, teacher_configs(), weighting=weighting, **kwargs)
    if batch_augments is not None:
        cfg['student']['data_preprocessor']['batch_augments'] = batch_augments
    distiller = MODELS.build(cfg).train()
    return distiller, AgentLearner.attach_to(distiller)


def test_same_pass_reward_is_minus_the_back_propagated_per_sample_loss(teacher_checkpoints):
    distiller, _ = build(teacher_checkpoints, alpha=0.5, beta=2.0)
    data = distiller.data_preprocessor(batch(size=4), training=True)
    losses = distiller(**data, mode='loss')
    reward = SamePassReward().reward(distiller.weighting.pop_step())
    # the student's loss (mean CE) plus both weighted KD terms, with alpha 0.5 and beta 2
    back_propagated = sum(v for k, v in losses.items() if 'loss' in k)
    torch.testing.assert_close(-reward.mean(), back_propagated.detach())


def test_improvement_reward_is_measured_on_the_steps_augmented_inputs(teacher_checkpoints):
    distiller, learner = build(
        teacher_checkpoints,
        weighting=dict(OFFICIAL, reward='improvement', update='ppo', mixing='none'),
        batch_augments=dict(augments=[dict(type='Mixup', alpha=1.0)]))
    optim = build_optim_wrapper(distiller, dict(optimizer=dict(type='SGD', lr=0.1)))
    raw = batch(size=4)
    torch.manual_seed(0)
    data = distiller.data_preprocessor(dict(raw), training=True)
    losses = distiller(**data, mode='loss')
    step = distiller.weighting._step  # what the learner will read
    assert step.inputs is data['inputs']
    optim.update_params(sum(v for k, v in losses.items() if 'loss' in k))
    learner.take_step()
    after = distiller.student_per_sample_loss(data['inputs'], data['data_samples'])
    torch.testing.assert_close(learner.buffer[-1]['reward'], step.student_loss - after)
    # a second pass through the preprocessor draws another mix: other inputs, other losses
    other = distiller.data_preprocessor(dict(raw), training=True)
    assert not torch.allclose(other['inputs'], data['inputs'])


@AGENT_REWARDS.register_module()
class _TeacherAgreementReward(BaseReward):
    """A new reward is one class: here, minus the mean logit KD to the teachers."""

    def reward(self, step, loss_after=None):
        return -step.signals.logit_kd.mean(1)


def test_a_registered_reward_is_selected_by_type(teacher_checkpoints):
    weighting = dict(OFFICIAL, reward=dict(type='mmtkd._TeacherAgreementReward'))
    distiller, learner = build(teacher_checkpoints, weighting=weighting)
    assert isinstance(learner.reward, _TeacherAgreementReward)
    data = distiller.data_preprocessor(batch(size=4), training=True)
    distiller(**data, mode='loss')
    learner.take_step()
    stored = learner.buffer[-1]
    assert stored['reward'].shape == (4, ) and (stored['reward'] <= 0).all()
    assert learner.update() is not None


def test_improvement_reward_every_k_steps_measures_and_samples_only_those(teacher_checkpoints):
    weighting = dict(
        OFFICIAL,
        reward=dict(type='mmtkd.ImprovementReward', every=3),
        update='ppo',
        mixing='none',
        interval=100)
    distiller, learner = build(teacher_checkpoints, weighting=weighting)
    data = distiller.data_preprocessor(batch(size=4), training=True)
    sampled, measured = [], []
    for _ in range(7):
        distiller(**data, mode='loss')
        sampled.append('actions' in distiller.weighting._step.transition)
        measured.append(distiller.weighting._step.student_loss is not None)
        learner.take_step()
    assert sampled == [True, False, False, True, False, False, True]  # mean actions elsewhere
    assert measured == sampled  # the student's per-sample loss only where it is rewarded
    assert len(learner.buffer) == 3 and learner.steps_seen == 7
    resumed, _ = build(teacher_checkpoints, weighting=weighting)
    resumed_learner = AgentLearner.attach_to(resumed)
    resumed_learner.load_state_dict(learner.state_dict())
    assert resumed_learner.steps_seen == 7 and not resumed_learner.stores_next_step()
