"""Query-based detectors (DETR, Deformable DETR, DINO): the student's stock loss, query-level
KD on box-matched queries (checked by hand), per-image losses for the weighting, mixed DETR
families in one pool under every weighting, feature-only KD, clear refusals."""
import copy
import os.path as osp

import pytest
import torch
from mmengine.registry import MODELS
from mmengine.runner import Runner

from mmtkd.engine import AgentLearner
from mmtkd.models.tasks import DETRDetectionTask
from mmtkd.models.tasks.detr_detection import match_queries
from mmtkd.testing import save_model_checkpoint, stock_model
from .test_detection import ROOT, tiny_detection_cfg
from .test_pay_only_for_configured_kd import detection_batch, head_calls
from .test_two_stage_detection import WEIGHTINGS, train_step

CONFIGS = dict(
    detr='mmdet::detr/detr_r50_8xb2-150e_coco.py',
    deformable='mmdet::deformable_detr/deformable-detr_r50_16xb2-50e_coco.py',
    dino='mmdet::dino/dino-4scale_r50_8xb2-12e_coco.py',
    conditional='mmdet::conditional_detr/conditional-detr_r50_8xb2-50e_coco.py')
RESNET_CHANNELS = [64, 128, 256, 512]  # ResNet-18 / 34 stage outputs


def query_detector(family: str, depth: int = 18) -> dict:
    """A stock query-based detector, shrunk: ResNet-18 / 34, one encoder and two decoder
    layers, 20 queries (10 denoising queries for DINO), 2 classes."""
    cfg = stock_model(CONFIGS[family])
    cfg.backbone.depth = depth
    cfg.neck.in_channels = [RESNET_CHANNELS[i] for i in cfg.backbone.out_indices]
    cfg.encoder.num_layers, cfg.decoder.num_layers = 1, 2
    cfg.num_queries = 20
    cfg.bbox_head.num_classes = 2
    if 'dn_cfg' in cfg:
        cfg.dn_cfg.group_cfg.num_dn_queries = 10
    return cfg


def teacher_spec(folder, name: str, cfg: dict) -> dict:
    return dict(config=cfg, checkpoint=save_model_checkpoint(cfg, str(folder / f'{name}.pth')))


@pytest.fixture(scope='module')
def teachers(tmp_path_factory) -> dict:
    """A Deformable DETR R34 and a DINO R18 teacher (two sigmoid-head families)."""
    folder = tmp_path_factory.mktemp('detr_teachers')
    return dict(
        deformable_r34=teacher_spec(folder, 'deformable_r34', query_detector('deformable', 34)),
        dino_r18=teacher_spec(folder, 'dino_r18', query_detector('dino')))


def distiller(teachers: dict, student: str = 'dino', **kwargs):
    model = MODELS.build(
        dict(
            type='mmtkd.MultiTeacherDistiller',
            student=query_detector(student),
            teachers=teachers,
            **kwargs))
    # as the runner does before training: Deformable DETR's level embeddings, for one, are
    # allocated uninitialised (the teachers, loaded, are left alone)
    model.init_weights()
    return model


@pytest.mark.parametrize('method', sorted(WEIGHTINGS))
def test_mixed_detr_pool_trains_a_dino_student_under_every_weighting(teachers, method):
    model = distiller(teachers, weighting=WEIGHTINGS[method])
    assert isinstance(model.task, DETRDetectionTask)
    learner = AgentLearner.attach_to(model)  # as MTKDRLAgentHook does (None for heuristics)
    log = train_step(model)
    if learner is not None:
        learner.take_step()
    # the student's stock losses (last layer, denoising, encoder), and both KD terms
    assert {'loss_cls', 'loss_bbox', 'loss_iou', 'dn_loss_cls', 'enc_loss_cls'} <= set(log)
    assert log['loss_logit_kd'] > 0 and log['loss_feat_kd'] > 0
    weights = [float(log[f'weight_logit/{name}']) for name in teachers]
    assert all(w > 0 for w in weights) and sum(weights) == pytest.approx(1, abs=1e-5)
    assert all(torch.isfinite(torch.as_tensor(v)).all() for v in log.values())


