"""The multi-teacher distiller: one student, N frozen teachers, a teacher-weighting strategy."""
import contextlib
import operator
import warnings
from collections import OrderedDict
from typing import Any, Dict, FrozenSet, List, NamedTuple, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from mmengine import dist
from mmengine.model import BaseModel
from torch import Tensor

from mmtkd.registry import MODELS, TASK_ADAPTERS
from mmtkd.utils import frozen_norm_stats
from mmtkd.utils.frozen_teacher_log_filter import silence_frozen_teacher_params
from mmtkd.utils.model_builder import (build_model, freeze, load_model_config,
                                       load_teacher_checkpoint, with_cfg_options)
from ..tasks import BaseTaskAdapter, DistillOutputs
from ..weighting import BaseWeighting, TeacherSignals, TeacherWeights
from .feature_summaries import cosines, mean_over_levels, pooled, pooled_each
from .finite_check import raise_if_not_finite
from .frozen_teachers import FrozenTeachersMixin
from .step_record import StepRecord, weighted_kd
from .task_agreement import TaskLossGradients, feature_agreement, task_agreement


class AgreementPlan(NamedTuple):
    """One agreement setting resolved on a step (:meth:`MultiTeacherDistiller._agreement_plan`):
    its ``key`` (settings with equal keys give equal agreements), the ``support`` and ``mask``
    of a regional agreement, and the class ``margin``'s direction (None: the task loss's
    gradient)."""
    key: Tuple[str, bool]
    support: Optional[Any]
    mask: Optional[Tensor]
    margin: Optional[Tensor]


#: what a teacher entry of ``teachers`` may hold
TEACHER_KEYS = frozenset({'config', 'checkpoint', 'cfg_options'})
#: ``teacher_autocast`` settings and the dtype each runs the teacher forwards in
AUTOCAST_DTYPES = {'bf16': torch.bfloat16, 'fp16': torch.float16}
#: ``logit_kd_loss`` default: the task adapter's own logit KD loss
TASK_DEFAULT = 'task_default'
#: weighting signals read from the teachers' predictions: they need the teachers' heads
HEAD_SIGNALS = frozenset(
    {'teacher_loss', 'teacher_confidence', 'teacher_entropy', 'logit_summaries'})


def _select_task(student: nn.Module, task: Union[str, dict, None]) -> BaseTaskAdapter:
    """Build the named task adapter, or the first registered one that supports ``student``."""
    TASK_ADAPTERS.import_from_location()
    if task is not None:
        cfg = dict(type=task) if isinstance(task, str) else dict(task)
        if cfg['type'] not in TASK_ADAPTERS.module_dict:
            raise KeyError(f"task={cfg['type']!r} is not a registered task adapter; available: "
                           f'{sorted(TASK_ADAPTERS.module_dict)}')
        adapter = TASK_ADAPTERS.build(cfg)
        if not adapter.supports(student):
            raise TypeError(f'task {cfg["type"]} does not support a student of type '
                            f'{type(student).__name__}')
        return adapter
    for adapter in TASK_ADAPTERS.module_dict.values():
        if adapter.supports(student):
            return adapter()
    reasons = '; '.join(a.unsupported_reason(student) for a in TASK_ADAPTERS.module_dict.values())
    raise TypeError(f'student of type {type(student).__name__} is not supported by any task '
                    f'adapter (available: {sorted(TASK_ADAPTERS.module_dict)}): {reasons}')


