"""The agent learns to distrust poisoned teachers on real data (scikit-learn digits).

Three MLP teachers; one or two have their logits permuted across classes. The policy-gradient
variant (heuristics off) must give the poisoned teachers clearly less than 1/M within a bounded
number of iterations. The official variant's behaviour in the same settings is recorded by
``tools/analysis/digits_probe.py`` (see docs/agent_behaviour.md), not asserted here.
"""
import pytest

from mmtkd.testing import run_digits_probe
from mmtkd.testing.digits_probe import load_digits_split, train_teachers

PPO = dict(type='mmtkd.MTKDRLWeighting', update='ppo', mixing='none', reward='improvement',
           warmup_iters=0, interval=10, seed=0)


@pytest.fixture(scope='module')
def teachers():
    x, y, _, _ = load_digits_split(0)
    return train_teachers(x, y, seed=0)


def test_policy_gradient_distrusts_one_poisoned_teacher(teachers):
    result = run_digits_probe(dict(PPO, state='official'), poisoned=(2, ), iters=800,
                              teachers=teachers)
    weights = result['mean_logit_weights']
    assert weights[2] < 0.15, result
    assert result['student_acc'] > 0.9, result


def test_policy_gradient_distrusts_two_poisoned_teachers_with_compact_state(teachers):
    result = run_digits_probe(dict(PPO, state='compact'), poisoned=(1, 2), iters=800,
                              teachers=teachers)
    weights = result['mean_logit_weights']
    assert weights[1] < 0.15 and weights[2] < 0.15, result
    assert weights[0] > 0.7, result
