"""The step-memory replay behind ``tools/benchmark/step_memory.py``: the peak of live tensor
bytes, counted from the profiler's allocation and free events in time order."""
import os.path as osp

import torch

from mmtkd.benchmark.step_memory import format_table, peak_allocated_bytes, resident_bytes

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))

MB = 4 * 2**18  # bytes of 2**18 float32 values


def test_peak_counts_what_is_alive_at_once():
    x = torch.randn(2**18)

    def two_alive_then_one():
        y = x * 2
        z = y + 1  # y and z alive: 2 MB
        del y
        return z.sum()

    def one_alive_at_a_time():
        (x * 2).sum()  # freed before the next one
        (x + 1).sum()

    first, second = peak_allocated_bytes(two_alive_then_one), peak_allocated_bytes(
        one_alive_at_a_time)
    assert 2 * MB <= first['peak'] < 2 * MB + 1024
    assert MB <= second['peak'] < MB + 1024
    assert abs(second['end']) < 1024  # everything freed again


def test_backward_allocations_are_seen():
    w = torch.randn(2**18, requires_grad=True)
    forward = peak_allocated_bytes(lambda: (w * w).sum())
    backward = peak_allocated_bytes(lambda: (w * w).sum().backward())
    assert backward['peak'] >= forward['peak'] + MB  # the gradient
    assert w.grad is not None


def test_resident_bytes_count_shared_storage_once():
    base = torch.zeros(1024)
    assert resident_bytes([base, base.view(32, 32), base[:10], torch.zeros(256)]) == 4096 + 1024


def test_table_ratio_to_aver():

    class Args:
        size, batch = 320, 2

    results = dict(
        aver=dict(resident_mb=100.0, step_peak_mb=100.0, peak_mb=200.0),
        mtkd_rl=dict(resident_mb=100.0, step_peak_mb=106.0, peak_mb=206.0))
    table = format_table(results, Args)
    assert '| mtkd_rl | 100.0 | 106.0 | 206.0 | 1.030 |' in table
    assert '| aver | 100.0 | 100.0 | 200.0 | 1.000 |' in table
