"""Pay only for the KD you configure: ``logit_kd_loss=None`` runs the teachers without their
heads (unless the weighting reads their predictions), ``feature_kd_loss=None`` builds no
connectors; counted with the forward hooks of the real heads and the dispatched operators."""
import pytest
import torch
from mmengine.optim import build_optim_wrapper
from mmengine.registry import MODELS

from mmtkd.benchmark.host_ops import count_ops
from mmtkd.testing import save_model_checkpoint, stock_model
from .test_distiller import batch, build


def retinanet(depth: int) -> dict:
    cfg = stock_model('mmdet::retinanet/retinanet_r18_fpn_1x_coco.py')
    cfg.backbone.depth = depth
    cfg.bbox_head.num_classes = 2
    return cfg


@pytest.fixture(scope='module')
def retinanet_teacher(tmp_path_factory) -> str:
    return save_model_checkpoint(retinanet(34), str(tmp_path_factory.mktemp('t') / 'r34.pth'))


def detection_distiller(checkpoint: str, names=('r34', ), **kwargs):
    """A RetinaNet-R18 student with one RetinaNet-R34 teacher per name, all from
    ``checkpoint``."""
    return MODELS.build(
        dict(
            type='mmtkd.MultiTeacherDistiller',
            student=retinanet(18),
            teachers={name: dict(config=retinanet(34), checkpoint=checkpoint)
                      for name in names},
            **kwargs))


def detection_batch(size: int = 64) -> dict:
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData
    samples = []
    for _ in range(2):
        sample = DetDataSample(metainfo=dict(img_shape=(size, size), ori_shape=(size, size)))
        sample.gt_instances = InstanceData(
            bboxes=torch.tensor([[4., 6., 40., 50.]]), labels=torch.tensor([1]))
        samples.append(sample)
    return dict(inputs=[torch.randint(0, 255, (3, size, size)).float()] * 2, data_samples=samples)


def head_calls(model, head_name: str) -> list:
    """Forward calls of each teacher's head (one entry per call)."""
    calls = []
    for teacher in model.teachers.values():
        getattr(teacher, head_name).register_forward_hook(lambda *args: calls.append(1))
    return calls


def train_step(model, data: dict) -> dict:
    optim = build_optim_wrapper(model, dict(optimizer=dict(type='SGD', lr=0.01)))
    return model.train_step(dict(data), optim)


def test_feature_only_detection_runs_no_teacher_head_and_fewer_kernels(retinanet_teacher):
    counts = {}
    for name, logit_loss in (('feature_only', None), ('feature_and_logit', 'task_default')):
        model = detection_distiller(retinanet_teacher, logit_kd_loss=logit_loss)
        calls = head_calls(model, 'bbox_head')
        data = detection_batch()
        train_step(model, data)  # warm-up
        calls.clear()
        counts[name] = count_ops(lambda: train_step(model, data))['kernels']
        log = train_step(model, data)
        assert ('loss_logit_kd' in log) == (logit_loss is not None)
        assert log['loss_feat_kd'] > 0
        assert len(calls) == (0 if logit_loss is None else 2)
    # the feature-only step saves at least the teacher's head forward (and the logit KD)
    teacher = next(iter(model.teachers.values()))
    with torch.no_grad():
        features = teacher.extract_feat(torch.zeros(2, 3, 64, 64))
        head_kernels = count_ops(lambda: teacher.bbox_head(features))['kernels']
    assert head_kernels > 0
    assert counts['feature_and_logit'] - counts['feature_only'] > head_kernels, (counts,
                                                                                 head_kernels)


def test_weighting_that_reads_teacher_losses_still_runs_the_heads(retinanet_teacher):
    model = detection_distiller(
        retinanet_teacher, logit_kd_loss=None, weighting=dict(type='mmtkd.ConfidenceWeighting'))
    calls = head_calls(model, 'bbox_head')
    log = train_step(model, detection_batch())
    assert len(calls) == 1 and 'loss_logit_kd' not in log
    assert torch.isfinite(log['loss_feat_kd'])


@pytest.mark.parametrize('adapt_equal_channels, poolings', [(False, 1), (True, 2)])
def test_teachers_given_the_same_student_features_share_one_pooling(retinanet_teacher, monkeypatch,
                                                                    adapt_equal_channels, poolings):
    """The official state's feature cosines pool the adapted student features once per
    distinct adaptation: two teachers with resize-only adapters (the FPN widths agree) share
    one pooling, two with their own 1x1 adapters pool twice; the cosines are those of each
    pair either way."""
    from mmtkd.models.distillers import multi_teacher_distiller as module
    model = detection_distiller(
        retinanet_teacher, ('a', 'b'),
        weighting=dict(type='mmtkd.MTKDRLWeighting'),
        adapt_equal_channels=adapt_equal_channels)
    data = model.data_preprocessor(detection_batch(), True)
    student_out = module.DistillOutputs(None,
                                        model.task.extract_features(model.student, data['inputs']))
    teacher_outs = [
        model.teacher_forward(t, data['inputs'], data['data_samples'])
        for t in model.teachers.values()
    ]
    embeddings = module.pooled_each([t.features for t in teacher_outs])
    calls = []
    pooled = module.pooled
    monkeypatch.setattr(module, 'pooled', lambda levels: calls.append(1) or pooled(levels))
    _, cosines = model._feature_kd(student_out, teacher_outs, embeddings)
    assert len(calls) == poolings
    for m, (adapters, embedding) in enumerate(zip(model.connectors.values(), embeddings)):
        adapted = [
            adapt(s, t.shape[-2:])
            for adapt, s, t in zip(adapters, student_out.features, teacher_outs[m].features)
        ]
        by_hand = torch.nn.functional.cosine_similarity(pooled(adapted), embedding, dim=1)
        torch.testing.assert_close(cosines[:, m], by_hand)
        torch.testing.assert_close(embedding, pooled(teacher_outs[m].features))


def test_feature_only_classification_runs_no_teacher_head(teacher_checkpoints):
    model = build(teacher_checkpoints, logit_kd_loss=None)
    calls = head_calls(model, 'head')
    before = [p.detach().clone() for p in model.connectors.parameters()]
    log = train_step(model, batch())
    assert calls == [] and 'loss_logit_kd' not in log and log['loss_feat_kd'] > 0
    # the feature terms train the connectors
    after = list(model.connectors.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, after))


def test_logit_only_builds_no_connectors(teacher_checkpoints):
    model = build(teacher_checkpoints, feature_kd_loss=None)
    calls = head_calls(model, 'head')
    log = train_step(model, batch())
    assert len(model.connectors) == 0 and 'loss_feat_kd' not in log
    assert len(calls) == 3 and log['loss_logit_kd'] > 0


def test_nothing_to_distil_is_refused(teacher_checkpoints):
    with pytest.raises(ValueError, match='nothing to distil'):
        build(teacher_checkpoints, logit_kd_loss=None, feature_kd_loss=None)


def test_unknown_logit_loss_string_is_refused(teacher_checkpoints):
    with pytest.raises(ValueError, match="'task_default'"):
        build(teacher_checkpoints, logit_kd_loss='kl')


def test_gradient_agreement_reward_without_logit_kd_is_refused(teacher_checkpoints):
    from mmtkd.benchmark.recommended import recommended_weighting
    with pytest.raises(ValueError, match='task_agreement.*logit_kd_loss=None'):
        build(teacher_checkpoints, logit_kd_loss=None, weighting=recommended_weighting())
