"""MultiTeacherDistiller: frozen teachers, checkpoints without teachers, losses, bad input."""
import copy

import pytest
import torch
from mmengine.registry import MODELS, DefaultScope
from mmengine.runner.checkpoint import load_checkpoint, save_checkpoint
from mmpretrain.structures import DataSample

from mmtkd.models import MultiTeacherDistiller
from mmtkd.testing import tiny_classification_distiller_cfg, tiny_classifier
from ..conftest import NUM_CLASSES, teacher_configs


def build(teacher_checkpoints, **kwargs):
    cfg = tiny_classification_distiller_cfg(teacher_checkpoints, teacher_configs(), **kwargs)
    return MODELS.build(cfg)


def batch(size=3, num_classes=NUM_CLASSES):
    inputs = torch.randint(0, 255, (size, 3, 32, 32)).float()
    samples = [DataSample().set_gt_label(i % num_classes) for i in range(size)]
    return dict(inputs=list(inputs), data_samples=samples)


def test_teachers_are_frozen_and_stay_in_eval_mode(teacher_checkpoints):
    model = build(teacher_checkpoints)
    model.train()
    assert model.student.training
    for teacher in model.teachers.values():
        assert not teacher.training
        assert all(not m.training for m in teacher.modules())
        assert all(not p.requires_grad for p in teacher.parameters())
    # Teachers must carry the weights of their checkpoints, not a fresh init.
    saved = torch.load(teacher_checkpoints['res18'])['state_dict']
    for key, value in model.teachers['res18'].state_dict().items():
        torch.testing.assert_close(value, saved[key])


def test_train_step_gives_weighted_losses_and_no_teacher_gradients(teacher_checkpoints):
    model = build(teacher_checkpoints)
    model.train()
    data = model.data_preprocessor(batch(), training=True)
    losses = model(**data, mode='loss')
    assert {'loss_cls', 'loss_logit_kd', 'loss_feat_kd'} <= set(losses)
    for name in ('res18', 'res34', 'mbv2'):
        assert losses[f'weight_logit/{name}'].item() == pytest.approx(1 / 3)
        assert losses[f'weight_feat/{name}'].item() == pytest.approx(1 / 3)
    sum(v for k, v in losses.items() if 'loss' in k).backward()
    assert all(p.grad is None for p in model.teachers.parameters())
    assert any(p.grad is not None for p in model.connectors.parameters())
    assert model.student.backbone.conv1.weight.grad.abs().sum() > 0


def test_kd_losses_follow_the_formula(teacher_checkpoints):
    model = build(teacher_checkpoints, alpha=0.5, beta=2.0)
    model.eval()  # deterministic BN for the comparison below
    data = model.data_preprocessor(batch(), training=False)
    inputs, samples = data['inputs'], data['data_samples']
    losses = model(inputs, samples, mode='loss')
    student_logits = model.student(inputs, mode='tensor')
    expected = 0
    for teacher in model.teachers.values():
        teacher_logits = teacher(inputs, mode='tensor')
        expected = expected + model.logit_kd_loss(student_logits, teacher_logits) / 3
    torch.testing.assert_close(losses['loss_logit_kd'], 0.5 * expected)


def test_predict_and_tensor_modes_are_the_students(teacher_checkpoints):
    model = build(teacher_checkpoints)
    model.eval()
    data = model.data_preprocessor(batch(), training=False)
    torch.testing.assert_close(
        model(data['inputs'], mode='tensor'), model.student(data['inputs'], mode='tensor'))
    predictions = model.val_step(batch())
    assert len(predictions) == 3 and predictions[0].pred_score.shape == (NUM_CLASSES, )


def test_checkpoint_has_no_teacher_keys_and_reloads(teacher_checkpoints, tmp_path):
    model = build(teacher_checkpoints)
    path = str(tmp_path / 'distiller.pth')
    save_checkpoint(model.state_dict(), path)
    state = torch.load(path)
    assert not [k for k in state if k.startswith('teachers.')]
    assert [k for k in state if k.startswith('student.')]
    assert [k for k in state if k.startswith('connectors.')]

    other = build(teacher_checkpoints)
    teacher_before = copy.deepcopy(other.teachers.state_dict())
    load_checkpoint(other, path, strict=True)
    for key, value in model.student.state_dict().items():
        torch.testing.assert_close(other.student.state_dict()[key], value)
    for key, value in teacher_before.items():
        torch.testing.assert_close(other.teachers.state_dict()[key], value)
    # torch's own strict loading accepts it too
    other.load_state_dict(state, strict=True)


