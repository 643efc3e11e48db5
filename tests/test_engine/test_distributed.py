"""Two CPU processes (gloo) through tools/dist_train.sh: agent and student stay identical across
ranks, teachers stay out of DDP, and the run resumes from its checkpoint."""
import os
import os.path as osp
import subprocess

import torch

from .test_classification_runner import distillation_runner_cfg

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
WEIGHTING = dict(type='mmtkd.MTKDRLWeighting', update='ppo', mixing='none', state='compact',
                 warmup_epochs=1, interval=2)


def write_config(tmp_path, max_epochs):
    cfg = distillation_runner_cfg(str(tmp_path), weighting=WEIGHTING)
    cfg.work_dir = str(tmp_path / 'run')
    cfg.param_scheduler = None
    cfg.train_cfg.max_epochs = max_epochs
    cfg.custom_imports = dict(imports=['mmtkd', 'mmtkd.testing.rank_dump'])
    cfg.custom_hooks = [dict(type='mmtkd.MTKDRLAgentHook'),
                        dict(type='mmtkd.RankStateDumpHook')]
    cfg.train_dataloader.batch_size = 2  # per process
    path = str(tmp_path / f'dist_{max_epochs}.py')
    cfg.dump(path)
    return path, cfg.work_dir


def dist_train(config, *args, port):
    env = dict(os.environ, PORT=str(port), OMP_NUM_THREADS='1', CUDA_VISIBLE_DEVICES='')
    result = subprocess.run(['bash', osp.join(ROOT, 'tools', 'dist_train.sh'), config, '2',
                             *args], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def assert_ranks_equal(work_dir):
    rank0 = torch.load(osp.join(work_dir, 'rank0_state.pth'), weights_only=True)
    rank1 = torch.load(osp.join(work_dir, 'rank1_state.pth'), weights_only=True)
    assert rank0['num_updates'] >= 2 and rank0['num_updates'] == rank1['num_updates']
    for part in ('agent', 'student'):
        for key, value in rank0[part].items():
            torch.testing.assert_close(rank1[part][key], value, msg=f'{part}.{key}')
    return rank0


def test_two_process_training_keeps_ranks_identical_and_resumes(tmp_path):
    config, work_dir = write_config(tmp_path, max_epochs=2)
    dist_train(config, port=29611)
    first = assert_ranks_equal(work_dir)
    assert osp.isfile(osp.join(work_dir, 'epoch_2.pth'))

    config, _ = write_config(tmp_path, max_epochs=3)
    dist_train(config, '--resume', port=29612)
    resumed = assert_ranks_equal(work_dir)
    assert resumed['num_updates'] > first['num_updates']
