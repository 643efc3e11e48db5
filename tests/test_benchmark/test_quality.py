"""The quality benchmark: the unreliable teachers are what they claim (permuted class outputs, or
an untrained copy), and the grid runs end to end through real runners on a few real composite
images, resuming instead of redoing and refusing to mix results of other settings."""
import json
import os
import os.path as osp
import subprocess
import sys
import time

import pytest
import torch
from mmengine.config import Config

from mmtkd.benchmark.quality import RECOMMENDED
from mmtkd.benchmark.teacher_pools import (permute_class_outputs, pool_checkpoints,
                                           teacher_fingerprints, unreliable_path,
                                           unreliable_teacher)
from mmtkd.datasets import composite as build_composite
from mmtkd.datasets import fashion_mnist as build_fashion_mnist
from mmtkd.demo.tasks import TASKS
from mmtkd.testing import save_model_checkpoint
from mmtkd.utils.model_builder import build_model

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))

needs_fashion_mnist = pytest.mark.skipif(
    not osp.isdir(build_fashion_mnist.DEBIAN_SOURCE),
    reason='Debian package dataset-fashion-mnist not installed')


def method_args(tmp_path, epochs: int):
    """``quality.py``'s parsed command line as ``method_cfg`` reads it, no option set."""
    from argparse import Namespace
    return Namespace(
        data_root=str(tmp_path),
        teacher_dir=str(tmp_path),
        epochs=epochs,
        train_subset=None,
        lr_per_iteration=False,
        kd_temperature=None,
        logit_kd_weight=None)


def demo_model(name):
    cfg = Config.fromfile(osp.join(ROOT, 'configs', 'demo', f'{name}.py'))
    return cfg.model, cfg.default_scope


@pytest.mark.parametrize('task,name', [('classification', 'fmnist_teacher_res18'),
                                       ('detection', 'composite_teacher_res18'),
                                       ('segmentation', 'compseg_teacher_deeplabv3')])
def test_permuted_teacher_scores_class_c_as_the_original_scores_c_minus_1(task, name, tmp_path):
    model_cfg, scope = demo_model(name)
    src = save_model_checkpoint(
        model_cfg, str(tmp_path / 'teacher.pth'), seed=3, default_scope=scope)
    dst = permute_class_outputs(src, str(tmp_path / 'permuted.pth'), TASKS[task].class_scores,
                                TASKS[task].num_classes)
    original, permuted = (build_model(model_cfg, scope, 'test').eval() for _ in range(2))
    original.load_state_dict(torch.load(src, weights_only=True)['state_dict'])
    permuted.load_state_dict(torch.load(dst, weights_only=True)['state_dict'])
    size = (1, 1, 28, 28) if task == 'classification' else (1, 3, 64, 64)
    x = torch.randn(*size)
    with torch.no_grad():
        if task != 'detection':  # one (B, classes, ...) output
            a, b = original(x, mode='tensor'), permuted(x, mode='tensor')
            groups = [(a, b)]
        else:
            groups = zip(original(x, mode='tensor')[0], permuted(x, mode='tensor')[0])
    classes = TASKS[task].num_classes
    for a, b in groups:
        a = a.reshape(a.shape[0], -1, classes, *a.shape[2:])
        b = b.reshape(b.shape[0], -1, classes, *b.shape[2:])
        torch.testing.assert_close(b, torch.roll(a, 1, dims=2))
        assert not torch.allclose(a, b)
    assert torch.load(src, weights_only=True)['state_dict'] is not None  # source untouched


def fmnist_teacher_and_copy(tmp_path, mode: str):
    """A random Fashion-MNIST res18 teacher's checkpoint, and that teacher and its unreliable
    copy (``mode``) built and loaded in eval mode."""
    model_cfg, scope = demo_model('fmnist_teacher_res18')
    src = save_model_checkpoint(
        model_cfg, str(tmp_path / 'teacher.pth'), seed=3, default_scope=scope)
    dst = unreliable_teacher(TASKS['classification'], 'res18', src, mode, str(tmp_path))
    models = []
    for path in (src, dst):
        model = build_model(model_cfg, scope, 'test').eval()
        model.load_state_dict(torch.load(path, weights_only=True)['state_dict'])
        models.append(model)
    return src, *models