def test_a_deep_copy_shares_the_teachers_and_copies_the_rest(teacher_checkpoints):
    model = build(teacher_checkpoints)
    model.task._cached_teacher = model.teachers['res18']  # a reference outside the teachers
    clone = copy.deepcopy(model)
    assert clone.teachers is model.teachers and clone.task._cached_teacher is model.teachers.res18
    teacher_storage = {p.data_ptr() for p in model.teachers.parameters()}
    assert {p.data_ptr() for p in clone.teachers.parameters()} == teacher_storage
    for name in ('student', 'connectors', 'weighting'):
        original, copied = getattr(model, name), getattr(clone, name)
        assert copied is not original
        for a, b in zip(original.parameters(), copied.parameters()):
            assert a.data_ptr() != b.data_ptr() and torch.equal(a, b)
    data = clone.data_preprocessor(batch(), training=True)
    torch.testing.assert_close(clone.eval()(data['inputs'], mode='tensor'),
                               model.eval()(data['inputs'], mode='tensor'))
    # the copy trains on its own: a step gives its student gradients, not the original's
    clone.train()
    sum(v for k, v in clone(**data, mode='loss').items() if 'loss' in k).backward()
    assert all(p.grad is None for p in model.student.parameters())
    assert any(p.grad is not None for p in clone.student.parameters())
    assert all(p.grad is None for p in model.teachers.parameters())
    assert 'teachers.res18.backbone.conv1.weight' not in clone.state_dict()


def test_parameters_and_buffers_are_what_it_trains_teachers_still_move_and_save(
        teacher_checkpoints):
    from mmengine.model import ExponentialMovingAverage
    model = build(teacher_checkpoints, save_teachers=True)
    teacher_tensors = set(model.teachers.parameters()) | set(model.teachers.buffers())
    every_tensor = {t for m in model.modules() for t in m.parameters(recurse=False)}
    every_tensor |= {t for m in model.modules() for t in m.buffers(recurse=False)}
    names = [n for n, _ in model.named_parameters()] + [n for n, _ in model.named_buffers()]
    assert teacher_tensors and not any(n.startswith('teachers.') for n in names)
    assert set(model.parameters()) | set(model.buffers()) == every_tensor - teacher_tensors
    assert [n for n, _ in model.named_parameters(prefix='m')][0].startswith('m.student.')
    assert dict(model.named_parameters(recurse=False)) == {}
    assert any(k.startswith('teachers.') for k in model.state_dict())  # save_teachers
    model.double()  # moving goes through the modules: the teachers move too
    assert all(t.dtype == torch.float64 for t in model.teachers.parameters())
    # EMAHook's default averaging (update_buffers=False) leaves the teachers alone
    ema = ExponentialMovingAverage(model, update_buffers=False)
    assert ema.avg_parameters and not any(k.startswith('teachers.') for k in ema.avg_parameters)
    # and so does MMEngine's default optimiser constructor (model.parameters())
    from mmengine.optim import build_optim_wrapper
    optim_wrapper = build_optim_wrapper(model, dict(optimizer=dict(type='SGD', lr=0.1)))
    optimised = {p for group in optim_wrapper.optimizer.param_groups for p in group['params']}
    assert optimised == set(model.parameters()) and not optimised & teacher_tensors


def test_save_teachers_keeps_them(teacher_checkpoints):
    model = build(teacher_checkpoints, save_teachers=True)
    assert [k for k in model.state_dict() if k.startswith('teachers.')]


# ---------------------------------------------------------------- bad input
def test_scoped_types_build_in_their_scope_whatever_scope_is_current(teacher_checkpoints):
    # an mmdet run (or test) left its default scope: 'mmpretrain.ImageClassifier' and its
    # ClsDataPreprocessor still come from mmpretrain
    with DefaultScope.overwrite_default_scope('mmdet'):
        model = build(teacher_checkpoints)
    assert type(model.student.data_preprocessor).__name__ == 'ClsDataPreprocessor'


def test_empty_teacher_dict_is_rejected():
    with pytest.raises(ValueError, match='non-empty'):
        MultiTeacherDistiller(student=tiny_classifier(), teachers={})


def test_missing_checkpoint_names_teacher_and_path(teacher_checkpoints, tmp_path):
    checkpoints = dict(teacher_checkpoints, res34=str(tmp_path / 'nope.pth'))
    with pytest.raises(FileNotFoundError, match="teacher 'res34'.*nope.pth"):
        build(checkpoints)


def test_missing_checkpoint_key_is_rejected():
    with pytest.raises(KeyError, match="teacher 'a'.*checkpoint"):
        MultiTeacherDistiller(
            student=tiny_classifier(), teachers=dict(a=dict(config=tiny_classifier())))


def test_unreadable_checkpoint_names_teacher(teacher_checkpoints, tmp_path):
    broken = tmp_path / 'broken.pth'
    broken.write_bytes(b'not a checkpoint')
    with pytest.raises(RuntimeError, match="teacher 'mbv2'.*could not read.*broken.pth"):
        build(dict(teacher_checkpoints, mbv2=str(broken)))


