"""Two-stage detectors (Faster / Mask / Cascade R-CNN): the student's stock loss, RoI KD with
the teachers' RoI heads on the student's sampled proposals (checked by hand), RPN KD, mixed
two-stage families in one pool under every weighting, feature-only KD."""
import copy

import pytest
import torch
import torch.nn.functional as F
from mmengine.optim import build_optim_wrapper
from mmengine.registry import MODELS

from mmtkd.benchmark.recommended import BASELINE_WEIGHTINGS, recommended_weighting
from mmtkd.engine import AgentLearner
from mmtkd.models.tasks import DistillOutputs, TwoStageDetectionTask
from mmtkd.testing import save_model_checkpoint, stock_model
from .test_pay_only_for_configured_kd import detection_batch, head_calls

FASTER = 'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py'
CASCADE = 'mmdet::cascade_rcnn/cascade-rcnn_r50_fpn_1x_coco.py'
MASK = 'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py'


def rcnn(config: str, depth: int) -> dict:
    """A stock two-stage detector on a ResNet-18 / 34 (2 classes, 64 RoIs per image)."""
    cfg = stock_model(config)
    cfg.backbone.depth = depth
    cfg.neck.in_channels = [64, 128, 256, 512]
    box_heads = cfg.roi_head.bbox_head
    for head in box_heads if isinstance(box_heads, list) else [box_heads]:
        head.num_classes = 2
    if 'mask_head' in cfg.roi_head:
        cfg.roi_head.mask_head.num_classes = 2
    rcnn_cfgs = cfg.train_cfg.rcnn
    for stage in rcnn_cfgs if isinstance(rcnn_cfgs, list) else [rcnn_cfgs]:
        stage.sampler.num = 64
    return cfg


@pytest.fixture(scope='module')
def teachers(tmp_path_factory) -> dict:
    """A Faster R-CNN R34 and a Cascade R-CNN R18 teacher (another family of RoI head)."""
    folder = tmp_path_factory.mktemp('rcnn_teachers')
    specs = dict(faster_r34=rcnn(FASTER, 34), cascade_r18=rcnn(CASCADE, 18))
    return {
        name: dict(config=cfg, checkpoint=save_model_checkpoint(cfg, str(folder / f'{name}.pth')))
        for name, cfg in specs.items()
    }


def distiller(teachers: dict, student: str = FASTER, **kwargs):
    return MODELS.build(
        dict(
            type='mmtkd.MultiTeacherDistiller',
            student=rcnn(student, 18),
            teachers=teachers,
            **kwargs))


def train_step(model, data=None) -> dict:
    optim = build_optim_wrapper(model, dict(optimizer=dict(type='SGD', lr=0.01)))
    return model.train_step(copy.copy(data or detection_batch()), optim)


WEIGHTINGS = dict(
    BASELINE_WEIGHTINGS,
    mtkd_rl=dict(type='mmtkd.MTKDRLWeighting', warmup_iters=0, normalize_state=True),
    recommended=recommended_weighting())


@pytest.mark.parametrize('method', sorted(WEIGHTINGS))
def test_mixed_two_stage_pool_trains_under_every_weighting(teachers, method):
    model = distiller(teachers, weighting=WEIGHTINGS[method])
    assert isinstance(model.task, TwoStageDetectionTask)
    learner = AgentLearner.attach_to(model)  # as MTKDRLAgentHook does (None for heuristics)
    log = train_step(model)
    if learner is not None:
        learner.take_step()
    # the student's stock losses, and both KD terms
    assert {'loss_rpn_cls', 'loss_rpn_bbox', 'loss_cls', 'loss_bbox'} <= set(log)
    assert log['loss_logit_kd'] > 0 and log['loss_feat_kd'] > 0
    weights = [float(log[f'weight_logit/{name}']) for name in teachers]
    assert all(w > 0 for w in weights) and sum(weights) == pytest.approx(1, abs=1e-5)
    assert all(torch.isfinite(torch.as_tensor(v)).all() for v in log.values())


def test_student_losses_are_its_stock_loss(teachers):
    model = distiller(teachers)
    inputs, samples = model.data_preprocessor(detection_batch(), True).values()
    torch.manual_seed(3)  # the proposal sampler draws at random
    expected = model.student.loss(inputs, copy.deepcopy(samples))
    torch.manual_seed(3)
    losses, out = model.task.student_forward(model.student, inputs, copy.deepcopy(samples))
    assert set(losses) == set(expected)
    for key in expected:
        torch.testing.assert_close(losses[key], expected[key])
    # one record of 64 sampled RoIs per image for the single RoI stage
    (record, ) = out.extras['sampled_rois']
    assert record.rois.shape == (128, 5) and record.cls_score.shape == (128, 3)
    assert record.labels.max() <= 2 and (record.labels == 2).any()  # background is class K