def test_a_teacher_permuted_among_some_classes_is_wrong_on_those_only(tmp_path):
    """``permuted_among_A-B`` (the ``split_permuted`` control): classes A..B rolled among
    themselves, every other class score and the features untouched; a bad range is refused
    before anything is written."""
    from mmtkd.benchmark.teacher_pools import CONTROL_POOLS, permuted_classes
    task = TASKS['classification']
    src, original, permuted = fmnist_teacher_and_copy(tmp_path, 'permuted_among_3-5')
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        a, b = original(x, mode='tensor'), permuted(x, mode='tensor')
    torch.testing.assert_close(b[:, [3, 4, 5]], a[:, [5, 3, 4]])
    kept = [0, 1, 2, 6, 7, 8, 9]
    torch.testing.assert_close(b[:, kept], a[:, kept])
    # the three teachers' ranges cover every class once: one wrong teacher per image
    modes = CONTROL_POOLS['classification']['split_permuted'].values()
    assert sorted(c for mode in modes for c in permuted_classes(mode, 10)) == list(range(10))
    for bad in ('permuted_among_5-3', 'permuted_among_0-10', 'permuted_among_x'):
        with pytest.raises(ValueError, match='classes rolled among'):
            unreliable_teacher(task, 'res18', src, bad, str(tmp_path))
        assert not osp.exists(tmp_path / f'fmnist_res18_{bad}.pth')


def test_uniform_teacher_gives_every_sample_a_uniform_softmax_with_its_features(tmp_path):
    """The ``one_uniform`` control: the class layer is zero, the backbone untouched; it is a
    control pool, runnable by name but no cell of the efficacy targets."""
    from mmtkd.benchmark.teacher_pools import CONTROL_POOLS, POOLS, task_pools
    _, original, uniform = fmnist_teacher_and_copy(tmp_path, 'uniform')
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        probs = uniform(x, mode='tensor').softmax(-1)
        torch.testing.assert_close(probs, torch.full_like(probs, 0.1))
        torch.testing.assert_close(uniform.extract_feat(x), original.extract_feat(x))
        assert not torch.allclose(original(x, mode='tensor').softmax(-1), probs)
    assert 'one_uniform' in task_pools('classification')
    assert 'one_uniform' not in POOLS['classification']
    assert set(CONTROL_POOLS['classification']).isdisjoint(POOLS['classification'])


@pytest.mark.parametrize('task,teacher', [('detection', 'res18'), ('segmentation', 'pspnet')])
def test_untrained_teacher_is_the_same_architecture_with_other_weights(task, teacher, tmp_path):
    task = TASKS[task]
    model_cfg, scope = demo_model(f'{task.prefix}_teacher_{teacher}')
    trained = save_model_checkpoint(
        model_cfg, str(tmp_path / 'teacher.pth'), seed=3, default_scope=scope)
    dst = unreliable_teacher(task, teacher, trained, 'untrained', str(tmp_path))
    assert osp.basename(dst) == f'{task.prefix}_{teacher}_untrained.pth'
    model = build_model(model_cfg, scope, 'test')
    untrained_state = torch.load(dst, weights_only=True)['state_dict']
    model.load_state_dict(untrained_state)  # strict: every key of the architecture, no other
    trained_state = torch.load(trained, weights_only=True)['state_dict']
    conv = next(k for k in trained_state if k.startswith('backbone.') and k.endswith('weight'))
    assert not torch.allclose(untrained_state[conv], trained_state[conv])
    with pytest.raises(ValueError, match='unreliable mode'):
        unreliable_teacher(task, teacher, trained, 'noisy', str(tmp_path))


