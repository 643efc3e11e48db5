"""The EMA-copy benchmark counts each storage once, views and shared tensors included."""
import torch

from mmtkd.benchmark.ema_copy import storage_bytes


def test_storage_bytes_counts_each_storage_once():
    weight = torch.zeros(256, dtype=torch.float32)
    other = torch.zeros(8, dtype=torch.float64)
    assert storage_bytes([weight, weight[:10], weight.view(16, 16), other]) == 256 * 4 + 8 * 8
    assert storage_bytes([]) == 0
