"""MTKD-RL teacher weighting (Yang et al., AAAI 2025) with the official and a PPO agent update."""
import warnings
from collections import deque
from typing import Any, Dict, List, Optional, Sequence

import torch
from mmengine import dist
from mmengine.registry import OPTIMIZERS
from torch import Tensor

from mmtkd.registry import MODELS
from ..base_weighting import BaseWeighting, TeacherSignals, TeacherWeights
from .agent import MTKDRLAgent
from .agent_state import STATE_BUILDERS, state_dim
from .mixing import DIVERGENCE_MODES, heuristic_weights
from .reward_normalisation import REWARD_NORMS, normalise_rewards
from .transfer import to_host_async

UPDATES = ('official', 'ppo')
#: ``buffer_dtype`` options: how stored states are kept on the host
BUFFER_DTYPES = dict(float32=torch.float32, float16=torch.float16, bfloat16=torch.bfloat16)
REWARDS = ('official', 'improvement')


@MODELS.register_module()
class MTKDRLWeighting(BaseWeighting):
    """Per-sample teacher weights from a reinforcement-learning agent (MTKD-RL).

    **Official behaviour** (``update='official'``, the defaults): the state of each sample is
    ``[cos_m, KL_m, CE_m, e_m, z_m]`` over teachers; a 128-unit network with two softmax heads
    gives learned weights ``l`` (logit KD) and ``f`` (feature KD), mixed with the confidence-
    and divergence-aware heuristics (static thirds, or learned ``dynamic`` coefficients).
    Actions are deterministic. During warm-up every weight is 1. The reward of a sample is
    ``-(CE_s + sum_m wl KL_m + beta sum_m wf FEAT_m)`` from the same forward pass, normalised in
    the batch and clamped to [0, 1]. Every ``interval`` iterations and at each epoch end the
    stored batches are replayed in order, one SGD step (lr 0.1) each on
    ``BCE(wl, 1, weight=r) + BCE(wf, 1, weight=r)``. Known property: this objective pulls the
    learned heads toward uniform weights; the heuristic terms carry most of the differences.

    **Policy gradient** (``update='ppo'``): the heads give the means of a logistic-normal policy
    (Gaussian pre-softmax actions, learned state-independent sigma). In training, actions are
    sampled from an agent-owned generator (saved in checkpoints, so resumed runs draw the same
    actions) and stored with their log-probabilities. The advantage is the batch-normalised
    reward (the batch mean is the baseline; no clamping). The update runs ``ppo_epochs`` passes of
    PPO's clipped surrogate over the buffer with an entropy bonus. Outside training the mean
    action is used. Heuristic mixing may be ``'none'`` (pure policy) or ``'static'``.

    **Options beyond the paper**: ``state='compact'`` (per teacher ``[KL, CE, p(label), H]``),
    ``normalize_state=True`` (running mean / std), ``divergence='inverse'`` (``softmax(-KL)``:
    does not reward an adversarial teacher), ``reward='improvement'`` (the drop of the student's
    per-sample loss after the optimiser step, measured by :class:`MTKDRLAgentHook`),
    ``reward_norm='window'`` (rewards normalised over the last ``interval`` iterations instead of
    within each batch; see :mod:`.reward_normalisation`).

    Rewards are stored raw and normalised at each update, with statistics over every rank's
    samples of the same iteration (the global batch): the official per-batch rule, which also
    works at one image per GPU under DDP. A global batch of a single sample (one process, batch
    1) is normalised against the window, so the agent still learns.

    The agent is deliberately kept outside the module tree: the student's optimiser, DDP
    wrappers and ``state_dict()`` never see it; :class:`MTKDRLAgentHook` trains it, keeps its
    ranks in sync and stores it in checkpoints.

    Args:
        update (str): ``'official'`` or ``'ppo'``.
        state (str): ``'official'`` or ``'compact'``.
        reward (str): ``'official'`` (same pass) or ``'improvement'`` (after the step).
        mixing (str): ``'static'`` (official default), ``'dynamic'`` or ``'none'``.
        divergence (str): ``'official'`` (``softmax(KL)``) or ``'inverse'``.
        hidden (int): Hidden units of the policy. Defaults to 128.
        normalize_state (bool, optional): Running mean / std normalisation of states. None
            (default) means off for the official state (as released) and on for the compact
            state, whose raw statistics (T^2-scaled KL, CE of poisoned teachers) are large
            enough to saturate the policy: measured on digits, the compact-state PPO agent put
            0.99 weight on a poisoned teacher without normalisation and 0.74 on the good one
            with it.
        warmup_epochs (int): Epochs with all weights 1 (epoch-based loops). Defaults to 1.
        warmup_iters (int, optional): Warm-up in iterations instead (iteration-based loops).
        interval (int): Iterations between agent updates. Defaults to 1000.
        optimizer (dict, optional): Agent optimiser; defaults to SGD lr 0.1 (official) or Adam
            lr 3e-3 (ppo).
        buffer_size (int, optional): Most batches kept (oldest dropped); defaults to ``interval``.
        ppo_epochs (int): Passes over the buffer per PPO update. Defaults to 4.
        ppo_clip (float): PPO ratio clip. Defaults to 0.2.
        entropy_coef (float): PPO entropy bonus. Defaults to 1e-3.
        init_std (float): Initial sigma of the stochastic policy. Defaults to 1.0 (measured on
            digits: 0.5 explored too little to escape a poisoned majority on some seeds).
        seed (int): Seed of the sampling generator; rank ``r`` uses ``seed + r``. Defaults to 0.
        reward_norm (str): ``'batch'`` (official, over the global batch) or ``'window'``.
        buffer_dtype (str): How stored states are kept on the host until the update:
            ``'float32'`` (default, exact) or ``'float16'`` / ``'bfloat16'`` (half the memory;
            the agent then learns from rounded states). The buffer's size is discussed in
            docs/agent_behaviour.md.
        learn_during_warmup (bool, optional): Store warm-up iterations (whose applied weights
            were all 1, not the agent's) for the agent's first update. None (default) means yes
            for ``update='official'`` (the released code trains on the warm-up epoch) and no for
            ``'ppo'`` (its stored sampled actions were never applied, so their importance ratios
            would be wrong).
    """

    needs_agent_hook = True

    def __init__(self,
                 update: str = 'official',
                 state: str = 'official',
                 reward: str = 'official',
                 mixing: str = 'static',
                 divergence: str = 'official',
                 hidden: int = 128,
                 normalize_state: Optional[bool] = None,
                 warmup_epochs: int = 1,
                 warmup_iters: Optional[int] = None,
                 interval: int = 1000,
                 optimizer: Optional[dict] = None,
                 buffer_size: Optional[int] = None,
                 ppo_epochs: int = 4,
                 ppo_clip: float = 0.2,
                 entropy_coef: float = 1e-3,
                 init_std: float = 1.0,
                 seed: int = 0,
                 reward_norm: str = 'batch',
                 buffer_dtype: str = 'float32',
                 learn_during_warmup: Optional[bool] = None) -> None:
        super().__init__()
        for name, value, allowed in (('update', update, UPDATES), ('state', state,
                                                                    tuple(STATE_BUILDERS)),
                                     ('reward', reward, REWARDS),
                                     ('divergence', divergence, DIVERGENCE_MODES),
                                     ('reward_norm', reward_norm, REWARD_NORMS),
                                     ('buffer_dtype', buffer_dtype, tuple(BUFFER_DTYPES))):
            if value not in allowed:
                raise ValueError(f'MTKDRLWeighting: {name} must be one of {allowed}, '
                                 f'got {value!r}')
        if update == 'ppo' and mixing == 'dynamic':
            raise ValueError("MTKDRLWeighting: mixing='dynamic' is trained by the official "
                             "update only; use mixing='static' or 'none' with update='ppo'")
        if interval < 1:
            raise ValueError(f'MTKDRLWeighting: interval must be >= 1, got {interval}')
        self.update_rule, self.state_kind, self.reward_kind = update, state, reward
        # only what the state, the heuristics and the reward read is computed by the distiller
        self.required_signals = frozenset(
            {'teacher_loss', 'student_loss'} | ({'embeddings', 'logit_summaries'} if state ==
                                                'official' else
                                                {'teacher_confidence', 'teacher_entropy'}))
        self.mixing, self.divergence = mixing, divergence
        if normalize_state is None:
            normalize_state = state == 'compact'
        self.hidden, self.normalize_state, self.init_std = hidden, normalize_state, init_std
        self.warmup_epochs, self.warmup_iters, self.interval = warmup_epochs, warmup_iters, interval
        self.optimizer_cfg = optimizer or (dict(type='SGD', lr=0.1) if update == 'official' else
                                           dict(type='Adam', lr=3e-3))
        self.buffer: deque = deque(maxlen=buffer_size or interval)
        self.ppo_epochs, self.ppo_clip, self.entropy_coef = ppo_epochs, ppo_clip, entropy_coef
        self.reward_norm = reward_norm
        self.buffer_dtype = BUFFER_DTYPES[buffer_dtype]
        self.learn_during_warmup = (update == 'official' if learn_during_warmup is None else
                                    learn_during_warmup)
        # every rank explores with its own noise
        self.generator = torch.Generator().manual_seed(seed + dist.get_rank())
        self.beta = 1.0
        self.epoch = self.iter = self.num_updates = 0
        self.hook_attached = False
        self._pending: Optional[Dict[str, Tensor]] = None
        self._last_sample: Optional[Dict[str, Tensor]] = None

    # ------------------------------------------------------------------ set-up
    def setup(self, num_teachers: int, embed_dims: Sequence[int], num_classes: int,
              beta: float) -> None:
        """Build the agent once the teacher pool is known (called by the distiller).

        Args:
            num_teachers (int): Number of teachers M.
            embed_dims (Sequence[int]): Embedding size of each teacher.
            num_classes (int): Size of each teacher's logit summary.
            beta (float): The distiller's feature-KD weight (used in the reward).
        """
        self.beta = beta
        agent = MTKDRLAgent(
            state_dim(self.state_kind, embed_dims, num_classes), num_teachers,
            stochastic=self.update_rule == 'ppo', mixing=self.mixing, hidden=self.hidden,
            normalize_state=self.normalize_state, init_std=self.init_std)
        # Outside the module tree on purpose (see the class docstring).
        self.__dict__['agent'] = agent
        self.__dict__['agent_optimizer'] = OPTIMIZERS.build(
            dict(self.optimizer_cfg, params=agent.parameters()))

    @property
    def in_warmup(self) -> bool:
        """Whether the current iteration is in the warm-up (all weights 1)."""
        if self.warmup_iters is not None:
            return self.iter < self.warmup_iters
        return self.epoch < self.warmup_epochs

    def set_progress(self, epoch: int, iteration: int) -> None:
        """Tell the weighting where training is (called by the hook before each iteration).

        Args:
            epoch (int): Current epoch (0-based).
            iteration (int): Current global iteration (0-based).
        """
        self.epoch, self.iter = epoch, iteration

    # ------------------------------------------------------------------ acting
    def _sync_device(self, device: torch.device) -> None:
        """Move the agent, and its optimiser's state, to the device of the states."""
        if next(self.agent.parameters()).device != device:
            self.agent.to(device)
            # a state loaded on resume sits where the parameters were at that time. The
            # optimiser is rebuilt over the moved parameters (some devices give new Parameter
            # objects) and its state loaded back, which casts it to their device with torch's
            # rules (e.g. Adam keeps its step counters on the host)
            state = self.agent_optimizer.state_dict()
            self.__dict__['agent_optimizer'] = OPTIMIZERS.build(
                dict(self.optimizer_cfg, params=self.agent.parameters()))
            self.agent_optimizer.load_state_dict(state)

    def forward(self, signals: TeacherSignals) -> TeacherWeights:
        states = STATE_BUILDERS[self.state_kind](signals)
        self._sync_device(states.device)
        heuristics = heuristic_weights(signals, self.divergence)
        sample = self.training and self.update_rule == 'ppo'
        with torch.no_grad():
            was_training = self.agent.training
            self.agent.eval()
            acted = self.agent.act(states, heuristics, sample=sample, generator=self.generator)
            self.agent.train(was_training)
        self._last_sample = dict(states=states, heuristics=heuristics, **acted)
        weights = acted['weights']
        if self.training and self.in_warmup:
            ones = torch.ones_like(weights[:, 0])
            return TeacherWeights(ones, ones)
        return TeacherWeights(weights[:, 0], weights[:, 1])

    # ------------------------------------------------------------------ experience
    def observe(self, signals: TeacherSignals, weights: TeacherWeights) -> None:
        sample, self._last_sample = self._last_sample, None
        if sample is None:
            return
        if self.agent.normalizer is not None:
            self.agent.normalizer.update(sample['states'])
        if self.in_warmup and not self.learn_during_warmup:
            return
        entry = dict(states=sample['states'].to(self.buffer_dtype),
                     heuristics=sample['heuristics'])
        if 'actions' in sample:
            entry.update(actions=sample['actions'], log_prob=sample['log_prob'])
        if self.reward_kind == 'official':
            reward = -(signals.student_loss + (weights.logit * signals.logit_kd).sum(1) +
                       self.beta * (weights.feature * signals.feature_kd).sum(1))
            self._store(entry, reward)
        else:
            entry['loss_before'] = signals.student_loss
            self._pending = entry

    def complete_reward(self, student_loss_after: Tensor) -> None:
        """Finish the pending sample with the ``'improvement'`` reward (called by the hook).

        Args:
            student_loss_after (Tensor): (B,) the student's per-sample loss on the same batch
                after the optimiser step.
        """
        entry, self._pending = self._pending, None
        if entry is not None:
            self._store(entry, entry.pop('loss_before') - student_loss_after)

    def _store(self, entry: Dict[str, Tensor], reward: Tensor) -> None:
        entry['reward'] = reward.detach()  # raw: normalised over ranks / window at the update
        # queued host copies: the step does not wait for the GPU (see ``transfer``); readers of
        # the buffer wait for them first (``_settle_buffer``)
        self.buffer.append({k: to_host_async(v.detach()) for k, v in entry.items()})

    @staticmethod
    def _settle_buffer() -> None:
        """Wait until queued host copies of buffer entries have landed (once per agent update or
        checkpoint, not per step; nothing to wait for without CUDA)."""
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.current_stream().synchronize()

    @property
    def needs_improvement_reward(self) -> bool:
        """Whether the hook must measure the student's loss again after each step."""
        return self.reward_kind == 'improvement'

    # ------------------------------------------------------------------ learning
    def update(self) -> Optional[float]:
        """Train the agent on the buffer, then empty it.

        Under distributed training every rank replays its own buffer (same number of batches on
        every rank), the state normaliser's statistics are merged and gradients are averaged
        across ranks before each step, so all ranks keep identical agent parameters and
        optimiser state.

        Returns:
            float | None: Mean agent loss over the steps taken, None if the buffer was empty.
        """
        if not self.buffer:
            return None
        self._settle_buffer()
        if self.agent.normalizer is not None:
            self.agent.normalizer.sync()
        bad = [i for i, b in enumerate(self.buffer) if not torch.isfinite(b['states']).all()]
        if bad:
            raise FloatingPointError(
                f'MTKDRLWeighting: {len(bad)} stored batches have non-finite agent states '
                '(a teacher loss, KD value or logit was inf/NaN); check the teachers and the '
                'data of those iterations')
        device = next(self.agent.parameters()).device
        batches = [{k: v.to(device, torch.float32) for k, v in b.items()} for b in self.buffer]
        self.buffer.clear()
        rewards = normalise_rewards([b['reward'] for b in batches], self.reward_norm,
                                    clamp=self.update_rule == 'official')
        for batch, reward in zip(batches, rewards):
            batch['reward'] = reward
        self.agent.train()
        # the step losses stay on the device and are checked once, after the last step: one
        # host-device synchronisation per update instead of a few per step (a non-finite step
        # leaves non-finite parameters behind, so the final check still sees it)
        step_losses: List[Tensor] = []
        passes = 1 if self.update_rule == 'official' else self.ppo_epochs
        for _ in range(passes):
            for batch in batches:
                if self.update_rule == 'official':
                    loss = self.agent.official_loss(batch['states'], batch['heuristics'],
                                                    batch['reward'])
                else:
                    loss = self.agent.ppo_loss(batch['states'], batch['actions'],
                                               batch['log_prob'], batch['reward'],
                                               self.ppo_clip, self.entropy_coef)
                self.agent_optimizer.zero_grad()
                loss.backward()
                self._average_gradients()
                self.agent_optimizer.step()
                step_losses.append(loss.detach())
        self.agent.eval()
        self.num_updates += 1
        losses = torch.stack(step_losses)
        self._check_finite(losses)
        return losses.mean().item()

    def _check_finite(self, losses: Tensor) -> None:
        """Raise if an update step's loss or the agent's parameters are not finite (one
        synchronisation on GPU)."""
        params = [p.detach() for p in self.agent.parameters()]
        if torch.isfinite(torch.cat([losses] + [p.flatten() for p in params])).all():
            return
        params_ok = all(torch.isfinite(p).all() for p in params)
        raise FloatingPointError(
            f'MTKDRLWeighting: the agent diverged at update {self.num_updates} (step losses '
            f'{losses.tolist()}, finite parameters: {params_ok}); the state is probably too '
            'large for the agent optimiser (e.g. dense-task losses in the official state): '
            'set normalize_state=True or lower the agent learning rate')

    def _average_gradients(self) -> None:
        if dist.get_world_size() < 2:
            return
        for param in self.agent.parameters():
            if param.grad is not None:
                dist.all_reduce(param.grad, op='mean')

    def broadcast_agent(self) -> None:
        """Copy rank 0's agent parameters to every rank (the state normaliser's statistics are
        each rank's own, see :meth:`rank_state_dict`)."""
        if dist.get_world_size() < 2:
            return
        for tensor in self.agent.parameters():
            dist.broadcast(tensor.data, src=0)

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
            normalizer=None if normalizer is None else
            {k: v.detach().cpu() for k, v in normalizer.state_dict().items()})

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

    def agent_state_dict(self, rank_states: Optional[List[Dict[str, Any]]] = None
                         ) -> Dict[str, Any]:
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
            agent={k: v.detach().cpu() for k, v in self.agent.state_dict().items()},
            optimizer=self.agent_optimizer.state_dict(),
            num_updates=self.num_updates,
            ranks=rank_states if rank_states is not None else [self.rank_state_dict()])

    def load_agent_state_dict(self, state: Dict[str, Any]) -> None:
        """Restore what :meth:`agent_state_dict` saved; each rank takes its own part.

        Args:
            state (dict): A saved agent state.
        """
        self.agent.load_state_dict(state['agent'])
        self.agent_optimizer.load_state_dict(state['optimizer'])
        self.num_updates = state['num_updates']
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
