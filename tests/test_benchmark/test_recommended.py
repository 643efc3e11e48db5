"""The recommended configuration is one per task family: what the benchmarks measure under
:data:`RECOMMENDED` is, on every task, the weighting a user's shipped config inherits."""
import os.path as osp

import pytest
from mmengine.config import Config

from mmtkd.benchmark.quality import method_cfg
from mmtkd.benchmark.recommended import (CREDIT_AGENT, RECOMMENDED, candidate_weightings,
                                         recommended_weighting)
from mmtkd.demo.tasks import TASKS
from .test_quality import method_args

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
#: each task family's shipped recipe with the recommended weighting, and the benchmark task
#: measured for that family
SHIPPED = {
    'retinanet_r18_3teachers_credit.py': 'detection',
    'resnet18_3teachers_imagenet_credit.py': 'classification',
    'deeplabv3_r18-d8_3teachers_cityscapes_feature_credit.py': 'segmentation',
}
#: the credit agent each task's recommendation is, as the benchmarks named it before session 33
MEASURED_AS = dict(
    detection=CREDIT_AGENT,
    trees=CREDIT_AGENT,
    classification=CREDIT_AGENT,
    segmentation=f'{CREDIT_AGENT}_feature_credit_ranked_every5_passes10')


@pytest.mark.parametrize('config', sorted(SHIPPED))
def test_each_shipped_recipe_inherits_its_familys_recommended_weighting(config):
    shipped = Config.fromfile(osp.join(ROOT, 'configs', 'mtkd_rl', config)).model.weighting
    assert shipped.to_dict() == recommended_weighting(SHIPPED[config])


@pytest.mark.parametrize('task', sorted(TASKS))
def test_each_demo_distils_with_its_familys_recommended_weighting(task):
    """The demo's recommended row (``<distiller>_credit.py``) is the shipped agent file of the
    task's family on the official agent's demo config: only the weighting differs."""
    credit = Config.fromfile(TASKS[task].config('credit'))
    official = Config.fromfile(TASKS[task].config('mtkd_rl'))
    assert credit.model.weighting.to_dict() == recommended_weighting(task)
    for cfg in (credit, official):
        cfg.model.pop('weighting')
    assert credit.model == official.model and credit.custom_hooks == official.custom_hooks


def test_segmentors_get_the_feature_credit_and_the_other_tasks_the_credit_agent():
    candidates = candidate_weightings()
    for task, measured_as in MEASURED_AS.items():
        assert recommended_weighting(task) == candidates[measured_as], task
    assert recommended_weighting('segmentation') != recommended_weighting('detection')


@pytest.mark.parametrize('task', sorted(TASKS))
def test_the_quality_benchmark_runs_each_tasks_recommendation(tmp_path, task):
    """A run of :data:`RECOMMENDED` is configured exactly as a run of the method it builds on
    that task (the records of that method are runs of the same configuration)."""
    args = method_args(tmp_path, epochs=2)

    def runner_cfg(method):
        cfg = method_cfg(TASKS[task], method, str(tmp_path), args, 3, None, 200).to_dict()
        cfg.pop('experiment_name')  # a time stamp (the visualizer's name too)
        cfg['visualizer'].pop('name')
        return cfg

    assert runner_cfg(RECOMMENDED) == runner_cfg(MEASURED_AS[task])


def test_a_recommended_weighting_no_benchmark_method_builds_is_refused(tmp_path, monkeypatch):
    import mmtkd.benchmark.recommended as recommended
    changed = tmp_path / 'changed_agent.py'
    changed.write_text(f"_base_ = ['{recommended.CREDIT_AGENT_CONFIG}']\n"
                       "credit_agent = dict(update=dict(entropy_coef=0.03))\n")
    monkeypatch.setitem(recommended.SHIPPED_FOR_TASK, 'segmentation', str(changed))
    assert recommended.measured_as('detection') == CREDIT_AGENT
    with pytest.raises(ValueError, match="weighting recommended for 'segmentation'"):
        recommended.measured_as('segmentation')


def test_one_step_in_five_with_five_times_the_passes_takes_every_steps_optimiser_steps():
    """The cheaper segmentation candidate stores a fifth of the steps and passes over them five
    times as often: each update takes as many policy steps as the shipped every-step agent's."""
    candidates = candidate_weightings()
    every_step = candidates[f'{CREDIT_AGENT}_feature_credit_ranked']
    cheaper = candidates[f'{CREDIT_AGENT}_feature_credit_ranked_every5_passes10']

    def policy_steps_per_update(weighting):
        stored = weighting['interval'] // weighting['reward'].get('every', 1)
        return stored * weighting['update']['epochs']

    assert cheaper['reward']['every'] == 5
    assert policy_steps_per_update(cheaper) == policy_steps_per_update(every_step) == 20
    assert dict(cheaper, reward=every_step['reward'], update=every_step['update']) == every_step
    assert dict(cheaper['reward'], every=1) == dict(every_step['reward'], every=1)
    assert dict(cheaper['update'], epochs=2) == every_step['update']
