"""How a distiller holds frozen teachers: inside the model, outside what it trains.

The teachers are modules of the distiller (``self.teachers``), so moving it (``to``,
``cuda``) moves them, but MMEngine and PyTorch machinery that trains, averages or
synchronises a model's parameters leaves them alone: the optimiser and ``EMAHook`` (through
``parameters()`` / ``buffers()``), DDP (ignored parameters and buffers), ``train()`` (they stay
in eval mode), ``copy.deepcopy`` (copies share them) and checkpoints (left out unless
``save_teachers``).
"""
import copy
import itertools
from typing import Any, Callable, Iterator, Tuple

import torch.nn as nn
from torch import Tensor
from torch.nn.parallel import DistributedDataParallel

#: prefix of the teachers' keys in the distiller's state dict
TEACHER_PREFIX = 'teachers.'


class FrozenTeachersMixin:
    """Keeps a model's ``teachers`` (an ``nn.ModuleDict`` of frozen modules) out of what
    trains it. For an ``nn.Module`` subclass that sets ``self.teachers`` and
    ``self.save_teachers`` and then calls :meth:`_keep_teachers_frozen`.
    """

    def _keep_teachers_frozen(self) -> None:
        """Register what keeps the teachers out of DDP and out of checkpoints; call once the
        teachers are built."""
        self._ignore_teachers_in_ddp()
        self._register_state_dict_hook(self._drop_teacher_keys)
        self._register_load_state_dict_pre_hook(self._keep_teacher_keys, with_module=True)

    def _ignore_teachers_in_ddp(self) -> None:
        """Keep teachers out of DDP entirely: no gradient buckets, no buffer broadcasts, no
        start-up parameter sync (every rank loads the same teacher checkpoints)."""
        names = [f'{TEACHER_PREFIX}{n}' for n, _ in self.teachers.named_parameters()]
        names += [f'{TEACHER_PREFIX}{n}' for n, _ in self.teachers.named_buffers()]
        DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(self, names)

    def train(self, mode: bool = True) -> nn.Module:
        """Set train mode on every module but the teachers, which always stay in eval mode.

        Args:
            mode (bool): Train mode (True) or eval mode. Defaults to True.

        Returns:
            nn.Module: ``self``.
        """
        super().train(mode)
        self.teachers.eval()
        return self

    def named_parameters(self,
                         prefix: str = '',
                         recurse: bool = True,
                         remove_duplicate: bool = True) -> Iterator[Tuple[str, nn.Parameter]]:
        """The parameters the model trains (a distiller's student, connectors and weighting),
        not the frozen teachers' (they stay reachable as ``self.teachers``).

        What iterates a model's parameters to train or average them then leaves the teachers
        alone: MMEngine's ``EMAHook`` with ``update_buffers=False`` (mmengine's default)
        averaged every teacher parameter each step, a no-op costing a kernel per tensor.
        Moving the distiller (``to``, ``cuda``, ``half``) and its ``state_dict`` go through its
        modules and still include the teachers.

        Args:
            prefix (str): Prefix of every name.
            recurse (bool): Include the submodules' parameters.
            remove_duplicate (bool): Yield a parameter shared by modules once.

        Returns:
            Iterator[tuple[str, nn.Parameter]]: Names and parameters.
        """
        return self._trained_members(lambda m: m._parameters.items(), prefix, recurse,
                                     remove_duplicate)

    def named_buffers(self,
                      prefix: str = '',
                      recurse: bool = True,
                      remove_duplicate: bool = True) -> Iterator[Tuple[str, Tensor]]:
        """The buffers of what the distiller trains, as :meth:`named_parameters` (the teachers'
        are left out).

        Args:
            prefix (str): Prefix of every name.
            recurse (bool): Include the submodules' buffers.
            remove_duplicate (bool): Yield a buffer shared by modules once.

        Returns:
            Iterator[tuple[str, Tensor]]: Names and buffers.
        """
        return self._trained_members(lambda m: m._buffers.items(), prefix, recurse,
                                     remove_duplicate)

    def _trained_members(self, members: Callable[[nn.Module], Any], prefix: str, recurse: bool,
                         remove_duplicate: bool) -> Iterator[Tuple[str, Tensor]]:
        """Tensors of every module but the teachers, named as ``nn.Module`` names them."""
        modules = [(prefix, self)]
        if recurse:
            for name, child in self._modules.items():
                if child is not None and name != 'teachers':
                    modules += child.named_modules(
                        prefix=f'{prefix}.{name}' if prefix else name,
                        remove_duplicate=remove_duplicate)
        seen = set()
        for module_prefix, module in modules:
            for name, tensor in members(module):
                if tensor is None or (remove_duplicate and tensor in seen):
                    continue
                seen.add(tensor)
                yield f'{module_prefix}.{name}' if module_prefix else name, tensor

    def __deepcopy__(self, memo: dict) -> nn.Module:
        """A copy that shares this distiller's teachers instead of duplicating them.

        The teachers are frozen and never change, so a copy of the distiller (what MMEngine's
        ``EMAHook`` averages, ``copy.deepcopy(runner.model)``) can use the same modules, and
        memory holds their weights once. The student, connectors and weighting are copied.

        Args:
            memo (dict): ``copy.deepcopy``'s memo of objects already copied.

        Returns:
            nn.Module: The copy.
        """
        for shared in itertools.chain(self.teachers.modules(), self.teachers.parameters(),
                                      self.teachers.buffers()):
            memo[id(shared)] = shared
        copied = type(self).__new__(type(self))
        memo[id(self)] = copied
        copied.__dict__.update({k: copy.deepcopy(v, memo) for k, v in self.__dict__.items()})
        return copied

    def _drop_teacher_keys(self, module, state_dict, prefix, local_metadata) -> None:
        """Leave the teachers out of a saved state dict unless ``save_teachers`` (their
        checkpoints in the config are the source of truth)."""
        if self.save_teachers:
            return
        for key in [k for k in state_dict if k.startswith(prefix + TEACHER_PREFIX)]:
            del state_dict[key]

    def _keep_teacher_keys(self, module, state_dict, prefix, *args) -> None:
        """A checkpoint without teachers keeps the teachers loaded from their own checkpoints."""
        own = f'{prefix}{TEACHER_PREFIX}'
        if any(k.startswith(own) for k in state_dict):
            return
        for key, value in self.teachers.state_dict(prefix=own).items():
            state_dict[key] = value
