"""Train the MTKD-RL agent during an ordinary MMEngine run."""
from typing import Optional

import torch
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.runner import IterBasedTrainLoop

from mmtkd.registry import HOOKS
from mmtkd.utils import frozen_norm_stats

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
      checkpoint and restores it on ``--resume``;
    * under distributed training, starts every rank from rank 0's agent.

    With a stateless weighting (AVER, CA-MKD, EBKD) the hook does nothing, so baselines can
    inherit an MTKD-RL config and only swap the weighting.
    """

    priority = 'NORMAL'  # before CheckpointHook, so an epoch-end update is in that checkpoint

    def __init__(self) -> None:
        self.weighting = None

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
        if isinstance(runner.train_loop, IterBasedTrainLoop) and \
                self.weighting.warmup_iters is None and self.weighting.warmup_epochs > 0:
            raise ValueError('MTKDRLWeighting: the train loop is iteration-based, so the warm-up '
                             'must be given as warmup_iters (warmup_epochs would never end)')
        self.weighting.broadcast_agent()

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

    def _update(self, runner) -> None:
        loss = self.weighting.update()
        if loss is not None:
            runner.message_hub.update_scalar('train/agent_loss', loss)
            runner.message_hub.update_scalar('train/agent_updates', self.weighting.num_updates)

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        if self.weighting is not None:
            checkpoint[CHECKPOINT_KEY] = self.weighting.agent_state_dict()

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        if self.weighting is None:
            # before_run has not happened yet when the runner loads `load_from` early.
            self.before_run(runner)
        if self.weighting is not None and CHECKPOINT_KEY in checkpoint:
            self.weighting.load_agent_state_dict(checkpoint[CHECKPOINT_KEY])
