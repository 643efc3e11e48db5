"""Two CPU processes (gloo) through tools/dist_train.sh: agent and student stay identical across
ranks, teachers stay out of DDP, and an interrupted + resumed run equals the uninterrupted one
(each rank resumes from its own agent buffer, generator and state statistics)."""
import os
import os.path as osp
import subprocess

import pytest
import torch

from .test_classification_runner import distillation_runner_cfg

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
WEIGHTING = dict(
    type='mmtkd.MTKDRLWeighting',
    update='ppo',
    mixing='none',
    state='compact',
    warmup_epochs=1,
    interval=2)


def write_config(tmp_path, name, weighting=WEIGHTING, **train_cfg):
    cfg = distillation_runner_cfg(str(tmp_path), weighting=weighting)
    cfg.work_dir = str(tmp_path / name)
    cfg.param_scheduler = None
    cfg.train_cfg.update(train_cfg)
    cfg.custom_imports = dict(imports=['mmtkd', 'tests.rank_dump'])
    cfg.custom_hooks = [dict(type='mmtkd.MTKDRLAgentHook'), dict(type='RankStateDumpHook')]
    cfg.train_dataloader.batch_size = 2  # per process
    path = str(tmp_path / f'{name}.py')
    cfg.dump(path)
    return path, cfg.work_dir


def iteration_based(tmp_path, name, weighting, max_iters):
    path, work_dir = write_config(tmp_path, name, weighting)
    from mmengine.config import Config
    cfg = Config.fromfile(path)
    cfg.train_cfg = dict(by_epoch=False, max_iters=max_iters, val_interval=100)
    cfg.train_dataloader.sampler = dict(type='InfiniteSampler', shuffle=True)
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=5, by_epoch=False)
    cfg.dump(path)
    return path, work_dir


def dist_train(config, *args, port):
    env = dict(os.environ, PORT=str(port), OMP_NUM_THREADS='1', CUDA_VISIBLE_DEVICES='')
    result = subprocess.run(
        ['bash', osp.join(ROOT, 'tools', 'dist_train.sh'), config, '2', *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def rank_states(work_dir):
    return [
        torch.load(osp.join(work_dir, f'rank{r}_state.pth'), weights_only=True) for r in range(2)
    ]


def assert_equal_states(a, b, parts=('agent', 'student')):
    assert a['num_updates'] == b['num_updates']
    for part in parts:
        for key, value in a[part].items():
            torch.testing.assert_close(b[part][key], value, rtol=0, atol=0, msg=f'{part}.{key}')


def assert_ranks_equal(work_dir):
    rank0, rank1 = rank_states(work_dir)
    assert rank0['num_updates'] >= 2
    assert_equal_states(rank0, rank1)
    return rank0


def test_two_process_training_keeps_ranks_identical_and_resumes(tmp_path):
    config, work_dir = write_config(tmp_path, 'run', max_epochs=2)
    dist_train(config, port=29611)
    first = assert_ranks_equal(work_dir)
    assert osp.isfile(osp.join(work_dir, 'epoch_2.pth'))

    config, _ = write_config(tmp_path, 'run', max_epochs=3)
    dist_train(config, '--resume', port=29612)
    resumed = assert_ranks_equal(work_dir)
    assert resumed['num_updates'] > first['num_updates']


@pytest.mark.parametrize('update', ['ppo', 'official'])
def test_interrupted_and_resumed_equals_uninterrupted(tmp_path, update):
    """Iteration-based, 2 images per process, interval 4, checkpoint at iteration 5: one batch
    per rank is waiting in each rank's buffer when the run stops, and the PPO state normaliser
    differs between ranks."""
    weighting = dict(
        type='mmtkd.MTKDRLWeighting',
        update=update,
        warmup_iters=1,
        interval=4,
        mixing='none' if update == 'ppo' else 'static',
        state='compact' if update == 'ppo' else 'official')
    port = 29621 if update == 'ppo' else 29631
    config, full_dir = iteration_based(tmp_path, 'full', weighting, max_iters=10)
    dist_train(config, port=port)
    config, part_dir = iteration_based(tmp_path, 'part', weighting, max_iters=5)
    dist_train(config, port=port + 1)
    checkpoint = torch.load(osp.join(part_dir, 'iter_5.pth'), weights_only=True)
    ranks = checkpoint['mtkd_rl_agent']['ranks']
    assert len(ranks) == 2 and all(len(r['buffer']) == 1 for r in ranks)
    assert not torch.equal(ranks[0]['buffer'][0]['states'], ranks[1]['buffer'][0]['states'])
    config, _ = iteration_based(tmp_path, 'part', weighting, max_iters=10)
    dist_train(config, '--resume', port=port + 2)
    for full, resumed in zip(rank_states(full_dir), rank_states(part_dir)):
        assert full['num_updates'] == 2
        assert_equal_states(full, resumed)
