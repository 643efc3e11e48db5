"""Detectors of other families in one pool: a teacher the student's adapter cannot read the
predictions of (a two-stage teacher for a one-stage student and the reverse) teaches FPN
features only, with one warning; logit KD and the weighting still see the other teachers."""
import copy

import pytest
from mmengine.optim import build_optim_wrapper
from mmengine.registry import MODELS

from mmtkd.testing import save_model_checkpoint
from mmtkd.testing.compatibility import FAMILIES
from .test_pay_only_for_configured_kd import detection_batch


@pytest.fixture(scope='module')
def checkpoints(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp('mixed_detectors')
    specs = {}
    for name in ('RetinaNet', 'Faster R-CNN', 'DINO'):
        cfg = FAMILIES[name].model()
        path = str(folder / f"{name.replace(' ', '_')}.pth")
        specs[name] = dict(config=cfg, checkpoint=save_model_checkpoint(cfg, path))
    return specs


def distiller(student: str, teachers: dict, **kwargs):
    return MODELS.build(
        dict(
            type='mmtkd.MultiTeacherDistiller',
            student=FAMILIES[student].model(),
            teachers=teachers,
            **kwargs))


def train_step(model) -> dict:
    optim = build_optim_wrapper(model, dict(optimizer=dict(type='SGD', lr=0.01)))
    return model.train_step(copy.copy(detection_batch()), optim)


def test_two_stage_teacher_teaches_a_one_stage_student_features_only(checkpoints):
    teachers = dict(retina=checkpoints['RetinaNet'], faster=checkpoints['Faster R-CNN'])
    with pytest.warns(UserWarning, match="teacher 'faster'.*feature KD only"):
        model = distiller('RetinaNet', teachers)
    assert set(model.feature_only_teachers) == {'faster'}
    rpn_calls = []
    model.teachers['faster'].rpn_head.register_forward_hook(lambda *a: rpn_calls.append(1))
    inputs, samples = model.data_preprocessor(detection_batch(), True).values()
    outs = model.teacher_forwards(inputs, samples)
    assert outs[1].logits is None and len(outs[1].features) == 5 and rpn_calls == []
    _, student_out = model.task.student_forward(model.student, inputs, samples)
    kd = model._logit_kd(student_out, outs, samples)
    assert (kd[:, 0] > 0).all() and (kd[:, 1] == 0).all()  # logit KD to the RetinaNet only
    log = train_step(model)
    assert log['loss_logit_kd'] > 0 and log['loss_feat_kd'] > 0
    assert float(log['weight_feat/faster']) == pytest.approx(0.5)  # the weighting sees both


def test_one_stage_teacher_teaches_a_two_stage_student_features_only(checkpoints):
    with pytest.warns(UserWarning, match="teacher 'retina'.*feature KD only"):
        model = distiller('Faster R-CNN', dict(retina=checkpoints['RetinaNet']))
    log = train_step(model)
    assert log['loss_feat_kd'] > 0 and float(log['loss_logit_kd']) == 0


def test_weightings_that_read_predictions_are_refused_with_such_a_teacher(checkpoints):
    teachers = dict(retina=checkpoints['RetinaNet'], faster=checkpoints['Faster R-CNN'])
    with pytest.raises(
            ValueError, match="ConfidenceWeighting reads \\['teacher_loss'\\].*'faster'"):
        distiller('RetinaNet', teachers, weighting=dict(type='mmtkd.ConfidenceWeighting'))
    with pytest.raises(ValueError, match="'faster' teach feature KD only"):
        distiller('RetinaNet', teachers, feature_kd_loss=None)


def test_teacher_with_other_feature_levels_is_refused(checkpoints):
    # DINO's neck gives 4 levels, RetinaNet's 5: no level-by-level feature KD
    with pytest.raises(ValueError, match="teacher 'dino': 4 feature levels, the student has 5"):
        distiller('RetinaNet', dict(dino=checkpoints['DINO']))
