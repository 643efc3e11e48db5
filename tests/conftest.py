"""Shared fixtures: tiny real mmpretrain teachers whose checkpoints are written to disk; running a
training / test script as a user would."""
import os.path as osp
import subprocess
import sys

import pytest

import mmtkd  # noqa: F401
from mmtkd.testing import save_model_checkpoint, tiny_classifier

NUM_CLASSES = 4
ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def run_script(path: str, *args: str) -> str:
    """Run a Python script from the repository root (as a user runs ``tools/train.py``) and
    return its output; a failing script fails the test with the end of its output."""
    result = subprocess.run([sys.executable, path, *args],
                            cwd=ROOT,
                            capture_output=True,
                            text=True,
                            timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout + result.stderr


def teacher_configs(num_classes: int = NUM_CLASSES) -> dict:
    """Three teachers of different architectures (two ResNets and a MobileNetV2)."""
    return dict(
        res18=tiny_classifier(18, 8, num_classes),
        res34=tiny_classifier(34, 8, num_classes),
        mbv2=tiny_classifier(
            num_classes=num_classes,
            backbone=dict(
                type='MobileNetV2', widen_factor=0.25, out_indices=(7, ), _out_channels=1280)),
    )


@pytest.fixture(scope='session')
def teacher_checkpoints(tmp_path_factory) -> dict:
    """name -> path of a checkpoint written by the test session."""
    folder = tmp_path_factory.mktemp('teachers')
    return {
        name: save_model_checkpoint(cfg, str(folder / f'{name}.pth'), seed=i)
        for i, (name, cfg) in enumerate(teacher_configs().items())
    }