def test_checkpoint_of_another_architecture_is_rejected(teacher_checkpoints):
    swapped = dict(teacher_checkpoints, res18=teacher_checkpoints['mbv2'])
    with pytest.raises(RuntimeError, match="teacher 'res18'"):
        build(swapped)


def test_class_count_mismatch_names_teacher(tmp_path):
    from mmtkd.testing import save_model_checkpoint
    cfg = tiny_classifier(num_classes=7)
    path = save_model_checkpoint(cfg, str(tmp_path / 't.pth'))
    with pytest.raises(ValueError, match="teacher 'big'.*7 classes.*4.*num_classes"):
        MultiTeacherDistiller(
            student=tiny_classifier(num_classes=4),
            teachers=dict(big=dict(config=cfg, checkpoint=path)))


def test_unknown_weighting_type(teacher_checkpoints):
    with pytest.raises(KeyError, match='weighting.*NoSuchWeighting'):
        build(teacher_checkpoints, weighting=dict(type='mmtkd.NoSuchWeighting'))


def test_fixed_weights_reach_the_kd_and_a_wrong_count_fails_at_build(teacher_checkpoints):
    model = build(
        teacher_checkpoints, weighting=dict(type='mmtkd.FixedWeighting', weights=[0, 0.5, 0.5]))
    model.train()
    losses = model(**model.data_preprocessor(batch(), training=True), mode='loss')
    for name, weight in (('res18', 0.0), ('res34', 0.5), ('mbv2', 0.5)):
        assert losses[f'weight_logit/{name}'].item() == pytest.approx(weight)
    with pytest.raises(ValueError, match="2 weights for 3 teachers.*distiller's teachers"):
        build(teacher_checkpoints, weighting=dict(type='mmtkd.FixedWeighting', weights=[1, 1]))


def test_unsupported_student_type(teacher_checkpoints):
    student = dict(
        type='mmdet.FasterRCNN',
        backbone=dict(type='ResNet', depth=18),
        rpn_head=None,
        roi_head=None,
        train_cfg=None,
        test_cfg=None)
    with pytest.raises(TypeError, match='FasterRCNN is not supported by any task adapter'):
        MultiTeacherDistiller(
            student=student,
            teachers=dict(
                a=dict(config=tiny_classifier(), checkpoint=teacher_checkpoints['res18'])))


def test_teachers_are_invisible_to_ddp(teacher_checkpoints):
    model = build(teacher_checkpoints)
    ignored = set(model._ddp_params_and_buffers_to_ignore)
    teacher_names = {f'teachers.{n}' for n, _ in model.teachers.named_parameters()}
    teacher_names |= {f'teachers.{n}' for n, _ in model.teachers.named_buffers()}
    assert teacher_names and teacher_names == ignored
    assert not any(n.startswith('student.') for n in ignored)


def test_teacher_autocast_returns_fp32_close_to_full_precision(teacher_checkpoints):
    model = build(teacher_checkpoints)
    low = build(teacher_checkpoints, teacher_autocast='bf16')
    low.load_state_dict(model.state_dict())
    model.eval()
    low.eval()
    data = model.data_preprocessor(batch(), training=False)
    full_outs = model.teacher_forwards(data['inputs'], data['data_samples'])
    bf16_outs = low.teacher_forwards(data['inputs'], data['data_samples'])
    for full, half in zip(full_outs, bf16_outs):
        assert half.logits.dtype == torch.float32
        torch.testing.assert_close(half.logits, full.logits, rtol=0.1, atol=0.1)
    with pytest.raises(ValueError, match='teacher_autocast'):
        build(teacher_checkpoints, teacher_autocast='int8')


def test_feature_cosines_are_the_same_stacked_or_one_teacher_at_a_time():
    """The official state's feature cosines: one call over the stacked teachers where their
    embeddings have one width, one per teacher where they differ; the same values."""
    from mmtkd.models.distillers.feature_summaries import cosines
    torch.manual_seed(0)
    students = [torch.randn(4, 8) for _ in range(3)]
    teachers = [torch.randn(4, 8) for _ in range(3)]
    by_pair = torch.stack(
        [torch.nn.functional.cosine_similarity(s, t, dim=1) for s, t in zip(students, teachers)], 1)
    torch.testing.assert_close(cosines(students, teachers), by_pair)
    # one student embedding for every teacher (resize-only adapters): broadcast, not stacked
    shared = [students[0]] * 3
    by_pair = torch.stack(
        [torch.nn.functional.cosine_similarity(shared[0], t, dim=1) for t in teachers], 1)
    torch.testing.assert_close(cosines(shared, teachers), by_pair)
    students[1], teachers[1] = torch.randn(4, 5), torch.randn(4, 5)  # another width
    cos = cosines(students, teachers)
    assert cos.shape == (4, 3)
    torch.testing.assert_close(cos[:, 1],
                               torch.nn.functional.cosine_similarity(students[1], teachers[1]))
