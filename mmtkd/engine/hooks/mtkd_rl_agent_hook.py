"""Train the MTKD-RL agent during an ordinary MMEngine run."""
import math
import warnings
from typing import Any, Dict, List, Optional, Tuple

from mmengine import dist
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.runner import IterBasedTrainLoop

from mmtkd.registry import HOOKS
from ..agent import AgentLearner
from ..work_dir_check import warn_if_work_dir_holds_a_run
from .checkpoint_schedule import checkpoint_may_follow

CHECKPOINT_KEY = 'mtkd_rl_agent'
DATA_BATCH = Optional[dict]


def iterations_per_epoch(dataloader) -> int:
    """Training iterations of one pass over the dataset, with every rank's batch.

    Args:
        dataloader (DataLoader): The runner's training dataloader (its sampler may be
            infinite).

    Returns:
        int: ``ceil(len(dataset) / (batch size x world size))``, at least 1.
    """
    batch = dataloader.batch_size or dataloader.batch_sampler.batch_size
    return max(1, math.ceil(len(dataloader.dataset) / (batch * dist.get_world_size())))


@HOOKS.register_module()
class MTKDRLAgentHook(Hook):
    """Own and train the agent of a distiller's ``mmtkd.MTKDRLWeighting``.

    As MMEngine's ``EMAHook`` builds and owns its averaged model, this hook builds an
    :class:`~mmtkd.engine.AgentLearner` (network, optimiser, buffer, reward, update rule) from
    the weighting's options and lends the weighting the policy to act with. Then it:

    * after each training iteration, stores the step the weighting recorded (for
      ``reward='improvement'``, after measuring the student again on the step's inputs);
    * updates the agent every ``interval`` iterations and at each epoch end (epoch-based
      loops), logging ``train/agent_loss`` and, for a per-teacher reward, each teacher's
      mean raw credit over the window, ``train/agent_credit/<teacher>``;
    * stores the agent in every checkpoint (key ``mtkd_rl_agent``) and restores it on
      ``--resume``; under distributed training the parts that differ between ranks (buffer,
      generator, state statistics) are gathered from every rank just before a checkpoint is
      due, and each rank resumes from its own;
    * under distributed training, starts every rank from rank 0's agent;
    * warns before training when the run would update the agent never, or never use it, and
      when the work dir holds an earlier run's checkpoints.

    With a stateless weighting (AVER, CA-MKD, EBKD) the hook does nothing, so baselines can
    inherit an MTKD-RL config and only swap the weighting.

    Args:
        **learning: Learner options that override the weighting's (see
            :class:`~mmtkd.engine.AgentLearner`), e.g. ``interval=500``.
    """

    priority = 'NORMAL'  # before CheckpointHook, so an epoch-end update is in that checkpoint

    def __init__(self, **learning) -> None:
        self.learning = learning
        self.learner: Optional[AgentLearner] = None
        # (iteration, every rank's rank_state_dict()) gathered for the next checkpoint
        self._rank_states: Optional[Tuple[int, List[Dict[str, Any]]]] = None

    @staticmethod
    def _distiller(runner):
        model = runner.model
        return model.module if is_model_wrapper(model) else model

    def before_run(self, runner) -> None:
        if self.learner is None:
            self.learner = AgentLearner.attach_to(self._distiller(runner), **self.learning)

    def before_train(self, runner) -> None:
        if self.learner is None:
            return
        warn_if_work_dir_holds_a_run(runner)
        weighting = self.learner.weighting
        if isinstance(runner.train_loop, IterBasedTrainLoop) and \
                weighting.warmup_iters is None and weighting.warmup_epochs > 0:
            # an iteration-based recipe (all of mmseg) counts no epochs: the warm-up's epochs
            # become passes over the training set
            iters = weighting.warmup_epochs * iterations_per_epoch(runner.train_dataloader)
            weighting.warmup.iters = iters
            runner.logger.info(
                f'MTKDRLWeighting: iteration-based loop, warmup_epochs='
                f'{weighting.warmup_epochs} taken as warmup_iters={iters} (passes over the '
                'training set); give warmup_iters to choose')
        self._warn_about_the_schedule(runner)
        self.learner.broadcast()

    def _warn_about_the_schedule(self, runner) -> None:
        """Warn when the agent would never be updated, or its weights never applied."""
        learner, loop = self.learner, runner.train_loop
        weighting = learner.weighting
        if isinstance(loop, IterBasedTrainLoop):
            if loop.max_iters // learner.interval == 0:
                warnings.warn(
                    f'MTKDRLWeighting: interval={learner.interval} exceeds the run\'s '
                    f'{loop.max_iters} iterations, so the agent is never updated and keeps its '
                    'initial weights; set a smaller interval',
                    stacklevel=2)
            if weighting.warmup_iters is not None and weighting.warmup_iters >= loop.max_iters:
                warnings.warn(
                    f'MTKDRLWeighting: warmup_iters={weighting.warmup_iters} covers the run\'s '
                    f'{loop.max_iters} iterations, so every teacher weight stays 1 and the agent '
                    'is never used; shorten the warm-up',
                    stacklevel=2)
        elif weighting.warmup_iters is None and weighting.warmup_epochs >= loop.max_epochs:
            warnings.warn(
                f'MTKDRLWeighting: warmup_epochs={weighting.warmup_epochs} covers the run\'s '
                f'{loop.max_epochs} epochs, so every teacher weight stays 1 and the agent is '
                'never used; shorten the warm-up or give warmup_iters',
                stacklevel=2)

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch: DATA_BATCH = None,
                         outputs: Optional[dict] = None) -> None:
        if self.learner is None:
            return
        self.learner.take_step()
        if self.every_n_train_iters(runner, self.learner.interval):
            self._update(runner)
        self._gather_rank_states(runner, after='iter')

    def after_train_epoch(self, runner) -> None:
        if self.learner is not None and not isinstance(runner.train_loop, IterBasedTrainLoop):
            self._update(runner)
            self._gather_rank_states(runner, after='epoch')

    def _update(self, runner) -> None:
        loss = self.learner.update()
        if loss is not None:
            runner.message_hub.update_scalar('train/agent_loss', loss)
            runner.message_hub.update_scalar('train/agent_updates', self.learner.num_updates)
        if self.learner.credit_means is not None:
            # what a per-teacher reward says of each teacher (TensorBoard: agent_credit/*, and
            # agent_veto/* or agent_feature_credit/* for a reward with such a channel)
            means = self.learner.credit_means
            names = self.learner.reward.channels
            columns = [means] if means.dim() == 1 else means.unbind(1)
            for channel, values in zip(names, columns):
                for name, value in zip(self.learner.distiller.teachers, values.tolist()):
                    runner.message_hub.update_scalar(f'train/agent_{channel}/{name}', value)

    def _gather_rank_states(self, runner, after: str) -> None:
        """Collect every rank's part of the agent on rank 0 when a checkpoint may follow (only
        rank 0 writes it; the other ranks never see ``before_save_checkpoint``)."""
        if dist.get_world_size() < 2 or not checkpoint_may_follow(runner, after):
            return
        gathered = dist.gather_object(self.learner.rank_state_dict(), dst=0)
        self._rank_states = (runner.iter, gathered) if dist.is_main_process() else None

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        if self.learner is None:
            return
        rank_states = None
        if dist.get_world_size() > 1:
            if self._rank_states is not None and self._rank_states[0] == runner.iter:
                rank_states = self._rank_states[1]
            else:
                warnings.warn(
                    'MTKDRLAgentHook: a checkpoint is saved at a time CheckpointHook\'s schedule '
                    'did not announce, so it holds only rank 0\'s agent buffer; resuming from '
                    'it gives every rank that buffer (not an exact resume)',
                    stacklevel=2)
        checkpoint[CHECKPOINT_KEY] = self.learner.state_dict(rank_states)

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        # the runner loads `load_from` / `--resume` before `before_run`
        self.before_run(runner)
        if self.learner is not None and CHECKPOINT_KEY in checkpoint:
            self.learner.load_state_dict(checkpoint[CHECKPOINT_KEY])
