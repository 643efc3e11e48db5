"""Safe (weights-only) loading accepts what MMEngine writes and still refuses the rest."""
import collections
import pickle

import pytest
import torch
from mmengine.logging import HistoryBuffer, MessageHub

import mmtkd  # noqa: F401  (registers the allow-list)
from mmtkd.utils.safe_loading import history_buffer_getattr


def test_message_hub_and_scheduler_state_round_trip(tmp_path):
    hub = MessageHub.get_instance('safe_loading_test')
    hub.update_scalar('train/loss', 1.5)
    hub.update_scalar('train/loss', 0.5)
    state = dict(
        message_hub=hub.state_dict(),
        milestones=collections.Counter({3: 1}),
        meta=dict(seed=torch.tensor(0).numpy(), epoch=2))
    path = tmp_path / 'ckpt.pth'
    torch.save(state, path)
    loaded = torch.load(path, weights_only=True)
    assert loaded['message_hub']['log_scalars']['train/loss'].mean() == pytest.approx(1.0)
    assert loaded['milestones'] == collections.Counter({3: 1})


class _ReadsAnAttribute:

    def __reduce__(self):
        return getattr, (torch.zeros(1), 'numpy')


def test_arbitrary_getattr_is_still_refused(tmp_path):
    path = tmp_path / 'evil.pth'
    torch.save({'x': _ReadsAnAttribute()}, path)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)
    with pytest.raises(pickle.UnpicklingError):
        history_buffer_getattr(HistoryBuffer, '__init__')
    assert history_buffer_getattr(HistoryBuffer, 'mean') is HistoryBuffer.mean
