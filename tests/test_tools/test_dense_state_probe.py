"""The dense-state probe scores held-out images: kinds that differ are told apart, kinds that do
not are at chance."""
import numpy as np

from mmtkd.analysis.dense_state_probe import probe_accuracy


def test_probe_tells_apart_what_differs_and_nothing_else():
    rng = np.random.default_rng(0)
    noise = rng.normal(size=(400, 3, 4))
    separable = noise + np.array([0., 3., -3.])[None, :, None]  # each kind its own offset
    assert probe_accuracy(separable) > 0.95
    assert abs(probe_accuracy(noise) - 1 / 3) < 0.08  # same distribution for every kind
    # held out: a probe that memorised the first half scores the second half only
    constant_first_half = noise.copy()
    constant_first_half[:200] = separable[:200]
    assert probe_accuracy(constant_first_half) < 0.6
