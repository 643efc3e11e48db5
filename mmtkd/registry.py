"""Registries of mmtkd, children of MMEngine's root registries.

Every class a config can name is registered here under the scope ``mmtkd``. Because each
registry carries ``locations``, ``type='mmtkd.X'`` resolves from any config (an mmdet, mmseg or
mmpretrain one included) without ``custom_imports``: MMEngine imports ``mmtkd.registry`` when it
meets the scope and the registry imports the modules that register ``X``.
"""
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import Registry

#: Models: the distiller, KD losses, feature connectors and teacher-weighting strategies.
MODELS = Registry('model', parent=MMENGINE_MODELS, scope='mmtkd', locations=['mmtkd.models'])

#: Hooks: the MTKD-RL agent hook and the student-export hook.
HOOKS = Registry('hook', parent=MMENGINE_HOOKS, scope='mmtkd', locations=['mmtkd.engine'])

#: Task adapters: how to read logits / features / teacher performance from one model family.
TASK_ADAPTERS = Registry('task adapter', scope='mmtkd', locations=['mmtkd.models.tasks'])

#: Update rules of the MTKD-RL agent (how stored experience becomes a policy loss).
AGENT_UPDATES = Registry('agent update rule', scope='mmtkd', locations=['mmtkd.engine.agent'])

#: Rewards of the MTKD-RL agent (what a training step was worth, per sample).
AGENT_REWARDS = Registry('agent reward', scope='mmtkd', locations=['mmtkd.engine.agent'])
