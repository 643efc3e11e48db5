"""tools/analysis/plot_teacher_weights.py reads MMEngine's scalars.json and draws a PNG."""
import json
import os
import os.path as osp
import subprocess
import sys

from PIL import Image

from mmtkd.analysis import plot_teacher_weights

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TOOL = osp.join(ROOT, 'tools', 'analysis', 'plot_teacher_weights.py')


def write_run(work_dir, run='20260101_000000'):
    folder = osp.join(work_dir, run, 'vis_data')
    os.makedirs(folder)
    with open(osp.join(folder, 'scalars.json'), 'w') as f:
        for step in (10, 20, 30):
            f.write(
                json.dumps({
                    'loss': 1.0,
                    'weight_logit/r50': 0.5,
                    'weight_logit/r101': 0.5,
                    'weight_feat/r50': 0.2,
                    'weight_feat/r101': 0.8,
                    'step': step
                }) + '\n')


def test_reads_every_teacher_and_writes_a_png(tmp_path):
    write_run(str(tmp_path))
    series = plot_teacher_weights.read_weights(plot_teacher_weights.find_scalars(str(tmp_path)))
    assert set(series['weight_logit/']) == {'r50', 'r101'}
    assert series['weight_feat/']['r101'] == [(10, 0.8), (20, 0.8), (30, 0.8)]
    out = tmp_path / 'w.png'
    result = subprocess.run(
        [sys.executable, TOOL, str(tmp_path), '--out',
         str(out)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert Image.open(out).size[0] > 500


def test_work_dir_without_logs_is_a_clear_error(tmp_path):
    result = subprocess.run([sys.executable, TOOL, str(tmp_path)], capture_output=True, text=True)
    assert result.returncode != 0 and 'LocalVisBackend' in result.stderr
