"""A hook for distributed tests: every rank writes its student and agent state at the end."""
import os.path as osp

import torch
from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS


def agent_learner(runner):
    """The AgentLearner of the run's MTKDRLAgentHook (None without one)."""
    from mmtkd.engine import MTKDRLAgentHook
    hooks = [h for h in runner.hooks if isinstance(h, MTKDRLAgentHook)]
    return hooks[0].learner if hooks else None


@HOOKS.register_module()
class RankStateDumpHook(Hook):
    """After training, save ``rank{R}_state.pth`` (student parameters, agent state, update
    count) in the work dir, so a test can compare ranks. Batch-norm running statistics are left
    out: with ``broadcast_buffers=False`` (MMEngine's default) they are per rank by design."""

    priority = 'LOWEST'

    def after_train(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        state = dict(student={k: v.detach().cpu() for k, v in model.student.named_parameters()})
        learner = agent_learner(runner)
        if learner is not None:
            state['agent'] = {k: v.detach().cpu() for k, v in learner.agent.state_dict().items()}
            state['num_updates'] = learner.num_updates
        torch.save(state, osp.join(runner.work_dir, f'rank{get_rank()}_state.pth'))
