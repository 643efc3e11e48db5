"""Two CPU processes (gloo): the agent's stored batches gathered once per update, including
ranks whose last batch of an epoch is smaller (an aspect-ratio batch sampler's)."""
import os.path as osp

import torch
import torch.distributed as torch_dist
import torch.multiprocessing as mp

from mmtkd.engine.agent.rank_gather import gather_batches


def rank_batches(rank):
    """Two stored batches: 2 samples on both ranks, then 2 on rank 0 and 3 on rank 1."""
    sizes = (2, 2 + rank)
    return [
        dict(states=torch.full((n, 3), 10.0 * rank + i), reward=torch.arange(n) + 100.0 * rank)
        for i, n in enumerate(sizes)
    ]


def gather_on_rank(rank, world_size, init_file, out_dir):
    torch_dist.init_process_group(
        'gloo', init_method=f'file://{init_file}', rank=rank, world_size=world_size)
    try:
        torch.save(gather_batches(rank_batches(rank)), osp.join(out_dir, f'rank{rank}.pt'))
    finally:
        torch_dist.destroy_process_group()


def test_every_rank_gets_every_ranks_batches_in_rank_order(tmp_path):
    mp.spawn(gather_on_rank, args=(2, str(tmp_path / 'init'), str(tmp_path)), nprocs=2)
    gathered = [torch.load(tmp_path / f'rank{rank}.pt') for rank in range(2)]
    expected = [{
        key: torch.cat([rank_batches(rank)[i][key] for rank in range(2)])
        for key in ('states', 'reward')
    } for i in range(2)]
    for result in gathered:  # the same global batches on both ranks
        assert len(result) == 2
        for got, want in zip(result, expected):
            assert got.keys() == want.keys()
            for key in want:
                assert torch.equal(got[key], want[key]), key
    assert gathered[0][1]['states'].shape == (5, 3)  # 2 + 3 samples, the padding trimmed
