"""Which phase of a training step dispatched an operator: where a method's extra kernels go.

:func:`current_phase` reads the Python call stack at the moment an operator is dispatched
(``host_ops.count_ops`` calls it from its dispatch mode) and names the step's phase it belongs
to:

* ``host``: the agent's learning (``AgentLearner.learn_on_host``), which runs on the CPU
  whatever the training device: no kernel and no synchronisation on a GPU;
* ``backward``: anything under ``Tensor.backward`` / ``torch.autograd.backward`` (autograd's
  engine runs CPU backward passes on the calling thread, Python ``autograd.Function`` backwards
  included);
* ``optimizer``: anything under a ``torch.optim`` optimiser's step;
* inside the distiller's ``loss``: the distiller, task-adapter or weighting method it called
  (``MultiTeacherDistiller._logit_kd``, ``DetectionTask.student_forward``,
  ``MTKDRLWeighting.forward``, ...), the distiller's step read phase by phase;
* elsewhere: the outermost OpenMMLab or mmtkd method running under the benchmark's step
  (``ImgDataPreprocessor.forward``, ``AgentLearner.take_step``); under a model's
  ``train_step``, the method it called (``BaseModel._run_forward``: for the floor rows'
  student, its stock forward and loss).
"""
import os.path as osp
import sys
from types import FrameType
from typing import List, Optional

#: packages whose methods name phases (the benchmark's own module and torch never do)
_PHASE_PACKAGES = tuple(osp.sep + name + osp.sep
                        for name in ('mmtkd', 'mmdet', 'mmseg', 'mmpretrain', 'mmengine'))
_BENCHMARK_DIR = osp.dirname(osp.abspath(__file__)) + osp.sep
_DISTILLER_LOSS = 'MultiTeacherDistiller.loss'
#: the phase of work that runs on the host whatever the training device
HOST_PHASE = 'host'
_HOST_WORK = ('AgentLearner.learn_on_host', )


def _qualname(frame: FrameType) -> str:
    code = frame.f_code
    return getattr(code, 'co_qualname', code.co_name)


def _is_phase_frame(frame: FrameType) -> bool:
    filename = frame.f_code.co_filename
    return any(p in filename for p in _PHASE_PACKAGES) and not filename.startswith(_BENCHMARK_DIR)


def _is_backward(frame: FrameType) -> bool:
    filename = frame.f_code.co_filename
    return frame.f_code.co_name == 'backward' and (
        filename.endswith(osp.join('torch', '_tensor.py'))
        or filename.endswith(osp.join('torch', 'autograd', '__init__.py')))


def _is_optimizer(frame: FrameType) -> bool:
    return osp.join('torch', 'optim') + osp.sep in frame.f_code.co_filename


def phase_of_stack(frames: List[FrameType]) -> str:
    """The phase of an operator dispatched with ``frames`` on the stack.

    Args:
        frames (list[FrameType]): The call stack, outermost first.

    Returns:
        str: The phase's name (module docstring); ``'other'`` when no frame names one.
    """
    if any(_is_phase_frame(f) and _qualname(f) in _HOST_WORK for f in frames):
        return HOST_PHASE
    if any(_is_backward(f) for f in frames):
        return 'backward'
    if any(_is_optimizer(f) for f in frames):
        return 'optimizer'
    named = [_qualname(f) for f in frames if _is_phase_frame(f)]
    if _DISTILLER_LOSS in named:
        inner = named[named.index(_DISTILLER_LOSS) + 1:]
        return inner[0] if inner else _DISTILLER_LOSS
    if not named:
        return 'other'
    if named[0].endswith('.train_step') and len(named) > 1:
        return named[1]
    return named[0]


def current_phase(skip: int = 1) -> str:
    """:func:`phase_of_stack` of the caller's stack.

    Args:
        skip (int): Innermost frames left out (the caller's own). Defaults to 1.

    Returns:
        str: The phase.
    """
    frames: List[FrameType] = []
    frame: Optional[FrameType] = sys._getframe(skip)
    while frame is not None:
        frames.append(frame)
        frame = frame.f_back
    return phase_of_stack(frames[::-1])
