"""The MTKD-RL agent's learning: network, optimiser, replay buffer, reward, update rule,
rank synchronisation and checkpoint state. The agent acts on the training device and learns on
the host (:class:`AgentLearner`). Owned by :class:`mmtkd.engine.MTKDRLAgentHook`, as
MMEngine's ``EMAHook`` owns its averaged model; the distiller's weighting only acts with the
policy the learner lends it (:class:`AgentPolicy`).
"""
import copy
import itertools
import warnings
from collections import deque
from typing import Any, Dict, List, Optional, Tuple

import torch
import torch.nn as nn
from mmengine import dist
from mmengine.registry import OPTIMIZERS
from torch import Tensor

from mmtkd.models.distillers.step_record import StepRecord
from mmtkd.models.weighting.mtkd_rl import MTKDRLAgent, MTKDRLWeighting
from mmtkd.models.weighting.mtkd_rl.mtkd_rl_weighting import BUFFER_DTYPES
from mmtkd.models.weighting.mtkd_rl.transfer import to_host_async
from .rank_gather import gather_batches
from .reward_normalisation import normalise_credit, normalise_rewards
from .rewards import BaseReward, build_reward
from .updates import BaseAgentUpdate, build_update


@torch.no_grad()
def copy_parameters(src: nn.Module, dst: nn.Module) -> None:
    """Copy ``src``'s parameters into ``dst``'s, in place (the acting agent and its host replica:
    one copy per parameter tensor, queued without waiting where the source is on the host;
    buffers, e.g. the state normaliser's statistics, are left alone).

    Args:
        src (nn.Module): The network copied from.
        dst (nn.Module): The same network, possibly on another device.
    """
    for source, target in zip(src.parameters(), dst.parameters()):
        target.copy_(source, non_blocking=True)


class AgentPolicy:
    """What the learner lends the weighting to act with: the agent network in eval mode under
    ``no_grad``, on the device of the states, and the agent's sampling generator.

    Args:
        learner (AgentLearner): The owner.
    """

    def __init__(self, learner: 'AgentLearner') -> None:
        self._learner = learner
        # the last same-for-every-sample action: (key, one row of weights)
        self._constant: Optional[Tuple[tuple, Tensor]] = None

    def stores_next_step(self) -> bool:
        """Whether the learner will store the step about to be taken (see
        :meth:`AgentLearner.stores_next_step`)."""
        return self._learner.stores_next_step()

    @property
    def stochastic(self) -> bool:
        """Whether actions are sampled in training (policy-gradient update rules)."""
        return self._learner.update_rule.stochastic

    @torch.no_grad()
    def act(self,
            states: Tensor,
            heuristics: Tensor,
            sample: bool,
            same_for_every_sample: bool = False) -> Dict[str, Tensor]:
        """Weights (B, 2, M) for a batch of states; with ``sample``, also the sampled
        ``actions`` and their ``log_prob``.

        Args:
            states (Tensor): (B, S) raw states.
            heuristics (Tensor): (B, 2, 2, M) heuristic weights.
            sample (bool): Sample actions (stochastic policies only).
            same_for_every_sample (bool): The states and heuristics are the same for every
                sample and every step (a constant state, no heuristic mixing): the mean action
                depends on the agent's parameters only, so it is computed once per update of
                them (and expanded over the batch, a view) instead of once per step.

        Returns:
            dict: See :meth:`MTKDRLAgent.act`.
        """
        learner = self._learner
        learner.to_device(states.device)
        agent = learner.agent
        sample = sample and self.stochastic and learner.stores_next_step()
        if same_for_every_sample and not sample:
            # the learner's revision counts its updates, loads and broadcasts; the tensors'
            # versions any other in-place change of the agent's parameters or statistics
            key = (learner.revision, states.device) + tuple(
                t._version for t in itertools.chain(agent.parameters(), agent.buffers()))
            if self._constant is None or self._constant[0] != key:
                self._constant = (key, self._act(agent, states[:1], heuristics[:1],
                                                 False)['weights'])
            weights = self._constant[1]
            return dict(weights=weights.expand(states.shape[0], *weights.shape[1:]))
        return self._act(agent, states, heuristics, sample)

    def _act(self, agent: nn.Module, states: Tensor, heuristics: Tensor,
             sample: bool) -> Dict[str, Tensor]:
        """The agent's action in eval mode (its mode is restored)."""
        learner = self._learner
        was_training = agent.training
        agent.eval()
        # actions are sampled only on the steps the learner stores (the others are not learned
        # from: they act with the mean action); see act
        acted = agent.act(states, heuristics, sample=sample, generator=learner.generator)
        agent.train(was_training)
        return acted