def test_roi_kd_is_the_teachers_head_on_the_students_rois_by_hand(teachers):
    model = distiller(teachers, task=dict(type='TwoStageDetectionTask', rpn_weight=0))
    inputs, samples = model.data_preprocessor(detection_batch(), True).values()
    teacher_outs = model.teacher_forwards(inputs, samples)
    _, student_out = model.task.student_forward(model.student, inputs, samples)
    with torch.no_grad():
        model.task.complete_teacher_outputs(
            list(model.teachers.values()), teacher_outs, student_out)
    (record, ) = student_out.extras['sampled_rois']
    teacher = model.teachers['faster_r34']
    with torch.no_grad():
        feats = teacher.extract_feat(inputs)
        t_cls = teacher.roi_head.bbox_head(
            teacher.roi_head.bbox_roi_extractor(feats[:4], record.rois))[0]
    kl = (F.softmax(t_cls, 1) * (F.log_softmax(t_cls, 1) - F.log_softmax(record.cls_score, 1)))
    per_roi = kl.sum(1)
    image = record.rois[:, 0]
    by_hand = torch.stack([per_roi[image == i].mean() for i in range(2)])
    kd = model.task.logit_kd(model.logit_kd_loss, student_out, teacher_outs[0], samples)
    torch.testing.assert_close(kd, by_hand)
    # a cascade teacher answers with each of its stages on the student's RoIs: one score set
    assert len(teacher_outs[1].logits['roi']) == 1
    assert model.task.logit_summary(teacher_outs[1]).shape == (2, 2)
    assert model.task.entropy(teacher_outs[1]).shape == (2, )


def test_a_teacher_with_the_students_weights_gives_zero_kd(tmp_path):
    student = rcnn(FASTER, 18)
    path = save_model_checkpoint(student, str(tmp_path / 'same.pth'))
    model = distiller(dict(same=dict(config=student, checkpoint=path)))
    model.student.load_state_dict(model.teachers['same'].state_dict())
    model.student.eval()  # same BN statistics use as the teacher's
    inputs, samples = model.data_preprocessor(detection_batch(), True).values()
    teacher_outs = model.teacher_forwards(inputs, samples)
    _, student_out = model.task.student_forward(model.student, inputs, samples)
    with torch.no_grad():
        model.task.complete_teacher_outputs([model.teachers['same']], teacher_outs, student_out)
    kd = model.task.logit_kd(model.logit_kd_loss, student_out, teacher_outs[0], samples)
    torch.testing.assert_close(kd, torch.zeros(2), atol=1e-5, rtol=0)


def test_mask_rcnn_student_keeps_its_mask_loss(teachers):
    model = distiller(teachers, student=MASK)
    data = detection_batch()
    from mmdet.structures.mask import BitmapMasks
    for sample in data['data_samples']:
        mask = torch.zeros(1, 64, 64, dtype=torch.uint8)
        mask[:, 6:50, 4:40] = 1
        sample.gt_instances.masks = BitmapMasks(mask.numpy(), 64, 64)
    log = train_step(model, data)
    assert log['loss_mask'] > 0 and log['loss_logit_kd'] > 0


def test_feature_only_runs_no_teacher_rpn_or_roi_head(teachers):
    model = distiller(teachers, logit_kd_loss=None)
    calls = head_calls(model, 'rpn_head') + head_calls(model, 'roi_head')
    log = train_step(model)
    assert calls == [] and 'loss_logit_kd' not in log and log['loss_feat_kd'] > 0


def test_teacher_with_other_rpn_strides_is_refused(teachers):
    other = rcnn(FASTER, 34)
    other.rpn_head.anchor_generator.strides = [8, 16, 32, 64, 128]
    with pytest.raises(ValueError, match="teacher 'odd'.*RPN anchor strides"):
        distiller(dict(odd=dict(config=other, checkpoint=None)))


def test_rpn_kd_compares_objectness_per_anchor():
    task = TwoStageDetectionTask(roi_weight=0)
    task._rpn.cls_out_channels = 1
    student = [torch.zeros(1, 3, 2, 2)]
    teacher = [torch.zeros(1, 3, 2, 2)]
    teacher[0][0, 1, 0, 0] = 2.0
    out = task.logit_kd(None, DistillOutputs(dict(rpn=student, roi=[]), [], {}),
                        DistillOutputs(dict(rpn=teacher, roi=[]), [], {}), [None])
    p = torch.sigmoid(torch.tensor(2.0))
    expected = (p * torch.log(p / 0.5) + (1 - p) * torch.log((1 - p) / 0.5)) / 12
    torch.testing.assert_close(out, expected[None])
