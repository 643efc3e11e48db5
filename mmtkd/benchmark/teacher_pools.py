"""The teacher pools of the quality benchmark: the demo's trained teachers (``clean``) or with
some made bad, in one of two ways:

* ``permuted``: the teacher's class outputs are rolled (class ``c`` gets the score of class
  ``c - 1``): a confident teacher that is wrong on every sample, what a teacher trained with
  permuted labels is. Its features are left intact. Two permuted teachers agree with each other:
  a confident wrong majority.
* ``untrained``: the teacher is replaced by its own architecture with a fresh random
  initialisation, so its features *and* its class outputs carry no knowledge (the one-class
  tree-crown task has no classes to permute).

Control pools (:data:`CONTROL_POOLS`, run only when named) explain a result rather than test a
method; ``uniform`` zeroes a teacher's class-score layer (a uniform softmax, the features
intact). Every run records its teachers' fingerprints (:func:`teacher_fingerprints`): runs on
different teacher sets are not paired by seed.
"""
import hashlib
import os.path as osp
from typing import Callable, Dict, List, Optional, Sequence

import torch
from mmengine.config import Config
from torch import Tensor

from mmtkd.demo.tasks import DemoTask, cached_teacher
from mmtkd.testing import save_model_checkpoint, strip_pretrained
from mmtkd.utils import safe_torch_load, save_atomically


def edit_class_scores(src: str, dst: str, prefix: str, edit: Callable[[Tensor], Tensor]) -> str:
    """Write a copy of a teacher checkpoint with ``edit`` applied to its class-score layer's
    weight and bias (everything else, the features among it, untouched).

    Args:
        src (str): The teacher's checkpoint.
        dst (str): Where the edited copy goes.
        prefix (str): State-dict prefix of the class-score layer (its weight and bias).
        edit (Callable): Tensor -> tensor of the same shape (a new tensor).

    Returns:
        str: ``dst``.
    """
    checkpoint = safe_torch_load(src, map_location='cpu')
    state = checkpoint['state_dict']
    for name in (prefix + 'weight', prefix + 'bias'):
        state[name] = edit(state[name])
    save_atomically(checkpoint, dst)
    return dst


