"""Every checkpoint MMEngine loads, read with ``torch.load(..., weights_only=True)``.

MMEngine routes each checkpoint path through :class:`mmengine.runner.CheckpointLoader`, which
picks a loader by prefix: local paths, ``http(s)://``, ``torchvision://`` / ``modelzoo://``,
``open-mmlab://`` / ``openmmlab://``, ``mmcls://``, ``s3://`` / ``petrel://`` and ``pavi://``.
Teacher checkpoints, ``load_from``, ``--resume`` and ``init_cfg=dict(type='Pretrained')`` all go
through it. Its URL loaders call ``torch.hub.load_state_dict_from_url``, whose default is
``weights_only=False``: a downloaded checkpoint could run arbitrary code while it is unpickled.

:func:`install_safe_checkpoint_loaders` re-registers every one of these schemes with a loader of
the same behaviour (same caches, same URL tables, rank 0 downloads first) that unpickles with
``weights_only=True`` and the allow-list of :mod:`mmtkd.utils.safe_loading`. It is called when
``mmtkd`` is imported, i.e. by ``custom_imports=dict(imports=['mmtkd'])`` in any config.

To behave exactly as MMEngine's loaders, these read MMEngine's URL tables and home folder with
the helpers its own loaders use (``_get_mmengine_home``, ``_process_mmcls_checkpoint``,
``CheckpointLoader._get_checkpoint_loader``): MMEngine 0.10 has no public names for them.
"""
import io
import os.path as osp
import pickle
from tempfile import TemporaryDirectory
from typing import Any, Callable, Optional, Union

import torch
from mmengine.dist import barrier, get_dist_info
from mmengine.fileio import get_file_backend
from mmengine.runner import CheckpointLoader
from mmengine.runner import checkpoint as mmengine_checkpoint
from torch.hub import load_state_dict_from_url

from .safe_loading import allow_mmengine_checkpoints

MapLocation = Optional[Union[str, torch.device, Callable]]

#: Prefixes MMEngine registers and this module replaces; their order is not significant.
URL_PREFIXES = ('http://', 'https://')
TORCHVISION_PREFIXES = ('modelzoo://', 'torchvision://')
OPENMMLAB_PREFIXES = ('open-mmlab://', 'openmmlab://')
CEPH_PREFIXES = (r'(\S+\:)?s3://', r'(\S+\:)?petrel://')


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint holds objects that weights-only loading refuses (possibly code to run)."""


def safe_torch_load(source: Union[str, io.BytesIO],
                    map_location: MapLocation = None,
                    name: Optional[str] = None) -> Any:
    """``torch.load`` with ``weights_only=True``, naming the file when it is refused.

    Args:
        source (str | io.BytesIO): A local file or an in-memory buffer.
        map_location: As for :func:`torch.load`.
        name (str, optional): How to call the checkpoint in the error (its URL, say).

    Returns:
        Any: The loaded object.

    Raises:
        UnsafeCheckpointError: When the file pickles something outside the allow-list.
    """
    what = name or (source if isinstance(source, str) else 'checkpoint')
    return _refusing_unsafe(
        lambda: torch.load(source, map_location=map_location, weights_only=True), what)


def load_local(filename: str, map_location: MapLocation = None) -> Any:
    """Load a local checkpoint safely (MMEngine's ``''`` scheme)."""
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'{filename} can not be found.')
    return safe_torch_load(filename, map_location)


def _refusing_unsafe(load: Callable[[], Any], name: str) -> Any:
    """Run ``load``; a weights-only refusal becomes :class:`UnsafeCheckpointError` naming
    ``name``."""
    allow_mmengine_checkpoints()
    try:
        return load()
    except pickle.UnpicklingError as err:
        raise UnsafeCheckpointError(
            f'{name}: refused by weights-only loading, it pickles objects that are not tensors '
            f'or trusted MMEngine types (a checkpoint can carry code that runs when it is '
            f'unpickled). Only load files you trust; to load a trusted one, convert it to a plain '
            f'state dict first. torch said: {err}') from err