def test_student_losses_are_its_stock_loss_and_dn_queries_are_left_out(teachers):
    model = distiller(teachers)
    inputs, samples = model.data_preprocessor(detection_batch(), True).values()
    torch.manual_seed(3)  # the denoising queries are drawn at random
    expected = model.student.loss(inputs, copy.deepcopy(samples))
    torch.manual_seed(3)
    losses, out = model.task.student_forward(model.student, inputs, copy.deepcopy(samples))
    assert set(losses) == set(expected)
    for key in expected:
        torch.testing.assert_close(losses[key], expected[key])
    # the 20 matching queries of the last decoder layer, not the denoising ones
    assert out.logits.shape == (2, 20, 2) and out.extras['boxes'].shape == (2, 20, 4)
    recorded = out.extras['all_layers_cls']  # what the classifier returned, dn queries first
    assert recorded.shape[1] > 20
    torch.testing.assert_close(out.logits, recorded[:, -20:])


def test_query_kd_compares_box_matched_queries_by_hand(teachers):
    model = distiller(teachers)
    inputs, samples = model.data_preprocessor(detection_batch(), True).values()
    teacher_out = model.teacher_forwards(inputs, samples)[0]
    _, student_out = model.task.student_forward(model.student, inputs, samples)
    kd = model.task.logit_kd(model.logit_kd_loss, student_out, teacher_out, samples)
    by_hand = []
    for i in range(2):
        rows, cols = match_queries(student_out.extras['boxes'][i], teacher_out.extras['boxes'][i])
        assert sorted(rows.tolist()) == list(range(20)) == sorted(cols.tolist())
        s, t = student_out.logits[i][rows], teacher_out.logits[i][cols]
        p, q = t.sigmoid(), s.sigmoid()
        kl = p * (p / q).log() + (1 - p) * ((1 - p) / (1 - q)).log()
        by_hand.append(kl.sum(-1).mean())
    torch.testing.assert_close(kd, torch.stack(by_hand))


def test_matching_pairs_queries_by_their_boxes():
    student = torch.tensor([[0.2, 0.2, 0.1, 0.1], [0.7, 0.7, 0.2, 0.2], [0.5, 0.5, 0.9, 0.9]])
    teacher = student[[2, 0, 1]] + 0.01
    rows, cols = match_queries(student, teacher)
    assert dict(zip(rows.tolist(), cols.tolist())) == {0: 1, 1: 2, 2: 0}


def test_per_image_losses_follow_the_ground_truth(teachers):
    model = distiller(teachers, weighting=dict(type='mmtkd.ConfidenceWeighting'))
    inputs, samples = model.data_preprocessor(detection_batch(), True).values()
    outs = model.teacher_forwards(inputs, samples)
    losses, _ = model.task.per_sample_losses(list(model.teachers.values()), outs, samples)
    assert losses.shape == (2, 2) and torch.isfinite(losses).all() and (losses > 0).all()
    # the same image with its box moved elsewhere: another loss for that image only
    moved = copy.deepcopy(samples)
    moved[1].gt_instances.bboxes = torch.tensor([[30., 30., 60., 60.]])
    other, _ = model.task.per_sample_losses(list(model.teachers.values()), outs, moved)
    torch.testing.assert_close(other[0], losses[0])
    assert not torch.allclose(other[1], losses[1])
    assert model.task.logit_summary(outs[0]).shape == (2, 2)
    assert model.task.entropy(outs[0]).shape == (2, )


def test_deformable_detr_student_with_a_dino_teacher(teachers):
    model = distiller(dict(dino_r18=teachers['dino_r18']), student='deformable')
    log = train_step(model)
    assert log['loss_logit_kd'] > 0 and log['loss_feat_kd'] > 0 and 'd0.loss_cls' in log


def test_detr_softmax_student_learns_from_a_detr_teacher(tmp_path):
    teacher = teacher_spec(tmp_path, 'detr_r34', query_detector('detr', 34))
    model = distiller(dict(detr_r34=teacher), student='detr')
    assert model.logit_kd_loss.__class__.__name__ == 'LogitKLDivLoss'  # K classes + background
    log = train_step(model)
    assert log['loss_logit_kd'] > 0 and log['loss_feat_kd'] > 0
    # DETR's one classifier serves every decoder layer: no per-layer scores to take gradients
    inputs, samples = model.data_preprocessor(detection_batch(), True).values()
    _, student_out = model.task.student_forward(model.student, inputs, samples)
    with pytest.raises(ValueError, match="DETR's head classifies all layers at once"):
        model.task.agreement_scores(student_out)


