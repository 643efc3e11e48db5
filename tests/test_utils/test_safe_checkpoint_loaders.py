"""Every way a checkpoint reaches mmtkd (teacher paths, URLs, MMEngine prefixes, ``load_from``,
``--resume``) is unpickled with weights-only loading: a malicious checkpoint served from a
loopback HTTP server is refused and its payload never runs."""
import functools
import json
import os
import os.path as osp
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest
import torch
from mmengine.runner import CheckpointLoader
from mmengine.runner.checkpoint import _load_checkpoint

import mmtkd  # noqa: F401  (installs the safe loaders)
from mmtkd.testing import save_model_checkpoint, tiny_classifier
from mmtkd.utils import UnsafeCheckpointError
from mmtkd.utils.model_builder import build_model, load_teacher_checkpoint
from mmtkd.utils.safe_checkpoint_loaders import SAFE_LOADERS


class _CreatesAFolder:
    """Unpickling this object runs ``os.mkdir(path)``: a stand-in for any code a file carries."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return os.mkdir, (self.path, )


class _QuietHandler(SimpleHTTPRequestHandler):

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def served(tmp_path, monkeypatch):
    """A loopback HTTP server over ``tmp_path/www``, torch hub's cache in ``tmp_path``."""
    www = tmp_path / 'www'
    www.mkdir()
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch_home'))
    handler = functools.partial(_QuietHandler, directory=str(www))
    server = ThreadingHTTPServer(('127.0.0.1', 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield www, f'http://127.0.0.1:{server.server_address[1]}'
    server.shutdown()
    server.server_close()


def _classifier_cfg() -> dict:
    # an explicit scope: nested modules (the data preprocessor) are built in it whatever scope
    # an earlier test left as the default
    return dict(tiny_classifier(18, 4, 4), _scope_='mmpretrain')


def _malicious_checkpoint(folder, name, marker) -> None:
    model = build_model(_classifier_cfg(), None, 'test')
    torch.save({
        'state_dict': model.state_dict(),
        'meta': _CreatesAFolder(str(marker))
    }, str(folder / name))


def test_every_mmengine_scheme_is_replaced_by_a_safe_loader():
    safe = {loader for _, loader in SAFE_LOADERS}
    for prefix, loader in CheckpointLoader._schemes.items():
        assert loader in safe, f'{prefix!r} is still loaded by {loader.__module__}'


def test_malicious_teacher_url_is_refused_and_its_payload_never_runs(served, tmp_path):
    www, url = served
    marker = tmp_path / 'payload_ran'
    _malicious_checkpoint(www, 'evil.pth', marker)
    teacher = build_model(_classifier_cfg(), None, 'test')
    with pytest.raises(RuntimeError, match=r"teacher 'evil'.*weights-only"):
        load_teacher_checkpoint(teacher, f'{url}/evil.pth', "teacher 'evil'")
    # load_from / --resume go through the same loader
    with pytest.raises(UnsafeCheckpointError, match='evil.pth'):
        _load_checkpoint(f'{url}/evil.pth', map_location='cpu')
    assert not marker.exists(), 'the checkpoint payload ran'


def test_trusted_url_and_open_mmlab_prefix_load(served, tmp_path, monkeypatch):
    www, url = served
    cfg = _classifier_cfg()
    save_model_checkpoint(cfg, str(www / 'good.pth'), seed=1)
    expected = torch.load(str(www / 'good.pth'), weights_only=True)['state_dict']
    teacher = build_model(cfg, None, 'test')
    load_teacher_checkpoint(teacher, f'{url}/good.pth', "teacher 'good'")
    for key, value in teacher.state_dict().items():
        torch.testing.assert_close(value, expected[key])

    # open-mmlab://NAME resolves through MMEngine's table, extended by $MMENGINE_HOME: it used to
    # be refused as "does not exist" before any loader saw it
    home = tmp_path / 'mmengine_home'
    home.mkdir()
    (home / 'open_mmlab.json').write_text(
        json.dumps(dict(mmtkd_good=f'{url}/good.pth', mmtkd_evil=f'{url}/evil.pth')))
    monkeypatch.setenv('MMENGINE_HOME', str(home))
    other = build_model(cfg, None, 'test')
    load_teacher_checkpoint(other, 'open-mmlab://mmtkd_good', "teacher 'zoo'")
    for key, value in other.state_dict().items():
        torch.testing.assert_close(value, expected[key])
    marker = tmp_path / 'payload_ran'
    _malicious_checkpoint(www, 'evil.pth', marker)
    with pytest.raises(RuntimeError, match='weights-only'):
        load_teacher_checkpoint(other, 'open-mmlab://mmtkd_evil', "teacher 'zoo'")
    assert not marker.exists()


def test_prefixed_names_are_not_reported_as_missing_files():
    teacher = build_model(_classifier_cfg(), None, 'test')
    with pytest.raises(RuntimeError, match="teacher 't'.*torchvision has no model"):
        load_teacher_checkpoint(teacher, 'torchvision://no_such_model', "teacher 't'")
    with pytest.raises(FileNotFoundError, match="teacher 't'.*does not exist"):
        load_teacher_checkpoint(teacher, osp.join('no', 'such.pth'), "teacher 't'")


def test_local_malicious_checkpoint_is_refused(tmp_path):
    marker = tmp_path / 'payload_ran'
    _malicious_checkpoint(tmp_path, 'evil.pth', marker)
    with pytest.raises(UnsafeCheckpointError):
        _load_checkpoint(str(tmp_path / 'evil.pth'), map_location='cpu')
    assert not marker.exists()
