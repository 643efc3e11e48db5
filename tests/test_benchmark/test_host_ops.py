"""The host-operation counter behind ``tools/benchmark/host_ops.py``: it counts every operator a
call dispatches (forward and backward) and recognises the ones that synchronise a GPU."""
import os.path as osp

import torch

from mmtkd.benchmark.host_ops import (count_ops, format_excess, format_excesses, format_phases,
                                      format_table, per_step)

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def test_counts_operators_and_synchronisations():
    x = torch.randn(8)
    counts = count_ops(lambda: (x + 1).sum().item())
    assert counts['by_op'] == {'aten::add': 1, 'aten::sum': 1, 'aten::_local_scalar_dense': 1}
    assert (counts['ops'], counts['kernels'], counts['syncs']) == (3, 3, 1)
    views = count_ops(lambda: x.view(2, 4).permute(1, 0).add_(1))
    assert (views['ops'], views['kernels']) == (3, 1)  # view and permute launch nothing
    copies = count_ops(lambda: x.view(2, 4).t().reshape(8))  # reshape copies a transpose
    assert copies['by_op']['aten::clone'] == 1 and copies['kernels'] == 1

    def masked_then_indexed():
        x[x > 0].sum()  # a boolean mask: its shape depends on the values
        x[torch.tensor([0, 2])].sum()  # integer indices: no synchronisation

    counts = count_ops(masked_then_indexed)
    assert counts['by_op']['aten::index'] == 2
    assert counts['syncs_by_op'] == {'aten::index': 1}


def test_counts_of_several_steps_are_given_per_step_in_every_table():
    """A reward measured one step in ``every`` is counted over ``every`` steps: the totals and
    the per-operator and per-phase counts (the tables' "more often than" rows) alike per step."""
    x = torch.randn(8)

    def step():
        (x + 1).sum().item()

    once = count_ops(step)
    thrice = count_ops(lambda: [step() for _ in range(3)])
    assert thrice['by_op']['aten::add'] == 3  # what the tables read before being made per step
    assert per_step(thrice, 3) == {
        k: v if isinstance(v, dict) else float(v)
        for k, v in once.items()
    }


def test_counts_the_backward_pass_too():
    w = torch.randn(4, requires_grad=True)
    forward_only = count_ops(lambda: (w * 2).sum())
    with_backward = count_ops(lambda: (w * 2).sum().backward())
    assert with_backward['ops'] > forward_only['ops']
    assert w.grad is not None


def test_tables_compare_with_aver():
    aver = dict(
        ops=100,
        kernels=80,
        syncs=4,
        by_op={
            'aten::add': 60,
            'aten::mul': 40
        },
        syncs_by_op={'aten::nonzero': 4})
    mtkd = dict(
        ops=130,
        kernels=100,
        syncs=6,
        by_op={
            'aten::add': 60,
            'aten::mul': 65,
            'aten::nonzero': 5
        },
        syncs_by_op={'aten::nonzero': 6},
        agent_update=dict(ops=200, kernels=40, syncs=10, host_ops=150, batches=5))
    args = type('Args', (), dict(batch=2, size=320, task='detection'))
    table = format_table(dict(aver=aver, mtkd_rl=mtkd), args)
    row = '| mtkd_rl | 130 | 1.300 | 100 | 1.250 | 6 | 1.50 | 8.0 / 2.0; 30 |'  # update: 40 / 5
    assert row + ' - | - |' in table
    floor = dict(aver, kernels=50)
    table = format_table(dict(floor=floor, aver=aver, mtkd_rl=mtkd), args)
    assert row + ' 2.000 | 2.000 |' in table
    assert '| aver | 100 | 1.000 | 80 | 1.000 | 4 | 1.00 | - | 1.600 | 1.600 |' in table
    # a weighting that reads the teachers' losses is also compared with the floor that has them
    mtkd['teacher_losses'] = True
    table = format_table(dict(floor=floor, aver=aver, mtkd_rl=mtkd), args)
    assert row + ' 2.000 | - |' in table
    with_losses = dict(floor, kernels=80)
    table = format_table(
        dict(floor=floor, floor_teacher_losses=with_losses, aver=aver, mtkd_rl=mtkd), args)
    assert row + ' 2.000 | 1.250 |' in table
    assert '| aver | 100 | 1.000 | 80 | 1.000 | 4 | 1.00 | - | 1.600 | 1.600 |' in table
    excess = format_excess(dict(aver=aver, mtkd_rl=mtkd), 'mtkd_rl')
    assert '| aten::mul | 25 | 0 |' in excess and '| aten::nonzero | 5 | 2 |' in excess
    assert 'aten::add' not in excess
    everything = format_excesses(dict(floor=floor, aver=aver, mtkd_rl=mtkd, ebkd=mtkd))
    assert everything.count('more often than by aver') == 2  # each method over AVER
    assert 'aver: operators dispatched more often than by floor' not in everything  # same by_op
    floor['by_op'] = {'aten::add': 30, 'aten::mul': 40}
    assert '| aten::add | 30 | 0 |' in format_excesses(dict(floor=floor, aver=aver))