def load_url(url: str, map_location: MapLocation = None, model_dir: Optional[str] = None) -> Any:
    """torch hub's download-and-cache with ``weights_only=True``, rank 0 first and then the
    other ranks from the cache, as MMEngine's ``http://`` / ``https://`` loader does.

    Args:
        url (str): The checkpoint's URL.
        map_location: As for :func:`torch.load`.
        model_dir (str, optional): Download folder; torch hub's ``checkpoints`` by default.

    Returns:
        Any: The loaded checkpoint.
    """

    def load() -> Any:
        return _refusing_unsafe(
            lambda: load_state_dict_from_url(
                url,
                model_dir=model_dir,
                map_location=map_location,
                progress=False,
                weights_only=True), url)

    rank, world_size = get_dist_info()
    if rank == 0:
        checkpoint = load()
    if world_size > 1:
        barrier()
        if rank > 0:
            checkpoint = load()
    return checkpoint


def load_torchvision(filename: str, map_location: MapLocation = None) -> Any:
    """``torchvision://NAME`` (or the deprecated ``modelzoo://NAME``) through MMEngine's table."""
    model_name = filename.split('://', 1)[1]
    urls = mmengine_checkpoint.get_torchvision_models()
    if model_name not in urls:
        raise KeyError(f'{filename}: torchvision has no model {model_name!r}')
    return load_url(urls[model_name], map_location)


def load_openmmlab(filename: str, map_location: MapLocation = None) -> Any:
    """``open-mmlab://NAME`` through MMEngine's table (and ``$MMENGINE_HOME/open_mmlab.json``)."""
    model_name = filename.split('://', 1)[1]
    model_name = mmengine_checkpoint.get_deprecated_model_names().get(model_name, model_name)
    urls = mmengine_checkpoint.get_external_models()
    if model_name not in urls:
        raise KeyError(f'{filename}: MMEngine knows no open-mmlab model {model_name!r}')
    model_url = urls[model_name]
    if model_url.startswith(URL_PREFIXES):
        return load_url(model_url, map_location)
    return load_local(osp.join(mmengine_checkpoint._get_mmengine_home(), model_url), map_location)


def load_mmcls(filename: str, map_location: MapLocation = None) -> Any:
    """``mmcls://NAME`` through MMEngine's table, with MMEngine's key conversion."""
    urls = mmengine_checkpoint.get_mmcls_models()
    checkpoint = load_url(urls[filename[len('mmcls://'):]], map_location)
    return mmengine_checkpoint._process_mmcls_checkpoint(checkpoint)


def load_ceph(filename: str, map_location: MapLocation = None) -> Any:
    """``s3://`` / ``petrel://`` through MMEngine's file backend."""
    backend = get_file_backend(filename, backend_args={'backend': 'petrel'})
    with io.BytesIO(backend.get(filename)) as buffer:
        return safe_torch_load(buffer, map_location, name=filename)


def load_pavi(filename: str, map_location: MapLocation = None) -> Any:
    """``pavi://`` through pavi's model cloud."""
    try:
        from pavi import modelcloud
    except ImportError as err:
        raise ImportError('Please install pavi to load checkpoint from modelcloud.') from err
    model = modelcloud.get(filename[len('pavi://'):])
    with TemporaryDirectory() as tmp_dir:
        downloaded = osp.join(tmp_dir, model.name)
        model.download(downloaded)
        return safe_torch_load(downloaded, map_location, name=filename)


#: prefix(es) -> safe loader; together they cover every scheme MMEngine 0.10 registers.
SAFE_LOADERS = (
    ('', load_local),
    (URL_PREFIXES, load_url),
    (TORCHVISION_PREFIXES, load_torchvision),
    (OPENMMLAB_PREFIXES, load_openmmlab),
    ('mmcls://', load_mmcls),
    (CEPH_PREFIXES, load_ceph),
    ('pavi://', load_pavi),
)


def install_safe_checkpoint_loaders() -> None:
    """Replace MMEngine's checkpoint loaders by the weights-only ones above (idempotent)."""
    for prefixes, loader in SAFE_LOADERS:
        CheckpointLoader.register_scheme(prefixes, loader, force=True)


def is_local_path(checkpoint: str) -> bool:
    """Whether MMEngine would read ``checkpoint`` as a local file (no registered prefix).

    Args:
        checkpoint (str): A checkpoint path, URL or prefixed name.

    Returns:
        bool: True for plain file paths.
    """
    return CheckpointLoader._get_checkpoint_loader(checkpoint) is load_local