def test_teacher_fingerprints_name_the_weights_not_the_file(tmp_path):
    model_cfg, scope = demo_model('composite_teacher_res18')
    first = save_model_checkpoint(model_cfg, str(tmp_path / 'a.pth'), seed=3, default_scope=scope)
    again = save_model_checkpoint(model_cfg, str(tmp_path / 'b.pth'), seed=3, default_scope=scope)
    other = save_model_checkpoint(model_cfg, str(tmp_path / 'c.pth'), seed=4, default_scope=scope)
    prints = teacher_fingerprints(dict(a=first, b=again, c=other))
    assert prints['a'] == prints['b'] != prints['c'] and len(prints['a']) == 12
    assert teacher_fingerprints(None) is None


def test_one_class_teacher_cannot_be_permuted(tmp_path):
    model_cfg, scope = demo_model('trees_teacher_res18')
    trained = save_model_checkpoint(
        model_cfg, str(tmp_path / 'teacher.pth'), seed=3, default_scope=scope)
    with pytest.raises(ValueError, match='one class'):
        unreliable_teacher(TASKS['trees'], 'res18', trained, 'permuted', str(tmp_path))
    assert not osp.exists(tmp_path / 'trees_res18_permuted.pth')


@needs_fashion_mnist
def test_lanes_read_the_pool_teachers_their_grid_made(tmp_path):
    from argparse import Namespace
    task = TASKS['classification']
    teacher_dir = tmp_path / 'teachers'
    for teacher in task.teachers:  # a pre-filled teacher cache: nothing is trained
        model_cfg, scope = demo_model(f'fmnist_teacher_{teacher}')
        save_model_checkpoint(
            model_cfg, task.teacher_checkpoint(str(teacher_dir), teacher), default_scope=scope)
        (teacher_dir / f'fmnist_{teacher}.json').write_text('{"accuracy/top1": 0.0}')
    args = Namespace(
        out=str(tmp_path / 'grid'),
        data_root=str(tmp_path),
        teacher_dir=str(teacher_dir),
        pools=['two_permuted'])
    with pytest.raises(FileNotFoundError, match='permuted copy of res18'):
        pool_checkpoints(task, args, make=False)  # a lane before its grid made the pool

    made = pool_checkpoints(task, args)
    copies = [made['two_permuted'][t] for t in ('res18', 'res34')]
    assert copies == [unreliable_path(task, t, 'permuted', args.out) for t in ('res18', 'res34')]
    written = {path: os.stat(path).st_mtime_ns for path in copies}
    time.sleep(0.01)
    assert pool_checkpoints(task, args, make=False) == made
    assert {path: os.stat(path).st_mtime_ns for path in copies} == written  # read, not rewritten


