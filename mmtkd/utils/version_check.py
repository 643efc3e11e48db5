"""Warn (never fail) when the installed stack differs from the tested one."""
import importlib.metadata
import warnings

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
                'it may work, but this combination is untested.', stacklevel=2)
