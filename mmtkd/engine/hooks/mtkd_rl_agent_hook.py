"""Train the MTKD-RL agent during an ordinary MMEngine run."""
import warnings
from typing import Any, Dict, List, Optional, Tuple

import torch
from mmengine import dist
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.runner import IterBasedTrainLoop

from mmtkd.registry import HOOKS
from mmtkd.utils import frozen_norm_stats
from ..work_dir_check import warn_if_work_dir_holds_a_run
from .checkpoint_schedule import checkpoint_may_follow

CHECKPOINT_KEY = 'mtkd_rl_agent'
DATA_BATCH = Optional[dict]


@HOOKS.register_module()
class MTKDRLAgentHook(Hook):
    """Drive a distiller's learned teacher weighting (``mmtkd.MTKDRLWeighting``).

    * tells the weighting the epoch / iteration before each step (warm-up);
    * for ``reward='improvement'``, measures the student's per-sample loss on the same batch
      after the optimiser step (batch-norm statistics untouched);
    * updates the agent every ``weighting.interval`` iterations and at each epoch end (epoch-based
      loops), logging ``train/agent_loss``;
    * stores the agent (parameters, optimiser, buffer, sampling generator, counters) in every
      checkpoint and restores it on ``--resume``; under distributed training the parts that
      differ between ranks (buffer, generator, state statistics) are gathered from every rank
      just before a checkpoint is due, and each rank resumes from its own;
    * under distributed training, starts every rank from rank 0's agent;
    * warns before training when the run would update the agent never, or never use it, and
      when the work dir holds an earlier run's checkpoints.

    With a stateless weighting (AVER, CA-MKD, EBKD) the hook does nothing, so baselines can
    inherit an MTKD-RL config and only swap the weighting.
    """

    priority = 'NORMAL'  # before CheckpointHook, so an epoch-end update is in that checkpoint

    def __init__(self) -> None:
        self.weighting = None
        # (iteration, every rank's rank_state_dict()) gathered for the next checkpoint
        self._rank_states: Optional[Tuple[int, List[Dict[str, Any]]]] = None

    @staticmethod
    def _distiller(runner):
        model = runner.model
        return model.module if is_model_wrapper(model) else model

    def before_run(self, runner) -> None:
        weighting = getattr(self._distiller(runner), 'weighting', None)
        if weighting is not None and getattr(weighting, 'needs_agent_hook', False):
            self.weighting = weighting
            weighting.hook_attached = True

    def before_train(self, runner) -> None:
        if self.weighting is None:
            return
        warn_if_work_dir_holds_a_run(runner)
        if isinstance(runner.train_loop, IterBasedTrainLoop) and \
                self.weighting.warmup_iters is None and self.weighting.warmup_epochs > 0:
            raise ValueError('MTKDRLWeighting: the train loop is iteration-based, so the warm-up '
                             'must be given as warmup_iters (warmup_epochs would never end)')
        self._warn_about_the_schedule(runner)
        self.weighting.broadcast_agent()

    def _warn_about_the_schedule(self, runner) -> None:
        """Warn when the agent would never be updated, or its weights never applied."""
        weighting, loop = self.weighting, runner.train_loop
        if isinstance(loop, IterBasedTrainLoop):
            updates = loop.max_iters // weighting.interval
            if updates == 0:
                warnings.warn(
                    f'MTKDRLWeighting: interval={weighting.interval} exceeds the run\'s '
                    f'{loop.max_iters} iterations, so the agent is never updated and keeps its '
                    'initial weights; set a smaller interval', stacklevel=2)
            if weighting.warmup_iters is not None and weighting.warmup_iters >= loop.max_iters:
                warnings.warn(
                    f'MTKDRLWeighting: warmup_iters={weighting.warmup_iters} covers the run\'s '
                    f'{loop.max_iters} iterations, so every teacher weight stays 1 and the agent '
                    'is never used; shorten the warm-up', stacklevel=2)
        elif weighting.warmup_iters is None and weighting.warmup_epochs >= loop.max_epochs:
            warnings.warn(
                f'MTKDRLWeighting: warmup_epochs={weighting.warmup_epochs} covers the run\'s '
                f'{loop.max_epochs} epochs, so every teacher weight stays 1 and the agent is '
                'never used; shorten the warm-up or give warmup_iters', stacklevel=2)

    def before_train_iter(self, runner, batch_idx: int, data_batch: DATA_BATCH = None) -> None:
        if self.weighting is not None:
            self.weighting.set_progress(runner.epoch, runner.iter)

    def after_train_iter(self, runner, batch_idx: int, data_batch: DATA_BATCH = None,
                         outputs: Optional[dict] = None) -> None:
        if self.weighting is None:
            return
        if self.weighting.needs_improvement_reward:
            self.weighting.complete_reward(self._student_loss(runner, data_batch))
        if self.every_n_train_iters(runner, self.weighting.interval):
            self._update(runner)
        self._gather_rank_states(runner, after='iter')

    @torch.no_grad()
    def _student_loss(self, runner, data_batch: dict) -> torch.Tensor:
        distiller = self._distiller(runner)
        data = distiller.data_preprocessor(data_batch, True)
        with frozen_norm_stats(distiller.student):
            _, outputs = distiller.task.student_forward(distiller.student, data['inputs'],
                                                        data['data_samples'])
        return distiller.task.per_sample_loss(distiller.student, outputs, data['data_samples'])

    def after_train_epoch(self, runner) -> None:
        if self.weighting is not None and not isinstance(runner.train_loop, IterBasedTrainLoop):
            self._update(runner)
            self._gather_rank_states(runner, after='epoch')

    def _gather_rank_states(self, runner, after: str) -> None:
        """Collect every rank's part of the agent on rank 0 when a checkpoint may follow (only
        rank 0 writes it; the other ranks never see ``before_save_checkpoint``)."""
        if dist.get_world_size() < 2 or not checkpoint_may_follow(runner, after):
            return
        gathered = dist.gather_object(self.weighting.rank_state_dict(), dst=0)
        self._rank_states = (runner.iter, gathered) if dist.is_main_process() else None

    def _update(self, runner) -> None:
        loss = self.weighting.update()
        if loss is not None:
            runner.message_hub.update_scalar('train/agent_loss', loss)
            runner.message_hub.update_scalar('train/agent_updates', self.weighting.num_updates)

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        if self.weighting is None:
            return
        rank_states = None
        if dist.get_world_size() > 1:
            if self._rank_states is not None and self._rank_states[0] == runner.iter:
                rank_states = self._rank_states[1]
            else:
                warnings.warn(
                    'MTKDRLAgentHook: a checkpoint is saved at a time CheckpointHook\'s schedule '
                    'did not announce, so it holds only rank 0\'s agent buffer; resuming from '
                    'it gives every rank that buffer (not an exact resume)', stacklevel=2)
        checkpoint[CHECKPOINT_KEY] = self.weighting.agent_state_dict(rank_states)

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        if self.weighting is None:
            # before_run has not happened yet when the runner loads `load_from` early.
            self.before_run(runner)
        if self.weighting is not None and CHECKPOINT_KEY in checkpoint:
            self.weighting.load_agent_state_dict(checkpoint[CHECKPOINT_KEY])