class AgentLearner:
    """Trains the MTKD-RL agent from the steps its weighting records.

    Every training step, :meth:`take_step` turns the weighting's recorded step into one stored
    batch (states, heuristic weights, sampled actions, raw reward), copied to the host. Every
    ``interval`` iterations (and at each epoch end, decided by the hook) :meth:`update` gathers
    every rank's stored batches, normalises their rewards (see :mod:`.reward_normalisation`),
    replays them through the update rule and empties the buffer.

    The agent acts where the training runs (:attr:`agent`, moved there by :meth:`to_device`) and
    learns on the host: the optimiser trains a CPU replica (:attr:`host_agent`), whatever the
    training device, and each update ends by copying the replica's parameters to the acting
    network. An update is a few hundred operations on tensors of a few hundred numbers: on a GPU
    each would be a kernel launch and the stored batches would travel back to the device to be
    learned from; on the host it launches nothing on the accelerator but those parameter copies.

    Args:
        weighting (MTKDRLWeighting): The distiller's weighting (set up with the teacher pool).
        distiller (nn.Module, optional): The distiller, for rewards measured after the step.
        update (str | dict | BaseAgentUpdate): ``'official'`` (default), ``'ppo'``, or a
            registered update rule (``dict(type='mmtkd.PPOUpdate', clip=0.1)``).
        reward (str | dict | BaseReward): ``'official'`` (same pass, default),
            ``'improvement'`` (``dict(type='mmtkd.ImprovementReward', every=4)`` measures one
            step in four), ``'agreement'`` (per-teacher credit, with ``update='credit'``), or
            a registered reward.
        interval (int): Iterations between updates. Defaults to 1000.
        optimizer (dict, optional): Agent optimiser; the update rule's default if None (SGD lr
            0.1 official, Adam lr 3e-3 PPO).
        buffer_size (int, optional): Most batches kept (oldest dropped); ``interval`` if None.
        reward_norm (str): ``'batch'`` (global batch; a batch of one against the window) or
            ``'window'``.
        buffer_dtype (str): ``'float32'``, ``'float16'`` or ``'bfloat16'`` storage of states.
        learn_during_warmup (bool, optional): Store warm-up steps; None means yes for the
            official update and no for stochastic rules (their sampled actions were not applied).
        seed (int): Seed of the sampling generator; rank ``r`` uses ``seed + r``.
        **legacy: ``ppo_epochs``, ``ppo_clip``, ``entropy_coef`` for the ``'ppo'`` alias.
    """

    def __init__(self,
                 weighting: MTKDRLWeighting,
                 distiller=None,
                 update='official',
                 reward='official',
                 interval: int = 1000,
                 optimizer: Optional[dict] = None,
                 buffer_size: Optional[int] = None,
                 reward_norm: str = 'batch',
                 buffer_dtype: str = 'float32',
                 learn_during_warmup: Optional[bool] = None,
                 seed: int = 0,
                 **legacy) -> None:
        if interval < 1:
            raise ValueError(f'MTKDRLWeighting: interval must be >= 1, got {interval}')
        self.weighting, self.distiller = weighting, distiller
        self.update_rule: BaseAgentUpdate = build_update(update, **legacy)
        self.reward: BaseReward = build_reward(reward)
        self.interval, self.reward_norm = interval, reward_norm
        self.buffer_dtype = BUFFER_DTYPES[buffer_dtype]
        self.learn_during_warmup = (not self.update_rule.stochastic
                                    if learn_during_warmup is None else learn_during_warmup)
        # initialised from its own seed, outside the global random stream: the student's
        # initialisation and data order of a seed stay those of any other weighting (paired
        # comparisons), and the agent's start is the same whatever ran before
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.agent = MTKDRLAgent(
                stochastic=self.update_rule.stochastic, **weighting.policy_spec())
        #: what the optimiser trains: a replica of the agent that stays on the host
        self.host_agent = copy.deepcopy(self.agent)
        self.optimizer_cfg = optimizer or self.update_rule.default_optimizer
        self.optimizer = OPTIMIZERS.build(
            dict(self.optimizer_cfg, params=self.host_agent.parameters()))
        self.generator = torch.Generator().manual_seed(seed + dist.get_rank())
        self.buffer: deque = deque(maxlen=buffer_size or interval)
        self.num_updates = 0
        #: per-teacher rewards only: each teacher's mean raw credit over the last update's
        #: window on every rank (logged by the hook), None before the first update
        self.credit_means: Optional[Tensor] = None
        #: training steps taken so far (one in ``reward.every`` is stored)
        self.steps_seen = 0
        #: bumped whenever the agent's parameters change (update, broadcast, load)
        self.revision = 0
        weighting.attach_policy(AgentPolicy(self))

    @classmethod
    def attach_to(cls, distiller, **overrides) -> Optional['AgentLearner']:
        """A learner for ``distiller``'s weighting, built from the weighting's options (what
        :class:`mmtkd.engine.MTKDRLAgentHook` does; benchmarks and experiments use it directly).

        Args:
            distiller (MultiTeacherDistiller): The distiller.
            **overrides: Learner options that replace the weighting's.

        Returns:
            AgentLearner | None: The learner, None when the weighting does not learn.
        """
        weighting = getattr(distiller, 'weighting', None)
        if not isinstance(weighting, MTKDRLWeighting):
            return None
        return cls(weighting, distiller, **dict(weighting.learning_cfg, **overrides))

    # ------------------------------------------------------------------ device
    def to_device(self, device: torch.device) -> None:
        """Move the acting agent to ``device`` (no-op if it is there); its host replica and
        the optimiser's state stay on the host.

        Args:
            device (torch.device): Where the step's tensors are.
        """
        if next(self.agent.parameters()).device != device:
            self.agent.to(device)

    # ------------------------------------------------------------------ experience
    def take_step(self, loss_after: Optional[Tensor] = None) -> None:
        """Store the step the weighting recorded (called after the optimiser step).

        Args:
            loss_after (Tensor, optional): (B,) the student's per-sample loss on the step's
                inputs after the step, for rewards that need it; measured with the distiller
                if None.
        """
        step: Optional[StepRecord] = self.weighting.pop_step()
        if step is None:
            return
        stored = self.stores_next_step()
        self.steps_seen += 1
        transition = step.transition
        if self.agent.normalizer is not None:
            self.agent.normalizer.update(transition['states'])
        if not stored or (transition['in_warmup'] and not self.learn_during_warmup):
            return
        if self.reward.after_step and loss_after is None:
            if self.distiller is None:
                raise RuntimeError(f'{type(self.reward).__name__} measures the student after '
                                   'the step: the learner needs the distiller')
            loss_after = self.distiller.student_per_sample_loss(step.inputs, step.data_samples)
        entry = dict(
            states=transition['states'].to(self.buffer_dtype),
            heuristics=transition['heuristics'],
            reward=self.reward.reward(step, loss_after).detach())
        if 'actions' in transition:
            entry.update(actions=transition['actions'], log_prob=transition['log_prob'])
        # queued host copies: the step does not wait for the GPU (see ``transfer``); readers of
        # the buffer wait for them first (``_settle_buffer``)
        self.buffer.append({k: to_host_async(v.detach()) for k, v in entry.items()})

    def stores_next_step(self) -> bool:
        """Whether the next training step will be stored (one in ``reward.every``)."""
        return self.steps_seen % self.reward.every == 0

    @staticmethod
    def _settle_buffer() -> None:
        """Wait until queued host copies of buffer entries have landed (once per update or
        checkpoint, not per step; nothing to wait for without CUDA)."""
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.current_stream().synchronize()

    # ------------------------------------------------------------------ learning
    def update(self) -> Optional[float]:
        """Train the agent on the buffer, then empty it.

        Under distributed training every rank gathers every rank's stored batches (batch ``i``
        of each update step is every rank's ``i``-th batch, in rank order,
        :func:`~.rank_gather.gather_batches`) and takes the same steps on them, so all ranks
        keep identical agent parameters and optimiser state; with equal per-rank batches, a
        step's gradient is the mean of the ranks' gradients. The state normaliser's statistics
        are merged across ranks first.

        Returns:
            float | None: Mean agent loss over the steps taken, None if the buffer was empty.
        """
        if not self.buffer:
            return None
        self._settle_buffer()
        if self.agent.normalizer is not None:
            self.agent.normalizer.sync()
            self.host_agent.normalizer.load_state_dict(self.agent.normalizer.state_dict())
        loss = self.learn_on_host(gather_batches(list(self.buffer)))
        self.buffer.clear()
        copy_parameters(self.host_agent, self.agent)
        self.num_updates += 1
        self.revision += 1
        return loss

    def learn_on_host(self, batches: List[Dict[str, Tensor]]) -> float:
        """Normalise the rewards of ``batches`` and take the update rule's steps on the host
        replica (the part of an update that runs on the CPU whatever the training device).

        Args:
            batches (list[dict]): Stored batches (host tensors; every rank's, gathered).

        Returns:
            float: Mean agent loss over the steps taken.
        """
        bad = [i for i, b in enumerate(batches) if not torch.isfinite(b['states']).all()]
        if bad:
            raise FloatingPointError(
                f'MTKDRLWeighting: {len(bad)} stored batches have non-finite agent states '
                '(a teacher loss, KD value or logit was inf/NaN); check the teachers and the '
                'data of those iterations')
        batches = [{k: v.float() for k, v in b.items()} for b in batches]
        raw = [b['reward'] for b in batches]
        if self.reward.per_teacher:
            self.credit_means = torch.cat(raw).mean(0)
            rule = self.update_rule
            rewards = normalise_credit(raw, rule.credit_scale, rule.veto_penalty,
                                       self.reward.channels, rule.feature_credit_scale)
        else:
            rewards = normalise_rewards(raw, self.reward_norm, clamp=self.update_rule.clamp_rewards)
        for batch, reward in zip(batches, rewards):
            batch['reward'] = reward
        agent = self.host_agent
        agent.train()
        # the step losses are checked once, after the last step (a non-finite step leaves
        # non-finite parameters behind, so the final check still sees it)
        step_losses: List[Tensor] = []
        for _ in range(self.update_rule.passes):
            for batch in batches:
                loss = self.update_rule.loss(agent, batch)
                self.optimizer.zero_grad()
                loss.backward()
                self.optimizer.step()
                step_losses.append(loss.detach())
        agent.eval()
        losses = torch.stack(step_losses)
        self._check_finite(losses)
        return losses.mean().item()

    def _check_finite(self, losses: Tensor) -> None:
        """Raise if an update step's loss or the agent's parameters are not finite."""
        params = [p.detach() for p in self.host_agent.parameters()]
        if torch.isfinite(torch.cat([losses] + [p.flatten() for p in params])).all():
            return
        params_ok = all(torch.isfinite(p).all() for p in params)
        raise FloatingPointError(
            f'MTKDRLWeighting: the agent diverged at update {self.num_updates} (step losses '
            f'{losses.tolist()}, finite parameters: {params_ok}); the state is probably too '
            'large for the agent optimiser (e.g. dense-task losses in the official state): '
            'set normalize_state=True or lower the agent learning rate')

    def broadcast(self) -> None:
        """Copy rank 0's agent parameters to every rank (the state normaliser's statistics are
        each rank's own, see :meth:`rank_state_dict`)."""
        if dist.get_world_size() < 2:
            return
        for tensor in self.agent.parameters():
            dist.broadcast(tensor.data, src=0)
        copy_parameters(self.agent, self.host_agent)
        self.revision += 1

    # ------------------------------------------------------------------ checkpoint
    def rank_state_dict(self) -> Dict[str, Any]:
        """What differs between ranks: the buffer since the last update, the sampling
        generator and the state normaliser's statistics.

        Returns:
            dict: This rank's part of the agent state.
        """
        self._settle_buffer()
        normalizer = self.agent.normalizer
        return dict(
            buffer=list(self.buffer),
            generator=self.generator.get_state(),
            normalizer=None if normalizer is None else {
                k: v.detach().cpu()
                for k, v in normalizer.state_dict().items()
            })

    def load_rank_state_dict(self, state: Dict[str, Any]) -> None:
        """Restore what :meth:`rank_state_dict` saved.

        Args:
            state (dict): One rank's part of a saved agent state.
        """
        self.buffer.clear()
        self.buffer.extend(state['buffer'])
        self.generator.set_state(state['generator'])
        if state.get('normalizer') is not None and self.agent.normalizer is not None:
            self.agent.normalizer.load_state_dict(state['normalizer'])
        if len(state['buffer']) > (self.buffer.maxlen or 0):
            warnings.warn('MTKDRLWeighting: the saved buffer is larger than buffer_size; the '
                          'oldest batches were dropped')

    def state_dict(self, rank_states: Optional[List[Dict[str, Any]]] = None) -> Dict[str, Any]:
        """Everything needed to resume the agent exactly.

        Args:
            rank_states (list[dict], optional): :meth:`rank_state_dict` of every rank, in rank
                order (gathered by the hook under distributed training); this rank's alone if
                None.

        Returns:
            dict: Agent parameters, optimiser and counters (equal on every rank) and ``ranks``,
            the per-rank parts.
        """
        return dict(
            agent={
                k: v.detach().cpu()
                for k, v in self.agent.state_dict().items()
            },
            optimizer=self.optimizer.state_dict(),
            num_updates=self.num_updates,
            steps_seen=self.steps_seen,
            ranks=rank_states if rank_states is not None else [self.rank_state_dict()])

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` saved; each rank takes its own part.

        Args:
            state (dict): A saved agent state.
        """
        self.agent.load_state_dict(state['agent'])
        self.host_agent.load_state_dict(state['agent'])
        self.optimizer.load_state_dict(state['optimizer'])
        self.revision += 1
        self.num_updates = state['num_updates']
        self.steps_seen = state.get('steps_seen', 0)  # saved before ``every`` existed: 0
        ranks = state.get('ranks')
        if ranks is None:  # saved before per-rank parts existed
            ranks = [dict(buffer=state['buffer'], generator=state['generator'])]
        rank, world_size = dist.get_rank(), dist.get_world_size()
        if len(ranks) != world_size:
            warnings.warn(
                f'MTKDRLWeighting: the checkpoint holds the agent buffers of {len(ranks)} '
                f'rank(s), this run has {world_size}; every rank continues from rank 0\'s '
                'buffer, generator and state statistics, so the resumed run is not the same as '
                'an uninterrupted one. Resume with the original number of processes for that.')
            rank = 0
        self.load_rank_state_dict(ranks[rank])