def test_softmax_teacher_for_a_sigmoid_student_teaches_features_only(tmp_path):
    """DETR (softmax: K classes and background) teaching Conditional DETR (sigmoid), both with
    one neck level: their query scores are of different kinds, so the DETR teacher gets feature
    KD only, with one warning naming both kinds; the sigmoid teacher beside it gets both."""
    teachers = dict(
        detr=teacher_spec(tmp_path, 'detr', query_detector('detr')),
        conditional=teacher_spec(tmp_path, 'conditional', query_detector('conditional', 34)))
    with pytest.warns(UserWarning, match="teacher 'detr'.*softmax.*sigmoid.*feature KD only"):
        model = distiller(teachers, student='conditional')
    assert set(model.feature_only_teachers) == {'detr'}
    inputs, samples = model.data_preprocessor(detection_batch(), True).values()
    outs = model.teacher_forwards(inputs, samples)
    assert outs[0].logits is None and outs[1].logits is not None
    _, student_out = model.task.student_forward(model.student, inputs, samples)
    kd = model._logit_kd(student_out, outs, samples)
    assert (kd[:, 0] == 0).all() and (kd[:, 1] > 0).all()
    log = train_step(model)
    assert log['loss_logit_kd'] > 0 and log['loss_feat_kd'] > 0


def test_feature_only_runs_no_teacher_transformer(teachers):
    model = distiller(teachers, logit_kd_loss=None)
    calls = head_calls(model, 'bbox_head') + head_calls(model, 'decoder')
    log = train_step(model)
    assert calls == [] and 'loss_logit_kd' not in log and log['loss_feat_kd'] > 0


def test_a_teacher_without_checkpoint_gets_its_own_initialisation():
    with pytest.warns(UserWarning, match='checkpoint=None'):
        model = distiller(dict(random=dict(config=query_detector('deformable'), checkpoint=None)))
    teacher = model.teachers['random']
    # Deformable DETR's own init: the prior-probability bias of its classifiers, normal level
    # embeddings (allocated uninitialised), not PyTorch's default Linear init
    bias = teacher.bbox_head.cls_branches[0].bias
    torch.testing.assert_close(bias, torch.full_like(bias, -4.59511985013459))
    assert torch.isfinite(teacher.level_embed).all()


SHIPPED_DINO_CONFIG = osp.join(ROOT, 'configs', 'mtkd_rl', 'dino-4scale_r18_3teachers_coco.py')
DINO_BASELINES = dict(aver='AverageWeighting', camkd='ConfidenceWeighting', ebkd='EntropyWeighting')


@pytest.fixture(scope='module')
def coco_runs(tmp_path_factory):
    """One folder for the shipped configs' runs: their random-weight teachers are written once
    (``tiny_detection_cfg`` keeps them beside the runs) and shared."""
    return tmp_path_factory.mktemp('dino_coco')


def test_shipped_dino_config_trains_and_validates_one_iteration(coco_runs):
    """The COCO config of the DETR family, offline: the stock DINO recipe's R18 student with two
    DINO R50 teachers and a Deformable DETR (two-stage, box refinement) teacher, random weights,
    one training iteration and a validation on images of a real COCO file, 256x256: DINO picks
    its 900 queries among the encoder's tokens, which need at least that many."""
    cfg = tiny_detection_cfg(SHIPPED_DINO_CONFIG, str(coco_runs / 'mtkd_rl'), size=256)
    runner = Runner.from_cfg(cfg)
    runner.train()
    assert isinstance(runner.model.task, DETRDetectionTask)
    assert runner.iter == 1
    assert 0 <= runner.message_hub.get_scalar('val/coco/bbox_mAP').current() <= 1
    logged = runner.message_hub.log_scalars
    assert logged['train/loss_logit_kd'].current() > 0
    assert logged['train/loss_feat_kd'].current() > 0
    # the student is the R18 of the stock recipe's model, the three zoo teachers are R50s
    assert runner.model.student.backbone.depth == 18
    assert {t.backbone.depth for t in runner.model.teachers.values()} == {50}


@pytest.mark.parametrize('name', sorted(DINO_BASELINES))
def test_shipped_dino_baselines_build_with_their_weighting(name, coco_runs):
    """The baselines change the weighting only (every weighting trains a DINO student on a mixed
    DETR pool above)."""
    config = osp.join(ROOT, 'configs', 'baselines', f'dino-4scale_r18_3teachers_coco_{name}.py')
    cfg = tiny_detection_cfg(config, str(coco_runs / name), size=256)
    model = MODELS.build(cfg.model)
    assert type(model.weighting).__name__ == DINO_BASELINES[name]
    assert isinstance(model.task, DETRDetectionTask) and set(
        model.teachers) == {'dino_r50', 'dino_r50_improved', 'deformable_r50'}
