"""The EMA benchmark's helpers: every tensor of a model counted once, the averaging's kernels."""
import torch.nn as nn

from mmtkd.benchmark.ema_copy import averaging_kernels
from mmtkd.benchmark.step_memory import module_tensors, resident_bytes


def test_module_tensors_and_resident_bytes_count_each_storage_once():
    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))
    model.append(model[0])  # a shared module
    tensors = module_tensors(model)
    expected = (16 + 4) * 4 + (4 + 4 + 4 + 4) * 4 + 8  # linear; BN weight, bias, stats; count
    assert resident_bytes(tensors) == expected
    assert resident_bytes(tensors + [tensors[0][:2]]) == expected  # a view: the same storage


def test_averaging_kernels_grow_with_what_is_averaged():
    small, large = nn.Linear(4, 4), nn.Sequential(*[nn.Linear(4, 4) for _ in range(3)])
    assert 0 < averaging_kernels(small, True) < averaging_kernels(large, True)
    with_buffers = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))
    # without update_buffers the buffers are copied each step: more kernels than parameters only
    assert averaging_kernels(with_buffers, False) > averaging_kernels(nn.Linear(4, 4), False)