def test_quality_grid_runs_and_resumes(tmp_path):
    fashion = build_fashion_mnist.build(build_fashion_mnist.DEBIAN_SOURCE, str(tmp_path / 'fm'))
    data_root = str(tmp_path / 'composite')
    build_composite.build(data_root, train=8, val=4, fashion_root=fashion)
    teacher_dir = tmp_path / 'teachers'
    for teacher in ('res18', 'res34', 'regnetx'):  # a pre-filled teacher cache
        model_cfg, scope = demo_model(f'composite_teacher_{teacher}')
        save_model_checkpoint(
            model_cfg, str(teacher_dir / f'composite_{teacher}.pth'), default_scope=scope)
        (teacher_dir / f'composite_{teacher}.json').write_text('{"coco/bbox_mAP": 0.0}')
    out, efficacy = str(tmp_path / 'quality'), str(tmp_path / 'agent_efficacy.json')
    command = [
        sys.executable,
        osp.join(ROOT, 'tools', 'benchmark', 'quality.py'), '--task', 'detection', '--methods',
        'aver', RECOMMENDED, '--pools', 'one_untrained', '--seeds', '0', '--train-subset', '8',
        '--data-root', data_root, '--teacher-dir',
        str(teacher_dir), '--out', out, '--efficacy-file', efficacy, '--lanes', '2'
    ]
    first = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    # each run in its own single-threaded process, both into the same (locked) result files
    assert '2 runs in 2 lanes of 1 thread(s)' in first.stdout
    logs = {
        run: open(osp.join(out, 'lanes', f'one_untrained_{run}_seed0.log')).read()
        for run in ('aver', RECOMMENDED)
    }
    assert f'[quality] one_untrained/{RECOMMENDED}/0' in logs[RECOMMENDED]
    runs = {
        (r['pool'], r['method'], r['seed']): r
        for r in json.load(open(osp.join(out, 'results.json')))['runs']
    }
    assert sorted(runs) == [('one_untrained', 'aver', 0), ('one_untrained', RECOMMENDED, 0)]
    aver = runs[('one_untrained', 'aver', 0)]
    assert aver['bad_teachers'] == ['res18'] and aver['metric'] == 'coco/bbox_mAP'
    assert aver['bad_share_logit'] == pytest.approx(1 / 3, abs=1e-3)
    assert aver['bad_share_feat'] == pytest.approx(1 / 3, abs=1e-3)
    # every teacher's share is recorded too (what a clean pool's bad share cannot say)
    assert aver['teacher_shares'] == {
        kind: pytest.approx(dict.fromkeys(('regnetx', 'res18', 'res34'), 1 / 3), abs=1e-3)
        for kind in ('logit', 'feat')
    }
    agent = runs[('one_untrained', RECOMMENDED, 0)]
    assert agent['teacher_shares']['logit']['res18'] == agent['bad_share_logit']
    # and how much KD weight there was in all (weights summing to 1 for both methods)
    for run in (aver, agent):
        assert run['weight_totals'] == dict(logit=pytest.approx(1), feat=pytest.approx(1))
    assert aver['agent_updates'] is None
    # the schedule each run was made with, which merge_efficacy.py pairs by
    assert aver['train_subset'] == 8 and aver['val_images'] is None and aver['epochs'] >= 1
    assert 'lr_per_iteration' not in aver
    assert runs[('one_untrained', RECOMMENDED, 0)]['agent_updates'] >= 1
    # both runs name the same teacher set: the cached clean teachers and the untrained copy
    assert runs[('one_untrained', RECOMMENDED, 0)]['teachers'] == aver['teachers']
    assert aver['teachers'] == teacher_fingerprints({
        'res18':
        osp.join(out, 'composite_res18_untrained.pth'),
        'res34':
        str(teacher_dir / 'composite_res34.pth'),
        'regnetx':
        str(teacher_dir / 'composite_regnetx.pth')
    })
    shared = json.load(open(efficacy))
    assert shared['recommended'] == RECOMMENDED and len(shared['runs']) == 2
    assert f'| {RECOMMENDED} |' in open(osp.join(out, 'quality.md')).read()
    assert osp.getsize(osp.join(out, 'quality.png')) > 0

    second = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert second.returncode == 0, second.stderr[-3000:]
    assert '[quality] one_untrained/' not in second.stdout  # every run was already done
    assert '[quality] one_untrained/aver/0' in logs['aver']
    assert 'lanes' not in second.stdout
    assert len(json.load(open(efficacy))['runs']) == 2  # recorded once, not appended again

    summary = subprocess.run([
        sys.executable,
        osp.join(ROOT, 'tools', 'benchmark', 'quality.py'), '--task', 'detection', '--pools',
        'one_untrained', '--summary-only', '--efficacy-file', efficacy, '--out',
        str(tmp_path / 'summary'), '--val-images', '1200'
    ],
                             cwd=ROOT,
                             capture_output=True,
                             text=True,
                             timeout=900)
    assert summary.returncode == 0, summary.stderr[-3000:]
    assert f'| {RECOMMENDED} | 0.00 (n = 1) |' in summary.stdout
    assert '[quality] one_untrained/' not in summary.stdout  # nothing trained
    assert 'composite detection set (1200 val images' in summary.stdout  # the split's own
    assert '400 val images' not in summary.stdout

    other_subset = [
        '4' if before == '--train-subset' else a for before, a in zip([''] + command, command)
    ]
    other = subprocess.run(other_subset, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert other.returncode != 0
    assert 'holds results of other settings' in other.stderr
    assert "'train_subset': 4" in other.stderr


@needs_fashion_mnist
def test_weight_totals_and_shares_read_the_second_half_of_the_logged_weights(tmp_path):
    """A weighting that drops a teacher without handing its weight on: the shares say who
    got what of the weight, the totals how much weight there was."""
    from mmtkd.benchmark.quality import teacher_shares, weight_totals
    logged = tmp_path / '20261207_000000' / 'vis_data'
    logged.mkdir(parents=True)
    steps = [(1 / 3, 1 / 3, 1 / 3), (1 / 3, 1 / 3, 0.2), (1 / 3, 1 / 3, 0.0), (1 / 3, 0.2, 0.0)]
    with open(logged / 'scalars.json', 'w') as f:
        for step, weights in enumerate(steps, 1):
            record = dict(step=step, loss=1.0)
            for teacher, weight in zip(('a', 'b', 'c'), weights):
                record[f'weight_logit/{teacher}'] = weight
                record[f'weight_feat/{teacher}'] = 1 / 3
            f.write(json.dumps(record) + '\n')
    # second half: the last two steps
    assert weight_totals(str(tmp_path)) == dict(
        logit=pytest.approx((2 / 3 + 1 / 3 + 0.2) / 2), feat=pytest.approx(1))
    shares = teacher_shares(str(tmp_path))
    # step 3: 1/3 and 1/3 of 2/3; step 4: 1/3 and 0.2 of 8/15 (5/8, 3/8)
    assert shares['logit'] == pytest.approx(dict(a=(0.5 + 5 / 8) / 2, b=(0.5 + 3 / 8) / 2, c=0))
    assert shares['feat'] == pytest.approx(dict.fromkeys('abc', 1 / 3))
    assert weight_totals(str(tmp_path / 'nothing_logged')) is None


def test_an_efficacy_file_refuses_runs_that_would_replace_another_settings_runs(tmp_path):
    """A file keeps one run per task, pool, method and seed: a grid of another schedule that
    would replace a stored run is refused before it trains; the same schedule (a re-run) and
    other seeds are not."""
    from argparse import Namespace

    from mmtkd.benchmark.quality import check_efficacy_file
    path = str(tmp_path / 'efficacy.json')
    stored = dict(
        task='classification',
        pool='clean',
        method='aver',
        seed=0,
        value=86.1,
        lr_per_iteration=True,
        epochs=10,
        train_subset=6000,
        val_images=None)
    with open(path, 'w') as f:
        json.dump(dict(recommended=RECOMMENDED, runs=[stored]), f)

    def args(**changes):
        settings = dict(
            efficacy_file=path,
            task='classification',
            pools=['clean'],
            methods=['nokd', 'aver'],
            seeds=[0],
            epochs=10,
            train_subset=6000,
            val_images=None,
            lr_per_iteration=True,
            kd_temperature=None,
            logit_kd_weight=None)
        settings.update(changes)
        return Namespace(**settings)

    check_efficacy_file(args())  # the same settings: a re-run replaces its own run
    check_efficacy_file(args(seeds=[1, 2], train_subset=2000, epochs=30))  # other seeds
    check_efficacy_file(args(methods=['nokd'], train_subset=2000, epochs=30))
    with pytest.raises(
            ValueError,
            match=r"1 of these runs made with other settings.*"
            r"clean/aver/seed 0.*'train_subset': 6000.*own --efficacy-file"):
        check_efficacy_file(args(train_subset=2000, epochs=30))
    with pytest.raises(ValueError, match='own --efficacy-file'):
        check_efficacy_file(args(lr_per_iteration=False))


def test_student_alone_needs_no_teachers(tmp_path):
    fashion = build_fashion_mnist.build(build_fashion_mnist.DEBIAN_SOURCE, str(tmp_path / 'fm'))
    data_root = str(tmp_path / 'composite')
    build_composite.build(data_root, train=8, val=4, fashion_root=fashion)
    teacher_dir, out = tmp_path / 'empty_cache', str(tmp_path / 'quality')
    result = subprocess.run([
        sys.executable,
        osp.join(ROOT, 'tools', 'benchmark', 'quality.py'), '--task', 'detection', '--methods',
        'nokd', '--seeds', '0', '--train-subset', '8', '--data-root', data_root, '--teacher-dir',
        str(teacher_dir), '--out', out
    ],
                            cwd=ROOT,
                            capture_output=True,
                            text=True,
                            timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert 'training teacher' not in result.stdout and not teacher_dir.exists()
    assert [(r['pool'], r['method'])
            for r in json.load(open(osp.join(out, 'results.json')))['runs']] == [('clean', 'nokd')]
    # the student config's own schedule is recorded, not a default of the script
    assert json.load(open(osp.join(out, 'settings.json')))['epochs'] == 2


def test_agent_schedule_is_shortened_unless_the_method_sets_it(tmp_path):
    from mmtkd.benchmark.quality import method_cfg
    args = method_args(tmp_path, epochs=2)
    official = method_cfg(TASKS['detection'], 'mtkd_rl_dynamic', str(tmp_path / 'a'), args, 3, None,
                          200).model.weighting
    assert (official.warmup_iters, official.interval, official.seed) == (50, 20, 3)
    assert 'warmup_epochs' not in official and official.mixing == 'dynamic'
    assert official.normalize_state  # the config's own setting is kept
    cosine = [
        s for s in method_cfg(TASKS['detection'], 'aver', str(tmp_path / 'b'), args, 3, None,
                              200).param_scheduler if s.type == 'CosineAnnealingLR'
    ]
    assert not cosine[0].get('convert_to_iter_based', False)
    args.lr_per_iteration = True  # --lr-per-iteration
    cosine = [
        s for s in method_cfg(TASKS['detection'], 'aver', str(tmp_path / 'c'), args, 3, None,
                              200).param_scheduler if s.type == 'CosineAnnealingLR'
    ]
    assert cosine[0].convert_to_iter_based
    args.lr_per_iteration = False
    ablation = method_cfg(TASKS['detection'], 'mtkd_rl_dynamic_nowarmup', str(tmp_path / 'b'), args,
                          3, None, 200).model.weighting
    assert (ablation.warmup_iters, ablation.interval) == (0, 20)
    reverse = method_cfg(TASKS['detection'], 'aver_warmup', str(tmp_path / 'c'), args, 3, None,
                         200).model.weighting
    assert reverse == dict(type='mmtkd.AverageWeighting', warmup_iters=50)
    plain = method_cfg(TASKS['detection'], 'aver', str(tmp_path / 'd'), args, 3, None, 200)
    assert plain.model.weighting == dict(type='mmtkd.AverageWeighting')


def test_oracle_selection_drops_exactly_the_pools_bad_teachers(tmp_path):
    import pytest

    from mmtkd.benchmark.quality import method_cfg, oracle_weights
    from mmtkd.benchmark.teacher_pools import POOLS
    args = method_args(tmp_path, epochs=1)
    expected = dict(clean=[1 / 3] * 3, one_permuted=[0, 0.5, 0.5], two_permuted=[0, 0, 1])
    for pool, weights in expected.items():
        cfg = method_cfg(TASKS['classification'], 'oracle_selection', str(tmp_path / pool), args, 0,
                         None, 100, POOLS['classification'][pool])
        assert list(cfg.model.teachers) == ['res18', 'res34', 'regnetx']
        assert cfg.model.weighting == dict(type='mmtkd.FixedWeighting', weights=weights)
    aver = method_cfg(TASKS['classification'], 'aver_without_bad', str(tmp_path / 'a'), args, 0,
                      None, 100, POOLS['classification']['two_permuted'])
    assert aver.model.weighting.weights == [0, 0, 1 / 3]  # AVER's weight, the bad terms gone
    with pytest.raises(ValueError, match='some, not all'):
        oracle_weights(['a', 'b'], ['a', 'b'])
    with pytest.raises(ValueError, match='some, not all'):
        oracle_weights(['a', 'b'], ['c'])


def test_kd_temperature_is_every_kd_methods_and_only_its_logit_kds(tmp_path):
    from mmtkd.benchmark.quality import method_cfg
    args = method_args(tmp_path, epochs=1)

    def model(method):
        return method_cfg(TASKS['classification'], method, str(tmp_path / method), args, 0, None,
                          100).model

    assert model('aver').logit_kd_loss.temperature == 4.0  # the demo config's own
    args.kd_temperature = 8.0
    for method in ('aver', 'camkd', 'oracle_selection'):
        kd_model = model(method)
        assert kd_model.logit_kd_loss == dict(type='mmtkd.LogitKLDivLoss', temperature=8.0)
    assert 'logit_kd_loss' not in model('nokd')


def test_logit_kd_weight_is_every_kd_methods_alpha_under_the_kd_scales(tmp_path):
    from mmtkd.benchmark.quality import CREDIT_AGENT, method_cfg
    args = method_args(tmp_path, epochs=1)

    def model(method):
        return method_cfg(TASKS['classification'], method, str(tmp_path / method), args, 0, None,
                          100).model

    config_alpha, config_beta = model('aver').alpha, model('aver').beta
    args.logit_kd_weight = 4.0
    assert config_alpha != 4.0
    for method in ('aver', 'camkd', 'ebkd', 'oracle_selection', CREDIT_AGENT):
        kd_model = model(method)
        assert (kd_model.alpha, kd_model.beta) == (4.0, config_beta), method
    assert model('aver_x2kd').alpha == 8.0  # a KD_SCALES method scales the setting's weight
    assert 'alpha' not in model('nokd')


def test_kd_scaled_methods_change_only_the_kd_weights(tmp_path):
    """``aver_x2kd`` is AVER with alpha and beta doubled (EBKD's sum of weights, M - 1 = 2);
    ``ebkd_halfkd`` is EBKD at a sum of 1; nothing else of the config differs."""
    from mmtkd.benchmark.quality import CREDIT_AGENT, method_cfg
    args = method_args(tmp_path, epochs=2)

    def model(method):
        return method_cfg(TASKS['detection'], method, str(tmp_path / method), args, 3, None,
                          200).model

    from mmtkd.benchmark.quality import KD_SCALES
    assert {
        'aver_x2kd', f'{CREDIT_AGENT}_x2kd', 'ebkd_halfkd', 'aver_x067logit', 'aver_x069kd',
        'aver_x039kd'
    } <= set(KD_SCALES)
    for scaled, (base, alpha_factor, beta_factor) in KD_SCALES.items():
        scaled_model, base_model = model(scaled), model(base)
        assert (scaled_model.alpha, scaled_model.beta) == (base_model.alpha * alpha_factor,
                                                           base_model.beta * beta_factor)
        assert scaled_model.weighting == base_model.weighting
        assert scaled_model.student == base_model.student


@pytest.mark.parametrize('task', ['classification', 'detection'])
def test_lr_per_iteration_anneals_the_cosine_within_a_one_epoch_run(task, tmp_path):
    """The demo's epoch-based cosine holds its first LR through a one-epoch run (stepped at
    epoch ends only); ``--lr-per-iteration`` (MMEngine's ``convert_to_iter_based``) steps it
    every iteration, down to nearly zero at the run's end, built by MMEngine's registry as the
    runner builds it."""
    from mmengine.registry import PARAM_SCHEDULERS

    from mmtkd.demo.tasks import anneal_per_iteration, load_cfg
    demo = TASKS[task]
    cfg = load_cfg(demo, 'student_nokd', str(tmp_path), demo.data_root, str(tmp_path), epochs=1)
    anneal_per_iteration(cfg)
    param = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.SGD([param], lr=0.1)
    schedulers = cfg.param_scheduler
    schedulers = [
        PARAM_SCHEDULERS.build(s, default_args=dict(optimizer=optimizer, epoch_length=200))
        for s in (schedulers if isinstance(schedulers, list) else [schedulers])
    ]
    assert all(not s.by_epoch for s in schedulers)
    lrs = []
    for _ in range(200):
        lrs.append(optimizer.param_groups[0]['lr'])
        optimizer.step()
        for scheduler in schedulers:
            scheduler.step()
    assert lrs[-1] < 0.01 * max(lrs)
