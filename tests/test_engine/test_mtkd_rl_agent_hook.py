"""MTKDRLAgentHook in real MMEngine runs: updates, logging, checkpoints and exact resume."""
import copy
import os.path as osp
import warnings

import pytest
import torch
from mmengine.runner import Runner
from mmengine.testing import RunnerTestCase

from mmtkd.engine import MTKDRLAgentHook
from mmtkd.engine.hooks.mtkd_rl_agent_hook import CHECKPOINT_KEY
from ..rank_dump import agent_learner
from .test_classification_runner import distillation_runner_cfg

PPO = dict(
    type='mmtkd.MTKDRLWeighting',
    update='ppo',
    mixing='none',
    state='compact',
    reward='improvement',
    warmup_epochs=1,
    interval=3,
    seed=1)
OFFICIAL = dict(type='mmtkd.MTKDRLWeighting', mixing='dynamic', warmup_epochs=1, interval=3)


def agent_params(runner):
    return {k: v.clone() for k, v in agent_learner(runner).agent.state_dict().items()}


class TestMTKDRLAgentHook(RunnerTestCase):

    def build_cfg(self, weighting, work='run', **overrides):
        cfg = distillation_runner_cfg(self.temp_dir.name, weighting=weighting)
        cfg.work_dir = osp.join(self.temp_dir.name, work)
        cfg.custom_hooks = [dict(type='mmtkd.MTKDRLAgentHook')]
        cfg.param_scheduler = None
        cfg.train_cfg.max_epochs = 3
        cfg.merge_from_dict(overrides)
        return cfg

    def test_agent_trains_logs_and_is_never_in_the_student_optimiser(self):
        runner = Runner.from_cfg(self.build_cfg(OFFICIAL))
        hook = next(h for h in runner.hooks if isinstance(h, MTKDRLAgentHook))
        hook.before_run(runner)  # builds the learner (train() calls it again: a no-op)
        before = agent_params(runner)
        runner.train()
        learner = agent_learner(runner)
        assert learner is hook.learner
        # 4 iterations per epoch, interval 3, plus epoch ends: updates happened and moved it
        assert learner.num_updates >= 4
        after = agent_params(runner)
        assert any(not torch.equal(before[k], after[k]) for k in before)
        assert not torch.equal(before['mixer.mix_params'], after['mixer.mix_params'])
        assert runner.message_hub.get_scalar('train/agent_loss') is not None
        optimised = {
            id(p)
            for g in runner.optim_wrapper.optimizer.param_groups
            for p in g['params']
        }
        assert not optimised & {id(p) for p in learner.agent.parameters()}
        checkpoint = torch.load(osp.join(runner.work_dir, 'epoch_3.pth'), weights_only=True)
        saved = checkpoint[CHECKPOINT_KEY]
        for key, value in after.items():
            torch.testing.assert_close(saved['agent'][key], value)
        assert not [k for k in checkpoint['state_dict'] if 'agent' in k]

    def test_resume_restores_the_exact_agent_state(self):
        full = Runner.from_cfg(self.build_cfg(PPO, work='full'))
        full.train()
        cfg = self.build_cfg(PPO, work='resumed')
        cfg.resume, cfg.load_from = True, osp.join(self.temp_dir.name, 'full', 'epoch_2.pth')
        resumed = Runner.from_cfg(cfg)
        resumed.train()
        assert agent_learner(resumed).num_updates == agent_learner(full).num_updates
        for key, value in agent_params(full).items():
            torch.testing.assert_close(agent_params(resumed)[key], value, rtol=0, atol=0)
        for key, value in full.model.student.state_dict().items():
            torch.testing.assert_close(resumed.model.student.state_dict()[key], value)

    def test_each_credit_channel_is_logged_per_teacher(self):
        """A per-teacher reward's window means reach the message hub (TensorBoard) under its
        channel's name: the logit credit as ``agent_credit``, the feature credit as
        ``agent_feature_credit``, each what the learner measured."""
        reward = dict(type='mmtkd.TaskAgreementReward', features=True)
        weighting = dict(
            type='mmtkd.MTKDRLWeighting',
            update='credit',
            reward=reward,
            state='constant',
            mixing='none',
            warmup_iters=0,
            interval=3)
        runner = Runner.from_cfg(self.build_cfg(weighting, train_cfg=dict(max_epochs=1)))
        runner.train()
        means = agent_learner(runner).credit_means  # the last update's, (M, 2)
        assert means.shape == (len(runner.model.teachers), 2)
        for channel, column in (('agent_credit', 0), ('agent_feature_credit', 1)):
            for m, teacher in enumerate(runner.model.teachers):
                logged = runner.message_hub.get_scalar(f'train/{channel}/{teacher}').current()
                assert logged == pytest.approx(means[m, column].item())
        assert not torch.allclose(means[:, 0], means[:, 1])

    def test_missing_hook_fails_with_a_clear_message(self):
        cfg = self.build_cfg(OFFICIAL)
        cfg.custom_hooks = []
        with pytest.raises(RuntimeError, match='MTKDRLAgentHook'):
            Runner.from_cfg(cfg).train()

    def test_iteration_based_loop_takes_warmup_epochs_as_passes_over_the_data(self):
        cfg = self.build_cfg(OFFICIAL)  # warmup_epochs=1 by default
        cfg.train_cfg = dict(by_epoch=False, max_iters=8, val_interval=8)
        cfg.train_dataloader.sampler = dict(type='InfiniteSampler', shuffle=True)
        cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=8, by_epoch=False)
        cfg.default_hooks.logger = dict(type='LoggerHook', interval=1)
        runner = Runner.from_cfg(copy.deepcopy(cfg))
        runner.train()
        weighting = runner.model.weighting
        assert weighting.warmup_iters == 4  # 16 samples / batch 4: one pass
        for teacher in runner.model.teachers:
            # logged every iteration: 1 through the warm-up, the agent's weights after it
            values = runner.message_hub.get_scalar(f'train/weight_logit/{teacher}').data[0]
            assert len(values) == 8
            assert (values[:4] == 1).all() and (values[4:] < 1).all(), values
        cfg.train_cfg.max_iters = 4
        cfg.model.weighting = dict(OFFICIAL, warmup_iters=2)
        runner = Runner.from_cfg(cfg)
        runner.train()
        assert agent_learner(runner).num_updates == 1  # at iteration 3; no epoch ends

    def test_schedules_that_never_update_or_use_the_agent_are_warned_about(self):
        cfg = self.build_cfg(dict(OFFICIAL, warmup_iters=0, interval=100))
        cfg.train_cfg = dict(by_epoch=False, max_iters=2, val_interval=2)
        cfg.train_dataloader.sampler = dict(type='InfiniteSampler', shuffle=True)
        cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=2, by_epoch=False)
        with pytest.warns(UserWarning, match='interval=100 exceeds the run.s 2 iterations'):
            Runner.from_cfg(copy.deepcopy(cfg)).train()
        cfg = self.build_cfg(dict(OFFICIAL, warmup_epochs=3), work='long_warmup')
        with pytest.warns(UserWarning, match='warmup_epochs=3 covers the run.s 3 epochs'):
            Runner.from_cfg(cfg).train()

    def test_a_new_run_in_a_used_work_dir_is_warned_about(self):
        cfg = self.build_cfg(OFFICIAL)
        cfg.train_cfg.max_epochs = 1
        Runner.from_cfg(copy.deepcopy(cfg)).train()
        with pytest.warns(
                UserWarning,
                match=r'already holds an earlier run \(epoch_1.pth, '
                r'last_checkpoint\).*--resume'):
            Runner.from_cfg(copy.deepcopy(cfg)).train()
        cfg.resume = True  # continuing it is what the files are for: no warning
        cfg.train_cfg.max_epochs = 2
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always')
            Runner.from_cfg(cfg).train()
        assert not [w for w in caught if 'already holds' in str(w.message)]