def test_kernels_are_attributed_to_the_phase_that_launched_them(teacher_checkpoints):
    """A real distiller's train_step: every kernel lands in a named phase (teacher forwards,
    the student's forward, each KD term, the backward pass, the optimiser), and the phases add
    up to the step's kernels."""
    from mmengine.optim import OptimWrapper
    from mmengine.registry import MODELS

    from mmtkd.testing import tiny_classification_distiller_cfg
    from ..conftest import teacher_configs
    from ..test_models.test_distiller import batch

    model = MODELS.build(tiny_classification_distiller_cfg(teacher_checkpoints,
                                                           teacher_configs())).train()
    optim = OptimWrapper(torch.optim.SGD(model.student.parameters(), lr=0.01))
    data = batch()
    model.train_step(data, optim)  # warm-up
    counts = count_ops(lambda: model.train_step(data, optim))
    phases = counts['kernels_by_phase']
    assert sum(phases.values()) == counts['kernels']
    for phase in ('MultiTeacherDistiller.teacher_forwards', 'MultiTeacherDistiller._logit_kd',
                  'MultiTeacherDistiller._feature_kd', 'backward', 'optimizer'):
        assert phases.get(phase, 0) > 0, (phase, phases)
    assert phases.get('other', 0) == 0, phases
    # the student's forward is the task adapter's
    assert any(p.endswith('.student_forward') and n > 0 for p, n in phases.items()), phases
    table = format_phases(dict(aver=counts, camkd=counts), least=1000)
    assert table.count('| backward |') == 0  # below ``least``: summed into one line
    assert f"| total | {counts['kernels']:g} | {counts['kernels']:g} |" in table
    assert '| (smaller phases) |' in table
    assert '| backward |' in format_phases(dict(aver=counts), least=1)


def test_the_agent_update_is_host_work_but_its_parameter_copies():
    """The agent's learning is attributed to the host phase (no kernels, no synchronisations
    on a GPU); outside it, a single-process update without a state normaliser only copies the
    learned parameters to the acting agent."""
    from mmtkd.benchmark.kernel_phases import HOST_PHASE
    from ..test_models.test_mtkd_rl_weighting import build

    weighting = build(warmup_epochs=0, update='ppo', mixing='none')
    weighting.observe_batches(3)
    counts = count_ops(weighting.update)
    host = counts['kernels_by_phase'][HOST_PHASE]
    assert host > 100 and counts['syncs_by_phase'].get(HOST_PHASE, 0) > 0  # Adam's counters
    params = len(list(weighting.agent.parameters()))
    assert counts['kernels'] - host == params
    assert counts['syncs'] == counts['syncs_by_phase'][HOST_PHASE]
