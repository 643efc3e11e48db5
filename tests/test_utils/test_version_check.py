"""The known-broken mix of installed versions fails at import with a message naming the fix."""
import importlib.metadata

import pytest

from mmtkd.utils import check_known_conflicts


def versions(**installed):

    def version(name):
        if name not in installed:
            raise importlib.metadata.PackageNotFoundError(name)
        return installed[name]

    return version


def test_transformers_5_with_mmpretrain_1_is_refused_with_the_fix():
    with pytest.raises(ImportError, match=r"transformers 5\.17\.0.*pip install 'transformers<5'"):
        check_known_conflicts(versions(mmpretrain='1.2.0', transformers='5.17.0'))


@pytest.mark.parametrize('installed', [
    dict(mmpretrain='1.2.0', transformers='4.46.3'),
    dict(mmpretrain='1.2.0'),
    dict(transformers='5.17.0')
])
def test_other_combinations_pass(installed):
    check_known_conflicts(versions(**installed))
