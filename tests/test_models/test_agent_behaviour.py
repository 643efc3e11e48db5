"""The agent learns to distrust poisoned teachers on real data (scikit-learn digits).

Three MLP teachers; one or two have their logits permuted across classes. The policy-gradient
variant (heuristics off, compact state) must give the poisoned teachers clearly less than 1/M
within 800 iterations. The official variant's behaviour in the same settings (and the official
state's) is measured by ``tools/analysis/digits_probe.py`` and reported in
docs/agent_behaviour.md, not asserted here.
"""
import pytest
import torch

from mmtkd.analysis.digits_probe import load_digits_split, run_digits_probe, train_teachers

# "Clearly smaller than 1/M": at most 0.2 (= 0.6 / M) for every poisoned teacher. Measured with
# these settings (seeds 0, 1, 2): one poisoned 0.11 / 0.04 / 0.09; two poisoned at most 0.17.
POISONED_MAX = 0.2
# At batch 1 (interval 64, student lr 0.003, one thread), measured by
# tools/analysis/digits_batch_one.py (docs/reliability.md): poisoned weight 0.176 / 0.000 / 0.070
# at seeds 0 / 1 / 2 (0.360 / 0.305 / 0.339 before rewards were normalised over a window).
BATCH_ONE_ITERS = 3000
POISONED_MAX_BATCH_ONE = 0.25
PPO = dict(
    type='mmtkd.MTKDRLWeighting',
    update='ppo',
    mixing='none',
    reward='improvement',
    state='compact',
    warmup_iters=0,
    interval=10,
    seed=0)


@pytest.fixture(scope='module')
def teachers():
    x, y, _, _ = load_digits_split(0)
    return train_teachers(x, y, seed=0)


def test_policy_gradient_distrusts_one_poisoned_teacher(teachers):
    result = run_digits_probe(PPO, poisoned=(2, ), iters=800, teachers=teachers)
    weights = result['mean_logit_weights']
    assert weights[2] < POISONED_MAX, result
    assert result['student_acc'] > 0.9, result


def test_policy_gradient_distrusts_two_poisoned_teachers(teachers):
    result = run_digits_probe(PPO, poisoned=(1, 2), iters=800, teachers=teachers)
    weights = result['mean_logit_weights']
    assert weights[1] < POISONED_MAX and weights[2] < POISONED_MAX, result
    assert weights[0] > 0.6, result


def test_policy_gradient_learns_at_batch_one(teachers):
    """One image per step: within-batch normalisation would give every reward 0; the rewards
    are normalised against the window instead, and the agent still finds the poisoned teacher."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the measured setting (RL results depend on float rounding)
    try:
        result = run_digits_probe(
            dict(PPO, interval=64),
            poisoned=(2, ),
            iters=BATCH_ONE_ITERS,
            batch_size=1,
            teachers=teachers,
            lr=0.003)
    finally:
        torch.set_num_threads(threads)
    assert result['mean_logit_weights'][2] < POISONED_MAX_BATCH_ONE, result
    assert result['student_acc'] > 0.85, result