def permute_class_outputs(src: str,
                          dst: str,
                          prefix: str,
                          num_classes: int,
                          shift: int = 1,
                          classes: Optional[Sequence[int]] = None) -> str:
    """Write a copy of a teacher checkpoint whose class outputs are rolled by ``shift``.

    Args:
        src (str): The teacher's checkpoint.
        dst (str): Where the unreliable copy goes.
        prefix (str): State-dict prefix of the class-score layer (its weight and bias).
        num_classes (int): Classes per output group (RetinaNet stacks anchors x classes).
        shift (int): How far classes are rolled. Defaults to 1.
        classes (Sequence[int], optional): Roll only among these classes (the ``i``-th of them
            gets the score of the ``i - shift``-th), the others keep theirs. None (default):
            every class.

    Returns:
        str: ``dst``.
    """
    order = torch.arange(num_classes)
    chosen = order.clone() if classes is None else torch.tensor(list(classes))
    order[chosen] = chosen.roll(shift)

    def roll(tensor: Tensor) -> Tensor:
        grouped = tensor.reshape(tensor.shape[0] // num_classes, num_classes, *tensor.shape[1:])
        return grouped[:, order].reshape(tensor.shape).clone()

    return edit_class_scores(src, dst, prefix, roll)


def uniform_class_outputs(src: str, dst: str, prefix: str) -> str:
    """Write a copy of a teacher checkpoint whose class-score layer is zero: every sample gets
    the same logits, a uniform softmax (a label-smoothing target), the features intact.

    Args:
        src (str): The teacher's checkpoint.
        dst (str): Where the copy goes.
        prefix (str): State-dict prefix of the class-score layer (its weight and bias).

    Returns:
        str: ``dst``.
    """
    return edit_class_scores(src, dst, prefix, torch.zeros_like)


def untrained_teacher(task: DemoTask, teacher: str, dst: str, seed: int = 0) -> str:
    """Write a checkpoint of a teacher's architecture with its own seeded random initialisation.

    Args:
        task (DemoTask): The demo task whose teacher config is used.
        teacher (str): Teacher name (its config is ``teacher_<name>``).
        dst (str): Where the checkpoint goes.
        seed (int): Seed of the initialisation. Defaults to 0.

    Returns:
        str: ``dst``.
    """
    cfg = Config.fromfile(task.config(f'teacher_{teacher}'))
    return save_model_checkpoint(strip_pretrained(cfg.model), dst, seed, cfg.default_scope)


#: a mode ``'permuted_among_A-B'`` rolls the class outputs among classes A to B only
PERMUTED_AMONG = 'permuted_among_'


def unreliable_path(task: DemoTask, teacher: str, mode: str, out_dir: str) -> str:
    """Where :func:`unreliable_teacher` writes the unreliable copy of ``teacher``.

    Args:
        task (DemoTask): The demo task.
        teacher (str): The teacher made unreliable.
        mode (str): How (see :func:`unreliable_teacher`).
        out_dir (str): The grid's output folder.

    Returns:
        str: ``OUT/{task prefix}_{teacher}_{mode}.pth``.
    """
    return osp.join(out_dir, f'{task.prefix}_{teacher}_{mode}.pth')


def unreliable_teacher(task: DemoTask, teacher: str, checkpoint: str, mode: str,
                       out_dir: str) -> str:
    """The hard pool's unreliable copy of ``teacher`` (see the module docstring for modes).

    Args:
        task (DemoTask): The demo task.
        teacher (str): The teacher made unreliable.
        checkpoint (str): Its trained checkpoint.
        mode (str): ``'permuted'``, ``'untrained'``, ``'uniform'`` or
            ``'permuted_among_A-B'`` (control pools only; see :func:`permuted_classes`).
        out_dir (str): Where the unreliable checkpoint is written.

    Returns:
        str: Path of the unreliable checkpoint.
    """
    dst = unreliable_path(task, teacher, mode, out_dir)
    if mode == 'permuted' or mode.startswith(PERMUTED_AMONG):
        if task.num_classes < 2:
            raise ValueError(f'the {task.name} task has one class: permuting its class outputs '
                             "changes nothing; use --unreliable-mode untrained")
        return permute_class_outputs(
            checkpoint,
            dst,
            task.class_scores,
            task.num_classes,
            classes=permuted_classes(mode, task.num_classes))
    if mode == 'untrained':
        return untrained_teacher(task, teacher, dst)
    if mode == 'uniform':
        return uniform_class_outputs(checkpoint, dst, task.class_scores)
    raise ValueError("unreliable mode must be 'permuted', 'untrained', 'uniform' or "
                     f"'{PERMUTED_AMONG}A-B', got {mode!r}")


def permuted_classes(mode: str, num_classes: int) -> Optional[List[int]]:
    """The classes a permuting mode rolls among.

    Args:
        mode (str): ``'permuted'`` (every class) or ``'permuted_among_A-B'`` (classes A to B,
            both included).
        num_classes (int): The task's classes.

    Returns:
        list[int] | None: The classes, None for every class.

    Raises:
        ValueError: If the range is not two or more of the task's classes.
    """
    if mode == 'permuted':
        return None
    try:
        first, last = (int(end) for end in mode[len(PERMUTED_AMONG):].split('-'))
    except ValueError:
        first, last = 0, -1
    if not 0 <= first < last < num_classes:
        raise ValueError(f"unreliable mode {mode!r}: give '{PERMUTED_AMONG}A-B' with 0 <= A < B "
                         f'< {num_classes} (the classes rolled among)')
    return list(range(first, last + 1))


#: The teacher pools of each task: ``{pool: {teacher: corruption}}`` (see the module docstring);
#: ``clean`` is the trained pool.
POOLS: Dict[str, Dict[str, Dict[str, str]]] = {
    'classification': {
        'clean': {},
        'one_permuted': {
            'res18': 'permuted'
        },
        'two_permuted': {
            'res18': 'permuted',
            'res34': 'permuted'
        },
    },
    'detection': {
        'clean': {},
        'one_untrained': {
            'res18': 'untrained'
        },
        'untrained_and_permuted': {
            'res18': 'untrained',
            'res34': 'permuted'
        },
    },
    'segmentation': {
        'clean': {},
        'one_untrained': {
            'pspnet': 'untrained'
        },
        'untrained_and_permuted': {
            'pspnet': 'untrained',
            'deeplabv3': 'permuted'
        },
    },
    'trees': {
        'clean': {},
        'one_untrained': {
            'res18': 'untrained'
        },
    },
}
#: Pools that explain a result rather than test a method: they run and summarise as any pool
#: but are no cell of the efficacy table or its targets. ``one_uniform``: the teacher that
#: ``one_permuted`` rolls gives a uniform softmax instead, features intact (is a wrong teacher
#: that helps AVER a label smoother?). ``split_permuted``: each teacher's class outputs rolled
#: among a different third of the classes, so on every image one teacher is wrong and two are
#: right, and which one depends on the image's class (can a weighting trust teachers per
#: sample?)
CONTROL_POOLS: Dict[str, Dict[str, Dict[str, str]]] = {
    'classification': {
        'one_uniform': {
            'res18': 'uniform'
        },
        'split_permuted': {
            'regnetx': PERMUTED_AMONG + '0-2',
            'res18': PERMUTED_AMONG + '3-5',
            'res34': PERMUTED_AMONG + '6-9'
        },
    },
}


def task_pools(task: str) -> Dict[str, Dict[str, str]]:
    """Every pool ``quality.py`` can run for a task: its :data:`POOLS` and its
    :data:`CONTROL_POOLS`.

    Args:
        task (str): The task's name.

    Returns:
        dict: ``{pool: {teacher: corruption}}``.
    """
    return dict(POOLS[task], **CONTROL_POOLS.get(task, {}))


def teacher_fingerprints(checkpoints: Optional[Dict[str, str]]) -> Optional[Dict[str, str]]:
    """A short hash of each teacher's weights, recorded with every run: runs made on different
    teacher sets (retrained on another machine) are not paired by seed, and this says which
    runs share a set.

    Args:
        checkpoints (dict, optional): ``{teacher: checkpoint path}`` of the run's pool.

    Returns:
        dict | None: ``{teacher: first 12 hex digits of the SHA-256 of its state dict's tensors,
        in key order}``; None for a run without teachers.
    """
    if not checkpoints:
        return None
    fingerprints = {}
    for teacher, path in sorted(checkpoints.items()):
        state = safe_torch_load(path, map_location='cpu')['state_dict']
        digest = hashlib.sha256()
        for key in sorted(state):
            digest.update(key.encode())
            digest.update(state[key].detach().cpu().contiguous().reshape(-1).view(
                torch.uint8).numpy().tobytes())
        fingerprints[teacher] = digest.hexdigest()[:12]
    return fingerprints


def pool_checkpoints(task: DemoTask, args, make: bool = True) -> Dict[str, Dict[str, str]]:
    """The pools' teacher checkpoints; teachers missing in the cache are trained.

    Args:
        task (DemoTask): The demo task.
        args: The parsed command line (``out``, ``data_root``, ``teacher_dir``, ``pools``).
        make (bool): Write each pool's unreliable teachers from the clean ones. False: read the
            copies a grid's parent process has just written into ``args.out`` (each lane of
            ``quality.py --lanes`` would otherwise make the same files again, per run).
            Defaults to True.

    Returns:
        dict: ``{pool: {teacher: checkpoint}}``.

    Raises:
        FileNotFoundError: With ``make=False``, if an unreliable copy is not there.
    """
    for teacher in task.teachers:
        cached_teacher(task, teacher, osp.join(args.out, 'teachers'), args.data_root,
                       args.teacher_dir)
    clean = {t: task.teacher_checkpoint(args.teacher_dir, t) for t in task.teachers}
    pools = {}
    for pool in args.pools:
        pools[pool] = dict(clean)
        for teacher, mode in task_pools(task.name)[pool].items():
            if make:
                path = unreliable_teacher(task, teacher, clean[teacher], mode, args.out)
            else:
                path = unreliable_path(task, teacher, mode, args.out)
                if not osp.isfile(path):
                    raise FileNotFoundError(
                        f'pool {pool}: the {mode} copy of {teacher} is not in {args.out} '
                        f'({path}); the grid that runs this lane makes it first')
            pools[pool][teacher] = path
    return pools
