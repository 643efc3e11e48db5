"""Turn an mmtkd checkpoint into a student-only checkpoint for the stock student config."""
import os
import os.path as osp
import uuid
from collections import OrderedDict
from typing import Any, Callable, Dict

import torch

from .safe_checkpoint_loaders import safe_torch_load

STUDENT_PREFIX = 'student.'


def extract_student(checkpoint: Dict[str, Any]) -> Dict[str, Any]:
    """Keep only the student's weights, without the ``student.`` prefix, and the meta.

    Args:
        checkpoint (dict): A checkpoint written while training an mmtkd distiller.

    Returns:
        dict: ``{'state_dict': ..., 'meta': ...}`` loadable into the stock student config.

    Raises:
        KeyError: When the checkpoint holds no student weights.
    """
    state = checkpoint.get('state_dict', checkpoint)
    student = OrderedDict((key[len(STUDENT_PREFIX):], value) for key, value in state.items()
                          if key.startswith(STUDENT_PREFIX))
    if not student:
        raise KeyError('no "student.*" weights in this checkpoint: is it from an mmtkd '
                       'distiller?')
    meta = dict(checkpoint.get('meta', {}))
    meta['mmtkd'] = 'student exported from a MultiTeacherDistiller checkpoint'
    return {'state_dict': student, 'meta': meta}


def export_student_file(src: str, dst: str, overwrite: bool = False) -> str:
    """Read ``src``, write its student-only checkpoint to ``dst`` (atomically).

    Args:
        src (str): An mmtkd checkpoint.
        dst (str): Output path.
        overwrite (bool): Replace an existing ``dst``. Defaults to False.

    Returns:
        str: ``dst``.
    """
    if not osp.isfile(src):
        raise FileNotFoundError(f'checkpoint {src} does not exist')
    if osp.exists(dst) and not overwrite:
        raise FileExistsError(f'{dst} exists; pass overwrite=True (--overwrite) to replace it')
    checkpoint = safe_torch_load(src, map_location='cpu')
    save_atomically(extract_student(checkpoint), dst)
    return dst


def save_atomically(obj: Any, path: str, dump: Callable[[Any, str], Any] = torch.save) -> None:
    """Write to a temporary file, then rename, so readers never see half a file.

    The temporary file's name is this call's own, so that processes writing the same file at
    once (e.g. the quality benchmark's lanes, each making a pool's corrupted teacher) do not
    write into one temporary file: each renames a whole file of its own, the last one wins.

    Args:
        obj (Any): What to write.
        path (str): The destination (its folder is created).
        dump (Callable): ``dump(obj, file_path)`` writes the file. Defaults to ``torch.save``.
    """
    folder, name = osp.split(osp.abspath(path))
    os.makedirs(folder, exist_ok=True)
    # a name of its own, created by ``dump`` (so with the user's usual file permissions)
    tmp = osp.join(folder, f'.{name}.{os.getpid()}.{uuid.uuid4().hex}.tmp')
    try:
        dump(obj, tmp)
        os.replace(tmp, path)
    finally:
        if osp.exists(tmp):
            os.remove(tmp)
