"""MTKD-RL teacher weighting (Yang et al., AAAI 2025): the acting half of the agent."""
from typing import TYPE_CHECKING, Any, Dict, FrozenSet, Optional, Sequence

import torch
from torch import Tensor

from mmtkd.registry import AGENT_REWARDS, AGENT_UPDATES, MODELS
from ..base_weighting import BaseWeighting, TeacherSignals, TeacherWeights
from ..warmup import WarmupSchedule
from .agent_state import STATE_BUILDERS, state_dim
from .mixing import DIVERGENCE_MODES, GATE_SIGNALS, GATES, MIXING_MODES, gated, heuristic_weights

if TYPE_CHECKING:  # the distiller imports this module
    from ...distillers.step_record import StepRecord

#: Options that configure learning: kept on the weighting so that configs name the whole
#: strategy in one place, and handed to :class:`mmtkd.engine.AgentLearner` by the hook.
LEARNING_OPTIONS = ('update', 'reward', 'interval', 'optimizer', 'buffer_size', 'reward_norm',
                    'buffer_dtype', 'learn_during_warmup', 'seed', 'ppo_epochs', 'ppo_clip',
                    'entropy_coef')
#: ``reward_norm`` options (see :mod:`mmtkd.engine.agent.reward_normalisation`)
REWARD_NORMS = ('batch', 'window')
#: ``normalise`` options: how the policy's weights per head are scaled (see
#: :func:`normalised_weights`)
NORMALISATIONS = ('sum', 'max')
#: ``buffer_dtype`` options: how the learner keeps stored states on the host
BUFFER_DTYPES = dict(float32=torch.float32, float16=torch.float16, bfloat16=torch.bfloat16)


def _registered(registry, cfg, option: str):
    """The registered class ``cfg`` names (a type name, an alias or a config dict)."""
    name = cfg if isinstance(cfg, str) else dict(cfg).get('type')
    found = registry.get(name) if isinstance(name, str) else None
    if found is None:
        raise ValueError(f'MTKDRLWeighting: {option}={cfg!r} is not a registered '
                         f'{registry.name} (e.g. {sorted(registry.module_dict)})')
    return found


def _reward_signals(reward_cls, cfg) -> FrozenSet[str]:
    """The signals a reward configured by ``cfg`` reads (its options may add some, e.g. the
    agreement reward's ``features``), from the reward built as the learner will build it."""
    if not isinstance(cfg, dict):
        return reward_cls.signals
    options = {k: v for k, v in cfg.items() if k not in ('type', '_scope_')}
    return reward_cls(**options).signals


def normalised_weights(weights: Tensor, normalise: str = 'sum') -> Tensor:
    """Scale the policy's per-head weights.

    * ``'sum'``: as the policy gives them, summing to 1 over the teachers (the paper's softmax
      heads): a teacher's lost weight goes to the others;
    * ``'max'``: divided by ``M`` times their largest, so the most trusted teacher keeps AVER's
      ``1/M`` and each other one the fraction of it the policy gives: a dropped teacher's weight
      is not handed on and the total distilled falls below 1 (equal weights stay AVER's).

    Args:
        weights (Tensor): (B, 2, M) weights of the logit and feature heads, each row summing to 1.
        normalise (str): One of :data:`NORMALISATIONS`.

    Returns:
        Tensor: (B, 2, M) the scaled weights.
    """
    if normalise == 'sum':
        return weights
    return weights / (weights.shape[-1] * weights.amax(-1, keepdim=True))


