"""Warn when the installed stack differs from the tested one; fail clearly on a known-broken mix."""
import importlib.metadata
import warnings
from typing import Callable

from mmtkd.version import TESTED_VERSIONS

_DISTRIBUTIONS = {'mmseg': 'mmsegmentation'}


def warn_untested_versions() -> None:
    """Emit one warning per installed package whose version was not tested.

    Packages that are not installed are skipped silently: they may not be needed for the task at
    hand (a classification user does not need mmdet to be importable, for instance).
    """
    for package, tested in TESTED_VERSIONS.items():
        try:
            installed = importlib.metadata.version(_DISTRIBUTIONS.get(package, package))
        except importlib.metadata.PackageNotFoundError:
            continue
        if not installed.startswith(tested):
            warnings.warn(
                f'mmtkd was tested with {package} {tested}, found {installed}; '
                'it may work, but this combination is untested.',
                stacklevel=2)


def check_known_conflicts(version: Callable[[str], str] = importlib.metadata.version) -> None:
    """Raise a clear error for installed combinations known not to import.

    mmpretrain 1.2 imports its multimodal models whenever transformers >= 4.28 is installed, and
    they do not import with transformers >= 5 (``TypeError: NoneType takes no arguments``);
    mmdet 3.3 imports mmpretrain, so mmdet fails too.

    Args:
        version (Callable): Distribution name -> installed version; raises
            ``importlib.metadata.PackageNotFoundError`` when not installed.

    Raises:
        ImportError: Naming the conflicting packages and the fix.
    """
    try:
        mmpretrain, transformers = version('mmpretrain'), version('transformers')
    except importlib.metadata.PackageNotFoundError:
        return
    if mmpretrain.startswith('1.') and int(transformers.split('.')[0]) >= 5:
        raise ImportError(
            f'mmpretrain {mmpretrain} cannot be imported with transformers {transformers} (its '
            "multimodal models need transformers < 5), and mmdet imports it: run "
            "pip install 'transformers<5' (or uninstall transformers)")