@MODELS.register_module()
class MultiTeacherDistiller(FrozenTeachersMixin, BaseModel):
    """Distil one student from several frozen teachers with per-sample teacher weights.

    The student loss is ``L_task + alpha * sum_m mean_b(wl[b,m] * KL_m[b])
    + beta * sum_m mean_b(wf[b,m] * FEAT_m[b])`` where the (B, M) weights come from
    ``weighting``. ``predict`` and ``tensor`` modes are the student's, so validation and testing
    evaluate the student with its own metrics.

    Teachers are built from their configs, loaded from their checkpoints, frozen, kept in eval
    mode even after ``train()``, run under ``torch.no_grad()`` and left out of ``state_dict()``
    unless ``save_teachers=True`` (their checkpoint paths in the config are the source of truth).

    Args:
        student (dict): Any supported model config (mmpretrain ImageClassifier, ...). A bare
            type is built in the scope that defines it; ``_scope_`` may name it.
        teachers (dict): ``name -> dict(config=..., checkpoint=..., cfg_options=None)``.
            ``config`` is a config file, a ``pkg::`` path, a full config dict or a model dict;
            ``checkpoint`` a path or URL (``None`` explicitly means random weights, for
            benchmarks only, with a warning); ``cfg_options`` changes the teacher's model
            config as ``--cfg-options`` changes a config, keys relative to the model (e.g.
            ``{'bbox_head.num_classes': 10}``; nested dicts work too).
        weighting (dict): A weighting strategy config. Defaults to AVER.
        logit_kd_loss (dict | str, optional): Per-sample logit KD loss. ``'task_default'``
            (default) is the task's own (classification: softmax KL at T=4; detection: sigmoid
            KL at T=1; segmentation: pixel-wise softmax KL at T=1); None disables logit KD, and
            the teachers then run without their heads (backbone and neck only) unless the
            weighting reads their predictions (teacher losses, entropies, logit summaries).
        feature_kd_loss (dict, optional): Per-sample feature KD loss; None disables feature KD
            (no connectors, no feature terms).
        alpha (float): Weight of logit KD. Defaults to 1.0 (official).
        beta (float): Weight of feature KD. Defaults to 5.0 (official).
        connector (dict): Student->teacher feature adapter, built per teacher and level with
            ``in_channels`` / ``out_channels`` filled in. Defaults to 1x1 conv + BN + ReLU.
        adapt_equal_channels (bool): Use ``connector`` also where channels already match
            (official); if False such levels are only resized. Defaults to True.
        task (str | dict, optional): A task adapter name or config (e.g.
            ``dict(type='DetectionTask', foreground_threshold=0.05)``); picked from the
            student's type if None.
        probe_input_shape (tuple): (C, H, W) of the dummy input used once at build time to read
            the feature channels of student and teachers. Defaults to (3, 64, 64).
        save_teachers (bool): Keep teacher weights in checkpoints. Defaults to False.
        teacher_autocast (str, optional): ``'bf16'`` or ``'fp16'`` runs the teacher forwards
            under ``torch.autocast`` (their outputs are cast back to fp32 before any loss);
            None (default) keeps them in full precision.
        check_finite (bool): Stop at the first step where a teacher's output, a KD term, a
            teacher-weighting signal or weight is inf / NaN, naming the teacher and the term
            (one host synchronisation per step on GPU). Defaults to True.
        data_preprocessor (dict, optional): Given to the student when its config has none (the
            runner passes a config's top-level ``data_preprocessor`` here).
        init_cfg (dict, optional): Initialisation config of the distiller's own modules.
    """

    def __init__(self,
                 student: dict,
                 teachers: Dict[str, dict],
                 weighting: dict = dict(type='mmtkd.AverageWeighting'),
                 logit_kd_loss: Union[dict, str, None] = TASK_DEFAULT,
                 feature_kd_loss: Optional[dict] = dict(type='mmtkd.FeatureMSELoss'),
                 alpha: float = 1.0,
                 beta: float = 5.0,
                 connector: dict = dict(type='mmtkd.FeatureAdapter'),
                 adapt_equal_channels: bool = True,
                 task: Union[str, dict, None] = None,
                 probe_input_shape: Tuple[int, int, int] = (3, 64, 64),
                 save_teachers: bool = False,
                 teacher_autocast: Optional[str] = None,
                 check_finite: bool = True,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if not isinstance(teachers, dict) or not teachers:
            raise ValueError('MultiTeacherDistiller: `teachers` must be a non-empty dict '
                             'name -> dict(config=..., checkpoint=...)')
        for name, value in (('alpha', alpha), ('beta', beta)):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f'MultiTeacherDistiller: {name} must be a number, got {value!r} '
                                f'({type(value).__name__}); write {name}=1.0, not a string')
        if teacher_autocast is not None and teacher_autocast not in AUTOCAST_DTYPES:
            raise ValueError(f"teacher_autocast must be None, 'bf16' or 'fp16', got "
                             f'{teacher_autocast!r}')
        student_cfg, student_scope = load_model_config(student, 'student')
        if data_preprocessor is not None:
            student_cfg.setdefault('data_preprocessor', data_preprocessor)
        self.student = build_model(student_cfg, student_scope, owner='student')
        # The student's data preprocessor serves the whole distiller (teachers share its input).
        self.data_preprocessor = self.student.data_preprocessor
        self.task = _select_task(self.student, task)
        self.task.bind(self.student)
        #: teachers that teach feature KD only: ``{name: why}``
        self.feature_only_teachers: Dict[str, str] = {}
        self.teachers = nn.ModuleDict({
            name: self._build_teacher(name, spec)
            for name, spec in teachers.items()
        })
        # frozen by design: no "is skipped since its requires_grad=False" line per parameter
        # from the optimizer constructor of a paramwise_cfg recipe
        silence_frozen_teacher_params()
        self.alpha, self.beta = alpha, beta
        self.logit_kd_loss = self._build_logit_kd_loss(logit_kd_loss)
        self.feature_kd_loss = MODELS.build(feature_kd_loss) if feature_kd_loss else None
        if self.logit_kd_loss is None and self.feature_kd_loss is None:
            raise ValueError('MultiTeacherDistiller: logit_kd_loss and feature_kd_loss are both '
                             'None, so there is nothing to distil; keep at least one (train '
                             'the student alone with its own config instead)')
        student_channels, teacher_channels = self._probe_channels(probe_input_shape)
        self.connectors = self._build_connectors(connector, adapt_equal_channels, student_channels,
                                                 teacher_channels)
        self.weighting: BaseWeighting = self._build_weighting(weighting)
        #: size of each teacher's pooled embedding (what the weighting's state is built from)
        self.teacher_embed_dims = [sum(c) for c in teacher_channels]
        self.weighting.setup(
            num_teachers=len(self.teachers),
            embed_dims=self.teacher_embed_dims,
            num_classes=self.task.num_classes(self.student),
            beta=beta)
        self._check_weighting_has_its_signals()
        #: whether the teachers' heads run: for logit KD, or for signals read from predictions
        self.teacher_heads = (
            self.logit_kd_loss is not None or bool(self.weighting.required_signals & HEAD_SIGNALS))
        self.save_teachers = save_teachers
        self.teacher_autocast = teacher_autocast
        self.check_finite = check_finite
        self._keep_teachers_frozen()

    # ------------------------------------------------------------------ building
    def _build_teacher(self, name: str, spec: dict) -> nn.Module:
        owner = f"teacher '{name}'"
        if 'loss' in name:
            raise ValueError(f"{owner}: teacher names must not contain 'loss' (logged keys "
                             "containing 'loss' are back-propagated by MMEngine)")
        if not isinstance(spec, dict) or 'config' not in spec:
            raise KeyError(f"{owner}: expected dict(config=..., checkpoint=...), got {spec!r}")
        if 'checkpoint' not in spec:
            raise KeyError(f"{owner}: missing key 'checkpoint' (a path or URL; write "
                           'checkpoint=None to use random weights on purpose)')
        unknown = sorted(set(spec) - TEACHER_KEYS)
        if unknown:
            raise KeyError(f'{owner}: unknown keys {unknown} (a teacher takes '
                           f'{sorted(TEACHER_KEYS)})')
        model_cfg, scope = load_model_config(spec['config'], owner)
        if spec.get('cfg_options'):
            model_cfg = with_cfg_options(model_cfg, spec['cfg_options'])
        teacher = build_model(model_cfg, scope, owner=owner)
        if not self.task.supports(teacher):
            if not self.task.teaches_features_only(teacher):
                raise TypeError(f'{owner}: a {type(teacher).__name__} cannot teach a '
                                f'{self.task.task_name} student of type '
                                f'{type(self.student).__name__}: '
                                f'{self.task.unsupported_reason(teacher)}')
            return self._feature_only_teacher(
                name, teacher, spec, f'a {type(teacher).__name__} is of another family than '
                f'the {type(self.student).__name__} student '
                f'({self.task.unsupported_reason(teacher)})')
        unaligned = self.task.unaligned_predictions_reason(self.student, teacher)
        if unaligned:
            return self._feature_only_teacher(name, teacher, spec, unaligned)
        student_classes = self.task.num_classes(self.student)
        teacher_classes = self.task.num_classes(teacher)
        if teacher_classes != student_classes:
            raise ValueError(f'{owner}: predicts {teacher_classes} classes, the student '
                             f'{student_classes}; key num_classes must match')
        self.task.check_compatible(self.student, teacher, owner)
        return self._load(teacher, spec, owner)

    def _feature_only_teacher(self, name: str, teacher: nn.Module, spec: dict,
                              why: str) -> nn.Module:
        """Load a teacher whose predictions the student cannot learn from, with one warning:
        it teaches feature KD only (no logit KD to it, no signals from its predictions)."""
        owner = f"teacher '{name}'"
        warnings.warn(f'{owner}: {why}; it teaches feature KD only: no logit KD to it, and no '
                      'signals from its predictions')
        self.feature_only_teachers[name] = why
        return self._load(teacher, spec, owner)

    @staticmethod
    def _load(teacher: nn.Module, spec: dict, owner: str) -> nn.Module:
        """Load a built teacher's checkpoint (if any) and freeze it."""
        if spec['checkpoint'] is None:
            warnings.warn(f'{owner}: checkpoint=None, the teacher has random weights')
            # its own initialisation, as a runner would give it (some parameters, e.g. the
            # level embeddings of Deformable DETR, are allocated uninitialised)
            teacher.init_weights()
        else:
            load_teacher_checkpoint(teacher, spec['checkpoint'], owner)
        return freeze(teacher)

    def _build_logit_kd_loss(self, cfg: Union[dict, str, None]) -> Optional[nn.Module]:
        if cfg is None:
            return None
        if isinstance(cfg, str):
            if cfg != TASK_DEFAULT:
                raise ValueError(f'logit_kd_loss must be a loss config, None (no logit KD) or '
                                 f'{TASK_DEFAULT!r}, got {cfg!r}')
            cfg = self.task.default_logit_kd_loss
        return MODELS.build(cfg)

    def _check_weighting_has_its_signals(self) -> None:
        """A weighting that learns from the logit-KD gradients needs logit KD, one that learns
        from the feature-KD gradients feature KD, and one that reads the teachers' predictions
        needs teachers whose predictions the task can read."""
        weighting = type(self.weighting).__name__
        if self.logit_kd_loss is None and 'task_agreement' in self.weighting.reward_signals:
            raise ValueError(f'weighting {weighting} learns from '
                             'task_agreement (the agreement of each teacher\'s logit-KD '
                             'gradient with the task gradient), but logit_kd_loss=None '
                             'disables logit KD; configure a logit KD loss or another reward')
        if self.feature_kd_loss is None and 'feature_agreement' in self.weighting.reward_signals:
            raise ValueError(f'weighting {weighting} credits the feature-KD weights by '
                             'feature_agreement (the agreement of each teacher\'s feature-KD '
                             'gradient with the task gradient), but feature_kd_loss=None '
                             'disables feature KD; configure a feature KD loss or drop the '
                             "reward's features=True")
        if not self.feature_only_teachers:
            return
        names = ', '.join(f"'{n}'" for n in sorted(self.feature_only_teachers))
        if self.feature_kd_loss is None:
            raise ValueError(f'teacher(s) {names} teach feature KD only, '
                             'but feature_kd_loss=None; configure a feature KD loss or remove '
                             'them')
        needs = sorted((self.weighting.required_signals | self.weighting.reward_signals)
                       & (HEAD_SIGNALS | {'task_agreement'}))
        if needs:
            raise ValueError(f'weighting {weighting} reads {needs} of every teacher, which '
                             f'teacher(s) {names} cannot give; use a '
                             "weighting that does not (AverageWeighting, or MTKDRLWeighting with "
                             "state='constant', mixing='none' and the improvement reward) or a "
                             'teacher whose predictions align with the student\'s')

    def _build_weighting(self, weighting: dict) -> BaseWeighting:
        try:
            module = MODELS.build(weighting)
        except KeyError as err:
            raise KeyError(f'weighting: unknown type {weighting.get("type")!r} ({err})') from err
        if not isinstance(module, BaseWeighting):
            raise TypeError(f'weighting: {type(module).__name__} is not a BaseWeighting')
        return module

    @torch.no_grad()
    def _feature_channels(self, model: nn.Module, probe: Tensor) -> List[int]:
        was_training = model.training
        model.eval()
        channels = [f.shape[1] for f in self.task.extract_features(model, probe)]
        model.train(was_training)
        return channels

    def _probe_channels(
            self, probe_input_shape: Tuple[int, int, int]) -> Tuple[List[int], List[List[int]]]:
        """Feature channels per level of the student and of each teacher (one dummy forward)."""
        probe = torch.zeros(1, *probe_input_shape)
        student_channels = self._feature_channels(self.student, probe)
        teacher_channels = []
        for name, teacher in self.teachers.items():
            channels = self._feature_channels(teacher, probe)
            if len(channels) != len(student_channels):
                why = ''
                if name in self.feature_only_teachers:  # nothing else it could teach
                    why = f' (it could teach features only: {self.feature_only_teachers[name]})'
                raise ValueError(f"teacher '{name}': {len(channels)} feature levels, the "
                                 f'student has {len(student_channels)}; no adapter can map '
                                 f'them{why}')
            teacher_channels.append(channels)
        return student_channels, teacher_channels

    def _build_connectors(self, connector: dict, adapt_equal_channels: bool,
                          student_channels: List[int],
                          teacher_channels: List[List[int]]) -> nn.ModuleDict:
        connectors = nn.ModuleDict()
        if self.feature_kd_loss is None:
            return connectors
        for name, channels in zip(self.teachers, teacher_channels):
            levels = nn.ModuleList()
            for c_s, c_t in zip(student_channels, channels):
                cfg = dict(connector) if (adapt_equal_channels or c_s != c_t) else dict(
                    type='mmtkd.ResizeOnlyAdapter')
                levels.append(MODELS.build(dict(cfg, in_channels=c_s, out_channels=c_t)))
            connectors[name] = levels
        return connectors

    # ------------------------------------------------------------------ forward
    def __getattr__(self, name: str) -> Any:
        """Attributes the distiller lacks are the student's: stock hooks that reach into
        ``runner.model`` (``YOLOXModeSwitchHook`` sets ``model.bbox_head.use_l1``) act on the
        student, as they would without distillation."""
        try:
            return super().__getattr__(name)
        except AttributeError:
            student = self.__dict__.get('_modules', {}).get('student')
            if student is None or name.startswith('_'):
                raise
            try:
                return getattr(student, name)
            except AttributeError:
                raise AttributeError(f"'{type(self).__name__}' object has no attribute "
                                     f"'{name}', nor has its student (a "
                                     f'{type(student).__name__})') from None

    def forward(self,
                inputs: Tensor,
                data_samples: Optional[list] = None,
                mode: str = 'tensor') -> Union[Dict[str, Tensor], list, Tensor]:
        """MMEngine's forward contract: ``loss`` distils, ``predict``/``tensor`` are the student's.

        Args:
            inputs (Tensor): Pre-processed batch.
            data_samples (list, optional): The batch's data samples.
            mode (str): ``'loss'``, ``'predict'`` or ``'tensor'``.

        Returns:
            dict | list | Tensor: Losses and logged scalars, predictions, or raw outputs.
        """
        if mode == 'loss':
            return self.loss(inputs, data_samples)
        return self.student(inputs, data_samples, mode=mode)

    def loss(self, inputs: Tensor, data_samples: Sequence) -> Dict[str, Tensor]:
        """Student task losses, weighted multi-teacher KD losses, and logged teacher weights.

        Args:
            inputs (Tensor): Pre-processed batch.
            data_samples (Sequence): The batch's data samples with ground truth.

        Returns:
            dict: Keys containing ``loss`` are back-propagated; ``weight_logit/<teacher>`` and
            ``weight_feat/<teacher>`` (batch means) are only logged.
        """
        # bad labels are reported before any teacher or student loss sees them
        self.task.check_batch(self.student, data_samples)
        teacher_outs = self.teacher_forwards(inputs, data_samples)
        # the teachers' own losses before the student's forward: their intermediates are freed
        # before the student's activations exist, so they never raise the step's peak memory
        teacher_losses, shared = self._teacher_losses(teacher_outs, data_samples)
        # likewise the teachers' entropies, where their predictions are complete already
        entropy_first = not self._completes_teacher_outputs()
        teacher_entropy = self._teacher_entropy(teacher_outs) if entropy_first else None
        losses, student_out = self.task.student_forward(self.student, inputs, data_samples, shared)
        if self.teacher_heads:
            with torch.no_grad(), self._teacher_precision(inputs):
                with_heads = [(t, out) for t, out in zip(self.teachers.values(), teacher_outs)
                              if out.logits is not None]
                self.task.complete_teacher_outputs([t for t, _ in with_heads],
                                                   [out for _, out in with_heads], student_out)
        logit_kd = self._logit_kd(student_out, teacher_outs, data_samples)
        # pooled teacher features: used by the feature gap (cos) and by the agent's state
        embeddings = None
        if self.weighting.required_signals & {'embeddings', 'feature_cos'}:
            embeddings = pooled_each([t.features for t in teacher_outs])
        feature_kd, feature_cos = self._feature_kd(student_out, teacher_outs, embeddings)
        if not entropy_first:
            teacher_entropy = self._teacher_entropy(teacher_outs)
        # what this step's reward reads: asked for only on the steps the learner stores
        learning = self.weighting.learning_signals()
        signals = self._signals(student_out, teacher_outs, teacher_losses, teacher_entropy,
                                logit_kd, feature_kd, feature_cos, embeddings, data_samples,
                                learning)
        self._gradient_agreements(signals, learning, losses, student_out, teacher_outs, logit_kd,
                                  feature_kd)
        weights: TeacherWeights = self.weighting(signals)
        if self.check_finite:
            raise_if_not_finite(signals, weights, list(self.teachers))
        # the loss formula, once: each term's loss and its per-sample shares, which the agent's
        # rewards read through the step record
        shares = []
        if self.logit_kd_loss is not None:
            losses['loss_logit_kd'], logit_share = weighted_kd(weights.logit, logit_kd, self.alpha)
            shares.append(logit_share)
        if self.feature_kd_loss is not None:
            losses['loss_feat_kd'], feature_share = weighted_kd(weights.feature, feature_kd,
                                                                self.beta)
            shares.append(feature_share)
        if self.training:
            self.weighting.record(
                StepRecord(signals, weights, shares, signals.student_loss, inputs, data_samples))
        losses.update(self._logged_weights(weights))
        return losses

    def _gradient_agreements(self, signals: TeacherSignals, learning: FrozenSet[str], losses: dict,
                             student_out, teacher_outs: Sequence, logit_kd: Tensor,
                             feature_kd: Tensor) -> None:
        """Fill in the gradient agreements this step's reward reads (``task_agreement`` and its
        veto, ``feature_agreement``; see :mod:`.task_agreement`), with the task loss's gradient
        taken once for all of them.

        Args:
            signals (TeacherSignals): This step's signals, completed in place.
            learning (frozenset): The signals the learner asks for on this step.
            losses (dict): The student's task losses.
            student_out (DistillOutputs): The student's outputs.
            teacher_outs (Sequence[DistillOutputs]): The teachers' outputs.
            logit_kd (Tensor): (B, M) per-sample logit KD, with gradients.
            feature_kd (Tensor): (B, M) per-sample feature KD, with gradients.
        """
        plans = []
        if 'task_agreement' in learning:
            weighting = self.weighting
            settings = [(weighting.agreement_region, weighting.agreement_direction)]
            if weighting.agreement_veto is not None:
                settings.append((weighting.agreement_veto.get('region', 'all'),
                                 weighting.agreement_veto.get('direction', 'task_loss')))
            plans = [self._agreement_plan(student_out, *setting) for setting in settings]
        # the task loss's gradient where the agreements read it (the scores, unless every
        # agreement reads a class margin instead; the features): one backward pass, if any
        gradient_at = {}
        if any(plan.margin is None for plan in plans):
            gradient_at['scores'] = self.task.agreement_scores(student_out)
        if 'feature_agreement' in learning:
            gradient_at['features'] = student_out.features
        task_grads = TaskLossGradients(losses, gradient_at)
        if plans:
            agreements = self._task_agreements(plans, task_grads, student_out, teacher_outs,
                                               logit_kd)
            signals.task_agreement = agreements[0]
            if len(agreements) > 1:
                signals.veto_agreement = agreements[1]
        if 'feature_agreement' in learning:
            signals.feature_agreement = feature_agreement(None, feature_kd, student_out.features,
                                                          self.weighting.agreement_batched,
                                                          task_grads('features'))

    def _agreement_plan(self, student_out, region: str, direction: str) -> AgreementPlan:
        """Where and against what one agreement setting (``TaskAgreementReward``'s ``region``
        and ``direction``) compares the teachers' logit-KD gradients on this task (a classifier
        has no foreground region nor class margin of its own: every setting is its task loss's
        gradient everywhere)."""
        # the scores a regional agreement can read (a detector's foreground anchors): the
        # masks, directions and gradients are taken there only (None: everywhere)
        support = None if region == 'all' else self.task.agreement_support(student_out)
        mask = None if region == 'all' else self.task.agreement_mask(student_out, region, support)
        # None where the task defines no margin of its own: its loss gradient is used
        margin = None
        if direction == 'class_margin':
            margin = self.task.agreement_direction(student_out, support)
        key = (region if mask is not None else 'all', margin is not None)
        return AgreementPlan(key, support, mask, margin)

    def _task_agreements(self, plans: Sequence[AgreementPlan], task_grads: TaskLossGradients,
                         student_out, teacher_outs: Sequence, logit_kd: Tensor) -> List[Tensor]:
        """The agreement of each teacher's logit-KD gradient with the student's task
        (:func:`task_agreement`) for each plan, computed once per plan that differs.

        Returns:
            list[Tensor]: (B, M) per plan, in order.
        """
        computed: Dict[Tuple[str, bool], Tensor] = {}
        for plan in plans:
            if plan.key in computed:
                continue
            positions = None if plan.support is None else plan.support.positions
            computed[plan.key] = task_agreement(
                None,
                logit_kd,
                self.task.agreement_scores(student_out),
                plan.mask,
                batched=self.weighting.agreement_batched,
                direction=task_grads('scores', positions) if plan.margin is None else plan.margin,
                kd_grads=self.task.logit_kd_gradients(self.logit_kd_loss, student_out, teacher_outs,
                                                      plan.support),
                support=positions,
                measure=self.weighting.agreement_measure)
        return [computed[plan.key] for plan in plans]

    @torch.no_grad()
    def student_per_sample_loss(self, inputs: Tensor, data_samples: Sequence) -> Tensor:
        """The student's own per-sample task loss on pre-processed ``inputs``, without
        gradients and without touching its normalisation statistics (for rewards measured after
        the optimiser step, on the step's own inputs).

        Args:
            inputs (Tensor): A pre-processed batch (e.g. a step record's ``inputs``).
            data_samples (Sequence): Its data samples.

        Returns:
            Tensor: (B,) losses.
        """
        with frozen_norm_stats(self.student):
            _, outputs = self.task.student_forward(self.student, inputs, data_samples)
        return self.task.per_sample_loss(self.student, outputs, data_samples)

    @torch.no_grad()
    def teacher_forwards(self, inputs: Tensor, data_samples: Sequence) -> List[DistillOutputs]:
        """Every teacher's no-grad forward, under autocast if ``teacher_autocast`` is set.

        Args:
            inputs (Tensor): Pre-processed batch.
            data_samples (Sequence): The batch's data samples.

        Returns:
            list[DistillOutputs]: One per teacher, in ``teachers`` order, always in fp32;
            without ``logits`` (None) when the teachers' heads need not run.
        """
        with self._teacher_precision(inputs):
            outs = [
                self.teacher_forward(t, inputs, data_samples, name
                                     not in self.feature_only_teachers)
                for name, t in self.teachers.items()
            ]
        if self.teacher_autocast is None:
            return outs
        return [
            DistillOutputs(_to_fp32(o.logits), _to_fp32(o.features), _to_fp32(o.extras))
            for o in outs
        ]

    def _teacher_precision(self, inputs: Tensor):
        """``torch.autocast`` in ``teacher_autocast``'s dtype, or nothing in full precision."""
        if self.teacher_autocast is None:
            return contextlib.nullcontext()
        return torch.autocast(
            device_type=inputs.device.type, dtype=AUTOCAST_DTYPES[self.teacher_autocast])

    def teacher_forward(self,
                        teacher: nn.Module,
                        inputs: Tensor,
                        data_samples: Sequence,
                        of_students_family: bool = True) -> DistillOutputs:
        """One teacher's forward, as far as the configured KD and weighting need it: its
        features alone (the task's ``extract_features``) unless its head is needed.

        Args:
            teacher (nn.Module): A teacher.
            inputs (Tensor): Pre-processed batch.
            data_samples (Sequence): The batch's data samples.
            of_students_family (bool): False for a teacher of another family (features only).

        Returns:
            DistillOutputs: The teacher's outputs (``logits`` None without its head).
        """
        if self.teacher_heads and of_students_family:
            return self.task.teacher_forward(teacher, inputs, data_samples)
        return DistillOutputs(None, self.task.extract_features(teacher, inputs))

    def _logit_kd(self, student_out: DistillOutputs, teacher_outs: List[DistillOutputs],
                  data_samples: Sequence) -> Tensor:
        """Per-sample logit KD (B, M); zeros (no gradient) when logit KD is disabled, and in
        the columns of teachers of another family (features only)."""
        if self.logit_kd_loss is None:
            return student_out.features[0].new_zeros(student_out.features[0].shape[0],
                                                     len(teacher_outs))
        return self.task.logit_kds(self.logit_kd_loss, student_out, teacher_outs, data_samples)

    def _feature_kd(self, student_out: DistillOutputs, teacher_outs: List[DistillOutputs],
                    embeddings: Optional[List[Tensor]]) -> Tuple[Tensor, Optional[Tensor]]:
        """Per-sample feature KD (B, M) and, if the weighting reads it, the cosine similarity
        of the pooled adapted student features and the teachers' ``embeddings`` (B, M), else
        None. Both are zeros when feature KD is off."""
        batch = student_out.features[0].shape[0]
        wants_cos = 'feature_cos' in self.weighting.required_signals
        if self.feature_kd_loss is None:
            zeros = student_out.features[0].new_zeros(batch, len(teacher_outs))
            return zeros, (zeros if wants_cos else None)
        # per teacher: its levels' (B,) KD values; the pooled adapted student features
        per_level, student_embeddings = [], []
        # adapters that hand on the same tensors (resize-only ones at the student's size) share
        # one pooling: (adapted levels, their pooling) of each distinct adaptation so far
        poolings: List[Tuple[List[Tensor], Tensor]] = []
        for connectors, teacher in zip(self.connectors.values(), teacher_outs):
            adapted = [
                adapt(s, t.shape[-2:])
                for adapt, s, t in zip(connectors, student_out.features, teacher.features)
            ]
            per_level.append([
                self.feature_kd_loss(s, t, reduction_override='none')
                for s, t in zip(adapted, teacher.features)
            ])
            if wants_cos:
                shared = next(
                    (p for levels, p in poolings if all(map(operator.is_, levels, adapted))), None)
                if shared is None:
                    shared = pooled(adapted).detach()
                    poolings.append((adapted, shared))
                student_embeddings.append(shared)
        return mean_over_levels(per_level), (
            cosines(student_embeddings, embeddings) if wants_cos else None)

    def _teacher_losses(self, teacher_outs: List[DistillOutputs],
                        data_samples: Sequence) -> Tuple[Optional[Tensor], Any]:
        """Each teacher's own per-sample task loss (B, M), if the weighting needs it, and the
        work the adapter lends the student's forward (e.g. anchor targets), else None."""
        if not self.weighting.required_signals & {'teacher_loss', 'teacher_confidence'}:
            return None, None
        return self.task.per_sample_losses(list(self.teachers.values()), teacher_outs, data_samples)

    def _completes_teacher_outputs(self) -> bool:
        """Whether the task adds teacher predictions after the student's forward
        (:meth:`BaseTaskAdapter.complete_teacher_outputs` overridden, e.g. two-stage RoI
        scores)."""
        return (type(self.task).complete_teacher_outputs
                is not BaseTaskAdapter.complete_teacher_outputs)

    def _teacher_entropy(self, teacher_outs: List[DistillOutputs]) -> Optional[Tensor]:
        """Each teacher's per-sample prediction entropy (B, M), if the weighting reads it."""
        if 'teacher_entropy' not in self.weighting.required_signals:
            return None
        return torch.stack([self.task.entropy(t) for t in teacher_outs], 1)

    def _signals(self,
                 student_out: DistillOutputs,
                 teacher_outs: List[DistillOutputs],
                 teacher_losses: Optional[Tensor],
                 teacher_entropy: Optional[Tensor],
                 logit_kd: Tensor,
                 feature_kd: Tensor,
                 feature_cos: Optional[Tensor],
                 embeddings: Optional[List[Tensor]],
                 data_samples: Sequence,
                 learning: FrozenSet[str] = frozenset()) -> TeacherSignals:
        """Detached per-sample signals; optional ones only if the weighting asks for them (its
        ``required_signals``, and ``learning``: what the reward reads on a stored step)."""
        required = self.weighting.required_signals | learning
        task = self.task
        signals = TeacherSignals(logit_kd.detach(), feature_kd.detach(), feature_cos)
        if teacher_losses is not None:
            signals.teacher_loss = teacher_losses
            if 'teacher_confidence' in required:
                signals.teacher_confidence = (-teacher_losses).exp()
        if teacher_entropy is not None:
            signals.teacher_entropy = teacher_entropy
        if 'embeddings' in required:
            signals.embeddings = embeddings
        if 'logit_summaries' in required:
            signals.logit_summaries = task.logit_summaries(teacher_outs)
        if 'student_loss' in required:
            signals.student_loss = task.per_sample_loss(self.student, student_out, data_samples)
        return signals

    def _logged_weights(self, weights: TeacherWeights) -> Dict[str, Tensor]:
        """Per-teacher batch means, averaged over ranks under distributed training."""
        if weights.logit is weights.feature:  # one weight per teacher for both terms
            means = weights.logit.detach().mean(0).expand(2, -1)
        else:
            means = torch.stack([weights.logit.detach().mean(0), weights.feature.detach().mean(0)])
        if dist.get_world_size() > 1:
            means = means.contiguous()  # an expanded view cannot be reduced in place
            dist.all_reduce(means, op='mean')
        logged = OrderedDict()
        for kind, row in zip(('logit', 'feat'), means):
            for name, mean in zip(self.teachers, row):
                logged[f'weight_{kind}/{name}'] = mean
        return logged


def _to_fp32(value):
    """Cast floating tensors inside (nested) lists, tuples and dicts to float32."""
    if isinstance(value, Tensor):
        return value.float() if value.is_floating_point() else value
    if isinstance(value, (list, tuple)):
        return type(value)(_to_fp32(v) for v in value)
    if isinstance(value, dict):
        return {k: _to_fp32(v) for k, v in value.items()}
    return value