@MODELS.register_module()
class MTKDRLWeighting(BaseWeighting):
    """Per-sample teacher weights from a reinforcement-learning agent (MTKD-RL).

    This class *acts*: each step it builds the agent's state from the signals, asks the policy
    for weights, mixes them with the heuristics, and records the step (state, heuristics,
    sampled actions, and the distiller's per-sample losses) for learning.
    :class:`mmtkd.engine.MTKDRLAgentHook` owns the learning (network, optimiser, buffer, reward,
    update rule, rank synchronisation, checkpoints) through an
    :class:`mmtkd.engine.AgentLearner`, and lends the weighting the policy to act with; without
    the hook, training fails at the first step with a message saying so.

    **Official behaviour** (the defaults): the state of each sample is
    ``[cos_m, KL_m, CE_m, e_m, z_m]`` over teachers; a 128-unit network with two softmax heads
    gives learned weights ``l`` (logit KD) and ``f`` (feature KD), mixed with the confidence-
    and divergence-aware heuristics (static thirds, or learned ``dynamic`` coefficients).
    Actions are deterministic. During warm-up every weight is 1. The reward of a sample is
    minus its back-propagated loss ``L_task + alpha sum_m wl KL_m + beta sum_m wf FEAT_m``
    (same pass), normalised over the global batch and clamped to [0, 1]; every ``interval``
    iterations and at each epoch end the stored batches are replayed, one SGD step (lr 0.1)
    each on ``BCE(wl, 1, weight=r) + BCE(wf, 1, weight=r)``.

    **Policy gradient** (``update='ppo'``): the heads give the means of a logistic-normal policy;
    in training actions are sampled and stored with their log-probabilities, and PPO's clipped
    surrogate is run over the buffer. Outside training the mean action is used.

    Args:
        update (str | dict): Update rule: ``'official'``, ``'ppo'`` or a registered
            ``mmtkd.*Update`` config (see docs/agent_behaviour.md, "Adding a reward or an update
            rule").
        state (str): ``'official'``, ``'compact'`` (per teacher ``[KL, CE, p(label), H]``) or
            ``'constant'`` (the same for every sample: one learned weight per teacher).
        reward (str | dict): ``'official'`` (same pass), ``'improvement'`` (drop of the
            student's per-sample loss over the step, on the step's inputs) or a registered
            ``mmtkd.*Reward`` config.
        mixing (str): ``'static'`` (official default), ``'dynamic'`` or ``'none'``.
        divergence (str): ``'official'`` (``softmax(KL)``) or ``'inverse'`` (``softmax(-KL)``).
        gate (str, optional): A per-sample gate on the agent's (mixed) weights: ``'entropy'``
            scales them by EBKD's entropy weights, ``'confidence'`` by each teacher's
            probability of the ground truth, and renormalises
            (:func:`~mmtkd.models.weighting.mtkd_rl.mixing.gated`); the agent learns whom to
            keep, the teachers' certainty spreads it over the samples. Defaults to None (no
            gate).
        normalise (str): How the weights of each head are scaled before they are used
            (:func:`normalised_weights`): ``'sum'`` (default, the paper's: they sum to 1, a
            dropped teacher's weight goes to the others) or ``'max'`` (the most trusted teacher
            keeps ``1/M``; a dropped teacher's weight is not handed on). The agent's state and
            learning see the policy's own weights either way. ``'max'`` lowers the KD distilled
            as teachers are dropped, which trained better Fashion-MNIST and weaker detection
            students than ``'sum'`` (docs/agent_behaviour.md, "Weights that drop a teacher
            without handing its weight on").
        hidden (int): Hidden units of the policy. Defaults to 128.
        normalize_state (bool, optional): Running mean / std normalisation of states. None
            (default) means off for the official state and on for the compact one (see
            docs/agent_behaviour.md for the measurement).
        warmup_epochs (int): Epochs with all weights 1. On an iteration-based loop the hook
            takes them as passes over the training set (``warmup_epochs x
            ceil(len(dataset) / global batch)`` iterations). Defaults to 1.
        warmup_iters (int, optional): Warm-up in iterations instead (iteration-based loops).
        init_std (float): Initial sigma of a stochastic policy. Defaults to 1.0.
        **learning: The learner's options (:data:`LEARNING_OPTIONS`): ``interval`` (1000),
            ``optimizer``, ``buffer_size``, ``reward_norm`` (``'batch'`` / ``'window'``),
            ``buffer_dtype``, ``learn_during_warmup``, ``seed``, and for ``update='ppo'``
            ``ppo_epochs``, ``ppo_clip``, ``entropy_coef``; see
            :class:`mmtkd.engine.AgentLearner`.
    """

    def __init__(self,
                 update='official',
                 state: str = 'official',
                 reward='official',
                 mixing: str = 'static',
                 divergence: str = 'official',
                 gate: Optional[str] = None,
                 normalise: str = 'sum',
                 hidden: int = 128,
                 normalize_state: Optional[bool] = None,
                 warmup_epochs: int = 1,
                 warmup_iters: Optional[int] = None,
                 init_std: float = 1.0,
                 **learning) -> None:
        super().__init__()
        unknown = sorted(set(learning) - set(LEARNING_OPTIONS))
        if unknown:
            raise TypeError(f'MTKDRLWeighting: unknown options {unknown}')
        choices = (
            ('state', state, tuple(STATE_BUILDERS)),
            ('mixing', mixing, MIXING_MODES),
            ('divergence', divergence, DIVERGENCE_MODES),
            ('gate', gate, GATES),
            ('normalise', normalise, NORMALISATIONS),
            ('reward_norm', learning.get('reward_norm', 'batch'), REWARD_NORMS),
            ('buffer_dtype', learning.get('buffer_dtype', 'float32'), tuple(BUFFER_DTYPES)),
        )
        for name, value, allowed in choices:
            if value not in allowed:
                raise ValueError(f'MTKDRLWeighting: {name} must be one of {allowed}, '
                                 f'got {value!r}')
        update_cls = _registered(AGENT_UPDATES, update, 'update')
        reward_cls = _registered(AGENT_REWARDS, reward, 'reward')
        if update_cls.stochastic and mixing == 'dynamic':
            raise ValueError("MTKDRLWeighting: mixing='dynamic' is trained by the official "
                             "update only; use mixing='static' or 'none' with update='ppo'")
        if learning.get('interval', 1000) < 1:
            raise ValueError(f"MTKDRLWeighting: interval must be >= 1, got "
                             f"{learning['interval']}")
        self.state_kind, self.mixing, self.divergence, self.gate = state, mixing, divergence, gate
        self.normalise = normalise
        # only what the state, the heuristics and the reward read is computed by the distiller
        state_signals = dict(
            official={'feature_cos', 'teacher_loss', 'embeddings', 'logit_summaries'},
            compact={'teacher_loss', 'teacher_confidence', 'teacher_entropy'},
            constant=set())[state]
        if mixing != 'none':  # the heuristics read the teachers' own losses and feature_cos
            state_signals = state_signals | {'teacher_loss', 'feature_cos'}
        if gate is not None:
            state_signals = state_signals | {GATE_SIGNALS[gate]}
        self.required_signals = frozenset(state_signals)
        #: what the reward reads beyond the state: computed on the steps the learner stores
        self.reward_signals = frozenset(_reward_signals(reward_cls, reward))
        if isinstance(reward, dict):
            self.agreement_region = reward.get('region', 'all')
            self.agreement_batched = reward.get('batched', True)
            self.agreement_direction = reward.get('direction', 'task_loss')
            self.agreement_measure = reward.get('measure', 'cosine')
            self.agreement_veto = reward.get('veto')
        if getattr(reward_cls, 'per_teacher', False) != getattr(update_cls, 'per_teacher', False):
            raise ValueError(f'MTKDRLWeighting: reward={reward!r} and update={update!r} do not '
                             'fit: a per-teacher reward (one credit per sample and teacher) '
                             "needs a per-teacher update rule (update='credit') and back")
        if normalize_state is None:
            normalize_state = state == 'compact'
        self.hidden, self.normalize_state, self.init_std = hidden, normalize_state, init_std
        self.warmup = WarmupSchedule(warmup_epochs, warmup_iters)
        #: the learner's options, read by :class:`mmtkd.engine.MTKDRLAgentHook`
        self.learning_cfg: Dict[str, Any] = dict(learning, update=update, reward=reward)
        self.policy = None  # lent by the learner (see attach_policy)
        self._spec: Optional[Dict[str, Any]] = None
        self._transition: Optional[Dict[str, Tensor]] = None
        self._step: Optional['StepRecord'] = None

    @property
    def warmup_epochs(self) -> int:
        """Warm-up in epochs (read by the hook's schedule checks)."""
        return self.warmup.epochs

    @property
    def warmup_iters(self) -> Optional[int]:
        """Warm-up in iterations, if given (read by the hook's schedule checks)."""
        return self.warmup.iters

    # ------------------------------------------------------------------ set-up
    def setup(self, num_teachers: int, embed_dims: Sequence[int], num_classes: int,
              beta: float) -> None:
        """Learn the shape of the teacher pool (called by the distiller).

        Args:
            num_teachers (int): Number of teachers M.
            embed_dims (Sequence[int]): Embedding size of each teacher.
            num_classes (int): Size of each teacher's logit summary.
            beta (float): The distiller's feature-KD weight (unused: the distiller computes
                the per-sample losses the rewards read).
        """
        self._spec = dict(
            state_dim=state_dim(self.state_kind, embed_dims, num_classes),
            num_teachers=num_teachers,
            mixing=self.mixing,
            hidden=self.hidden,
            normalize_state=self.normalize_state,
            init_std=self.init_std)

    def policy_spec(self) -> Dict[str, Any]:
        """The agent network the policy must be (state size, teachers, mixing, ...).

        Returns:
            dict: Keyword arguments of :class:`MTKDRLAgent` except ``stochastic``.
        """
        if self._spec is None:
            raise RuntimeError('MTKDRLWeighting: setup() has not been called (the distiller '
                               'calls it once the teacher pool is built)')
        return dict(self._spec)

    def attach_policy(self, policy) -> None:
        """Act with ``policy`` from now on (called by the learner that owns it).

        Args:
            policy: An object with ``act(states, heuristics, sample) -> dict`` and
                ``stochastic``, e.g. :class:`mmtkd.engine.AgentPolicy`. It is not a module of
                this one: the student's optimiser, DDP and ``state_dict()`` never see it.
        """
        self.policy = policy

    # ------------------------------------------------------------------ acting
    def learning_signals(self) -> FrozenSet[str]:
        """The reward's signals when the learner will store this step (one in the reward's
        ``every``), else none: the step pays for them only when they are learned from."""
        stores = self.policy is not None and self.policy.stores_next_step()
        return self.reward_signals if self.training and stores else frozenset()

    def forward(self, signals: TeacherSignals) -> TeacherWeights:
        if self.policy is None:
            raise RuntimeError(f'{type(self).__name__} is trained by a hook: add '
                               "custom_hooks=[dict(type='mmtkd.MTKDRLAgentHook')] to the config")
        states = STATE_BUILDERS[self.state_kind](signals)
        if self.mixing == 'none':  # not mixed in: no heuristic is computed
            batch, num_teachers = signals.logit_kd.shape
            heuristics = signals.logit_kd.new_zeros(batch, 2, 2, num_teachers)
        else:
            heuristics = heuristic_weights(signals, self.divergence)
        acted = self.policy.act(
            states,
            heuristics,
            sample=self.training,
            same_for_every_sample=self.state_kind == 'constant' and self.mixing == 'none')
        in_warmup = self.training and self.warmup.active
        self._transition = dict(
            states=states,
            heuristics=heuristics,
            in_warmup=in_warmup,
            **{
                k: v
                for k, v in acted.items() if k != 'weights'
            })
        if in_warmup:  # every weight 1: the policy's are not scaled for nothing
            ones = torch.ones_like(acted['weights'][:, 0])
            return TeacherWeights(ones, ones)
        weights = normalised_weights(acted['weights'], self.normalise)
        if self.gate is not None:
            weights = gated(weights, self.gate, signals)
        return TeacherWeights(weights[:, 0], weights[:, 1])

    # ------------------------------------------------------------------ recording
    def record(self, step: 'StepRecord') -> None:
        """Keep the training step (with this weighting's transition) for the learner.

        Args:
            step (StepRecord): The distiller's per-sample losses, weights and inputs.
        """
        transition, self._transition = self._transition, None
        if transition is not None:
            step.transition = transition
            self._step = step

    def pop_step(self) -> Optional['StepRecord']:
        """The last recorded step, once (None if there is none).

        Returns:
            StepRecord | None: The step.
        """
        step, self._step = self._step, None
        return step
