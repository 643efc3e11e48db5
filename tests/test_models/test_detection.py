"""Detection: per-image sigmoid KD by hand, shipped RetinaNet configs offline (train + val
iteration on a real COCO file), student export, and bad input."""
import copy
import math
import os.path as osp

import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.hub import get_config
from mmengine.registry import MODELS
from mmengine.runner import Runner
from mmengine.testing import RunnerTestCase

from mmtkd.models.losses import SigmoidKLDivLoss
from mmtkd.models.tasks import DetectionTask, DistillOutputs
from mmtkd.testing import (isolated_run_cfg, offline_distiller_cfg, stock_model, strip_pretrained,
                           write_coco_detection)
from mmtkd.utils import export_student_file

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
HEADLINE = osp.join(ROOT, 'configs', 'mtkd_rl', 'retinanet_r18_3teachers.py')
DETECTION_CONFIGS = [HEADLINE, HEADLINE.replace('.py', '_credit.py')] + [
    osp.join(ROOT, 'configs', 'baselines', f'retinanet_r18_3teachers_{name}.py')
    for name in ('aver', 'camkd', 'ebkd')
] + [osp.join(ROOT, 'configs', 'mtkd_rl', 'faster-rcnn_r50_3teachers_coco.py')]


def bernoulli_kl(p, q):
    return p * math.log(p / q) + (1 - p) * math.log((1 - p) / (1 - q))


def test_per_image_sigmoid_kd_by_hand():
    task = DetectionTask()
    task.cls_out_channels = 2
    # one level, 1 anchor x 2 classes, 1x2 positions; image 0 differs at one score only
    student = torch.zeros(2, 2, 1, 2)
    teacher = torch.zeros(2, 2, 1, 2)
    teacher[0, 1, 0, 0] = math.log(3)  # sigmoid -> 0.75 vs student 0.5
    kd = task.logit_kd(
        SigmoidKLDivLoss(temperature=1.0), DistillOutputs([student], []),
        DistillOutputs([teacher], []), None)
    # per image: sum over classes, mean over the 2 anchor positions
    torch.testing.assert_close(kd, torch.tensor([bernoulli_kl(0.75, 0.5) / 2, 0.0]))
    task.foreground_threshold = 0.6  # only the anchor whose teacher max score is 0.75 counts
    kd = task.logit_kd(
        SigmoidKLDivLoss(temperature=1.0), DistillOutputs([student], []),
        DistillOutputs([teacher], []), None)
    torch.testing.assert_close(kd, torch.tensor([bernoulli_kl(0.75, 0.5), 0.0]))


def test_sigmoid_kl_temperature():
    loss = SigmoidKLDivLoss(temperature=2.0)
    value = loss(torch.zeros(1), torch.tensor([2 * math.log(3)]), reduction_override='none')
    torch.testing.assert_close(value, torch.tensor([4 * bernoulli_kl(0.75, 0.5)]))


def tiny_detection_cfg(config: str, work: str, size: int = 64) -> Config:
    """A shipped detection config made offline, on ``size`` x ``size`` images of a real COCO
    file."""
    cfg = Config.fromfile(config)
    offline_distiller_cfg(cfg, osp.join(work, '..', 'teachers'))
    data_root = osp.join(work, 'data')
    ann = write_coco_detection(data_root, num_images=2, empty_images=(1, ))
    pipeline = [
        dict(type='LoadImageFromFile'),
        dict(type='LoadAnnotations', with_bbox=True),
        dict(type='Resize', scale=(size, size), keep_ratio=True),
        dict(type='PackDetInputs')
    ]
    test_pipeline = [
        dict(type='LoadImageFromFile'),
        dict(type='Resize', scale=(size, size), keep_ratio=True),
        dict(type='LoadAnnotations', with_bbox=True),
        dict(
            type='PackDetInputs',
            meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor'))
    ]
    for loader, pipe in ((cfg.train_dataloader, pipeline), (cfg.val_dataloader, test_pipeline)):
        loader.batch_size = 2
        loader.num_workers = 0
        loader.persistent_workers = False
        loader.dataset.update(
            data_root=data_root,
            ann_file=ann,
            data_prefix=dict(img='images/'),
            pipeline=pipe,
            filter_cfg=None)
    cfg.train_dataloader.batch_sampler = None
    cfg.test_dataloader = cfg.val_dataloader
    cfg.val_evaluator.ann_file = cfg.test_evaluator.ann_file = ann
    cfg.train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=1, val_interval=1)
    # random weights score below the stock 0.05 threshold; keep every box so COCO mAP exists
    test_cfg = cfg.model.student.test_cfg
    (test_cfg.rcnn if 'rcnn' in test_cfg else test_cfg).score_thr = 0.0
    isolated_run_cfg(cfg, work)
    return cfg


class TestShippedDetectionConfigs(RunnerTestCase):

    def test_every_config_trains_and_validates_one_iteration(self):
        for i, config in enumerate(DETECTION_CONFIGS):
            with self.subTest(config=osp.basename(config)):
                cfg = tiny_detection_cfg(config, osp.join(self.temp_dir.name, f'run{i}'))
                runner = Runner.from_cfg(cfg)
                runner.train()
                assert runner.iter == 1
                assert 0 <= runner.message_hub.get_scalar('val/coco/bbox_mAP').current() <= 1
                for teacher in runner.model.teachers.values():
                    assert not teacher.training

    def test_exported_student_reproduces_the_distiller(self):
        cfg = tiny_detection_cfg(HEADLINE, osp.join(self.temp_dir.name, 'export'))
        runner = Runner.from_cfg(cfg)
        runner.train()
        exported = osp.join(cfg.work_dir, 'epoch_1_student.pth')
        assert osp.isfile(exported), 'StudentExportHook must write a student-only checkpoint'
        manual = export_student_file(
            osp.join(cfg.work_dir, 'epoch_1.pth'), osp.join(cfg.work_dir, 'manual.pth'))
        stock = get_config('mmdet::retinanet/retinanet_r18_fpn_1x_coco.py')
        strip_pretrained(stock.model)
        stock.model.test_cfg.score_thr = 0.0  # as in tiny_detection_cfg
        for path in (exported, manual):
            from mmdet.apis import init_detector
            detector = init_detector(stock, path, device='cpu')
            batch = next(iter(runner.val_dataloader))
            distiller = runner.model.eval()
            with torch.no_grad():
                expected = distiller.val_step(copy.deepcopy(batch))
                got = detector.val_step(copy.deepcopy(batch))
            for a, b in zip(expected, got):
                torch.testing.assert_close(a.pred_instances.bboxes, b.pred_instances.bboxes)
                torch.testing.assert_close(a.pred_instances.scores, b.pred_instances.scores)


# ---------------------------------------------------------------- bad input
def retinanet(depth=18, **head):
    cfg = stock_model('mmdet::retinanet/retinanet_r18_fpn_1x_coco.py')
    cfg.backbone.depth = depth
    cfg.bbox_head.update(head)
    cfg.bbox_head.num_classes = head.get('num_classes', 2)
    return cfg


def distiller(tmp_path, teacher_cfg):
    from mmtkd.testing import save_model_checkpoint
    path = save_model_checkpoint(teacher_cfg, str(tmp_path / 't.pth'))
    return MODELS.build(
        dict(
            type='mmtkd.MultiTeacherDistiller',
            student=retinanet(),
            teachers=dict(t=dict(config=teacher_cfg, checkpoint=path))))


def test_teacher_with_other_class_count(tmp_path):
    with pytest.raises(ValueError, match="teacher 't'.*3 classes.*2"):
        distiller(tmp_path, retinanet(num_classes=3))


def one_prior_detector(config: str) -> dict:
    cfg = stock_model(config)
    cfg.backbone.update(depth=18, norm_cfg=dict(type='BN', requires_grad=True))
    cfg.neck.in_channels = [64, 128, 256, 512]
    cfg.bbox_head.num_classes = 2
    return cfg


@pytest.mark.parametrize(
    'family', ['fcos/fcos_r50-caffe_fpn_gn-head_1x_coco.py', 'atss/atss_r50_fpn_1x_coco.py'])
def test_one_prior_teacher_teaches_a_nine_anchor_student_per_location(tmp_path, family):
    """An FCOS / ATSS teacher (one prior per location) in a RetinaNet student's pool (nine):
    scores are compared per location (each class's best prior), features per FPN level."""
    teacher = one_prior_detector(f'mmdet::{family}')
    model = distiller(tmp_path, teacher).train()
    inputs, samples = boxes_batch()
    losses = model(inputs, samples, mode='loss')
    assert losses['loss_logit_kd'] > 0 and losses['loss_feat_kd'] > 0
    total, _ = model.parse_losses(losses)
    total.backward()
    head = model.student.bbox_head.retina_cls.weight.grad
    assert head is not None and head.abs().sum() > 0
    # the KD is the loss between per-location maxima over each model's priors, by hand
    task = model.task
    s_out = task.student_forward(model.student, inputs, samples)[1]
    t_out = task.teacher_forward(model.teachers['t'], inputs, samples)
    by_hand = 0
    for s, t in zip(s_out.logits, t_out.logits):
        s = s.view(3, 9, 2, *s.shape[2:]).amax(1)
        by_hand = by_hand + model.logit_kd_loss(s, t, reduction_override='none').flatten(1).sum(1)
    cells = sum(s[0, 0].numel() for s in s_out.logits)
    torch.testing.assert_close(
        task.logit_kd(model.logit_kd_loss, s_out, t_out, samples), by_hand / cells)


def test_teacher_that_is_not_a_detector(tmp_path):
    from mmtkd.testing import tiny_classifier
    with pytest.raises(TypeError, match="teacher 't'.*ImageClassifier cannot teach"):
        distiller(tmp_path, tiny_classifier(num_classes=2))


def test_softmax_head_teacher_is_refused_with_the_reason():
    # another kind of detector could teach features only, but not over other neck levels
    ssd = get_config('mmdet::ssd/ssdlite_mobilenetv2-scratch_8xb24-600e_coco.py').model
    strip_pretrained(ssd)
    ssd.bbox_head.num_classes = 2
    with pytest.raises(
            ValueError,
            match="teacher 'ssd': 6 feature levels.*features only.*SSDHead classifies with a "
            'softmax'):
        MODELS.build(
            dict(
                type='mmtkd.MultiTeacherDistiller',
                student=retinanet(),
                teachers=dict(ssd=dict(config=dict(ssd, _scope_='mmdet'), checkpoint=None))))


def test_unknown_scoped_type_names_the_teacher():
    with pytest.raises(KeyError, match="teacher 'x'.*'mmdet.NoSuchDetector'"):
        MODELS.build(
            dict(
                type='mmtkd.MultiTeacherDistiller',
                student=retinanet(),
                teachers=dict(x=dict(config=dict(type='mmdet.NoSuchDetector'), checkpoint=None))))


def test_unreachable_checkpoint_url_names_it():
    url = 'http://127.0.0.1:9/retinanet_r50.pth'
    with pytest.raises(RuntimeError, match="teacher 'r50'.*could not fetch.*127.0.0.1:9"):
        MODELS.build(
            dict(
                type='mmtkd.MultiTeacherDistiller',
                student=retinanet(),
                teachers=dict(r50=dict(config=retinanet(50), checkpoint=url))))


def test_image_without_boxes_gives_finite_teacher_performance(tmp_path):
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData
    model = distiller(tmp_path, retinanet())
    samples = []
    for n_boxes in (0, 1):
        sample = DetDataSample(
            metainfo=dict(img_shape=(64, 64), pad_shape=(64, 64), batch_input_shape=(64, 64)))
        sample.gt_instances = InstanceData(
            bboxes=torch.tensor([[4.0, 4.0, 40.0, 40.0]])[:n_boxes],
            labels=torch.tensor([1])[:n_boxes])
        samples.append(sample)
    inputs = torch.rand(2, 3, 64, 64)
    teacher = model.teachers['t']
    with torch.no_grad():
        out = model.task.teacher_forward(teacher, inputs, samples)
        loss = model.task.per_sample_loss(teacher, out, samples)
    assert loss.shape == (2, ) and torch.isfinite(loss).all()
    model.train()
    losses = model(inputs, samples, mode='loss')
    for key, value in losses.items():
        values = value if isinstance(value, list) else [value]  # mmdet: one loss per level
        assert all(torch.isfinite(v).all() for v in values), key


def test_entropy_and_logit_summary_by_hand():
    task = DetectionTask()
    task.cls_out_channels = 2
    scores = torch.zeros(1, 4, 1, 3)  # 2 anchors x 2 classes, 1x3 positions, all p = 0.5
    scores[0, 3, 0, 2] = math.log(3)  # anchor 1, class 1 at position 2: p = 0.75
    outputs = DistillOutputs([scores], [])
    entropy_075 = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    expected = (11 * math.log(2) + entropy_075) / 6  # 12 scores over 6 anchors
    torch.testing.assert_close(task.entropy(outputs), torch.tensor([expected]))
    torch.testing.assert_close(task.logit_summary(outputs), torch.tensor([[0.5, 0.75]]))


def test_entropy_over_levels_is_the_written_out_formula_in_five_kernels():
    """Two levels, confident and unsure scores (+-30 included): the fused entropy equals
    ``softplus(x) - x sigmoid(x)`` summed over classes and averaged over anchors, per image, in
    five operators whatever the levels (the levels concatenated, the sigmoid, the fused entropy,
    the sum and the mean; six per level written out)."""
    from mmtkd.benchmark.host_ops import count_ops
    task = DetectionTask()
    task.cls_out_channels = 3
    levels = [torch.randn(2, 2 * 3, 4, 4) * 5, torch.randn(2, 2 * 3, 2, 2)]
    levels[0][0, 0, 0, 0], levels[0][1, 1, 0, 0] = 30.0, -30.0
    outputs = DistillOutputs(levels, [])
    by_hand = sum(
        (F.softplus(s) - s * s.sigmoid()).flatten(1).sum(1) for s in levels) / ((16 + 4) * 2)
    torch.testing.assert_close(task.entropy(outputs), by_hand)
    assert count_ops(lambda: task.entropy(outputs))['kernels'] == 5


def test_logit_summaries_of_every_teacher_at_once_equal_each_alone():
    """Three teachers' per-class max scores over two levels: one stack, max and sigmoid for
    all of them (6 kernels for three teachers; 8 each one at a time), the same values as each
    teacher's :meth:`logit_summary`, and that the per-class max over anchors, positions and
    levels written out."""
    from mmtkd.benchmark.host_ops import count_ops
    task = DetectionTask()
    task.cls_out_channels = 3
    torch.manual_seed(0)
    teachers = [
        DistillOutputs(
            [torch.randn(2, 2 * 3, 4, 4), torch.randn(2, 2 * 3, 2, 2)], []) for _ in range(3)
    ]
    summaries = task.logit_summaries(teachers)
    for teacher, summary in zip(teachers, summaries):
        torch.testing.assert_close(summary, task.logit_summary(teacher))
        by_hand = torch.cat(
            [s.view(2, 2, 3, -1).permute(0, 1, 3, 2).reshape(2, -1, 3) for s in teacher.logits],
            1).amax(1).sigmoid()
        torch.testing.assert_close(summary, by_hand)
    assert count_ops(lambda: task.logit_summaries(teachers))['kernels'] == 2 * 3 + 3
    assert count_ops(lambda: task.logit_summary(teachers[0]))['kernels'] == 2 + 3


def boxes_batch(n_boxes=(0, 1, 3), size=96):
    """Data samples with 0, 1 and 3 boxes (an image without boxes included)."""
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData
    generator = torch.Generator().manual_seed(0)
    samples = []
    for n in n_boxes:
        sample = DetDataSample(
            metainfo=dict(
                img_shape=(size, size), pad_shape=(size, size), batch_input_shape=(size, size)))
        corners = torch.rand(n, 2, generator=generator) * size * 0.6
        sides = 12 + torch.rand(n, 2, generator=generator) * size * 0.4
        sample.gt_instances = InstanceData(
            bboxes=torch.cat([corners, corners + sides], 1),
            labels=torch.randint(0, 2, (n, ), generator=generator))
        samples.append(sample)
    return torch.rand(len(n_boxes), 3, size, size, generator=generator), samples


# 3 images of 96x96: levels of 12, 6, 3, 2 and 1 cells, 194 cells x 9 anchors x 2 classes per
# image; loss calls per model, by how many images one call may cover
@pytest.mark.parametrize('batching,images_per_call,calls', [('image', 1, 3), ('batch', 3, 1),
                                                            ('batch', 2, 2)])
def test_shared_anchor_targets_give_each_models_own_per_image_loss(tmp_path, monkeypatch, batching,
                                                                   images_per_call, calls):
    model = distiller(tmp_path, retinanet(34))
    task, teacher = model.task, model.teachers['t']
    task.loss_batching = batching
    task.max_loss_elements = images_per_call * 194 * 9 * 2
    seen = focal_loss_calls(monkeypatch)
    inputs, samples = boxes_batch()
    with torch.no_grad():
        outs = [task.teacher_forward(m, inputs, samples) for m in (teacher, model.student)]
        shared, _ = task.per_sample_losses([teacher, model.student], outs, samples)
        separate = torch.stack(
            [task.per_sample_loss(m, o, samples) for m, o in zip((teacher, model.student), outs)],
            1)
    # each model's shared pass, then mmdet's reference per model, image and level
    assert sum(seen) == 2 * calls + 2 * 15
    assert shared.shape == (3, 2) and torch.isfinite(shared).all()
    assert not torch.allclose(shared[:, 0], shared[:, 1])  # each model's own loss
    torch.testing.assert_close(shared, separate, rtol=1e-5, atol=1e-5)


def test_teachers_with_other_loss_weights_get_their_own_losses_on_shared_targets(tmp_path):
    """Two teachers whose class losses differ only in ``loss_weight`` share anchor targets; each
    gets its own per-image loss (mmdet's, image by image), the weight applied to its sums."""
    half = retinanet(
        34,
        loss_cls=dict(type='FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=0.5))
    model = distiller(tmp_path, retinanet(34))
    task = model.task
    task.loss_batching = 'batch'
    other = MODELS.build(half)
    other.load_state_dict(model.teachers['t'].state_dict())
    models = [model.teachers['t'], other, model.student]
    inputs, samples = boxes_batch()
    with torch.no_grad():
        outs = [task.teacher_forward(m, inputs, samples) for m in models]
        shared, _ = task.per_sample_losses(models, outs, samples)
        separate = torch.stack([task.per_sample_loss(m, o, samples) for m, o in zip(models, outs)],
                               1)
    torch.testing.assert_close(shared, separate, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(shared[:, 0], shared[:, 1])  # same weights, other loss weight


def test_heads_with_other_anchor_scales_do_not_share_targets(tmp_path):
    from mmtkd.models.tasks.anchor_head_losses import share_anchor_targets
    model = distiller(tmp_path, retinanet(34))
    heads = [model.teachers['t'].bbox_head, model.student.bbox_head]
    assert share_anchor_targets(heads)
    other = MODELS.build(
        retinanet(
            18,
            anchor_generator=dict(
                type='AnchorGenerator',
                octave_base_scale=3,
                scales_per_octave=3,
                ratios=[0.5, 1.0, 2.0],
                strides=[8, 16, 32, 64, 128])))
    assert not share_anchor_targets([heads[0], other.bbox_head])
    sampled = MODELS.build(retinanet(18, train_cfg=None))
    from mmdet.models.task_modules.samplers import RandomSampler
    sampled.bbox_head.sampler = RandomSampler(num=64, pos_fraction=0.5)
    assert not share_anchor_targets([heads[0], sampled.bbox_head])
    inputs, samples = boxes_batch()
    task = model.task
    with torch.no_grad():
        outs = [task.teacher_forward(m, inputs, samples) for m in (model.teachers['t'], other)]
        losses, _ = task.per_sample_losses([model.teachers['t'], other], outs, samples)
        expected = task.per_sample_loss(other, outs[1], samples)
    torch.testing.assert_close(losses[:, 1], expected)


@pytest.mark.parametrize('batching', ['image', 'batch'])
def test_decoded_box_losses_share_targets_only_with_their_kind(tmp_path, batching):
    """GIoU on decoded boxes regresses boxes, not deltas: its targets differ from an L1 head's."""
    from mmtkd.models.tasks.anchor_head_losses import share_anchor_targets
    giou = retinanet(34, reg_decoded_bbox=True, loss_bbox=dict(type='GIoULoss', loss_weight=2.0))
    model = distiller(tmp_path, giou)
    task, teacher = model.task, model.teachers['t']
    task.loss_batching = batching
    assert not share_anchor_targets([teacher.bbox_head, model.student.bbox_head])
    other = MODELS.build(giou)  # a second GIoU detector: shares the teacher's targets
    assert share_anchor_targets([teacher.bbox_head, other.bbox_head])
    inputs, samples = boxes_batch()
    for models in ([teacher, model.student], [teacher, other]):
        with torch.no_grad():
            outs = [task.teacher_forward(m, inputs, samples) for m in models]
            shared, _ = task.per_sample_losses(models, outs, samples)
            separate = torch.stack(
                [task.per_sample_loss(m, o, samples) for m, o in zip(models, outs)], 1)
        torch.testing.assert_close(shared, separate, rtol=1e-5, atol=1e-5)


def test_unknown_loss_batching_is_refused():
    from mmtkd.models.tasks import DetectionTask
    with pytest.raises(ValueError, match="loss_batching must be 'auto', 'image' or 'batch'"):
        DetectionTask(loss_batching='gpu')
    with pytest.raises(ValueError, match='max_loss_elements must be >= 1'):
        DetectionTask(max_loss_elements=0)


def focal_loss_calls(monkeypatch, record=lambda pred: 1):
    """Record the calls of a sigmoid ``FocalLoss`` on CPU: mmdet's Python form (through its
    module or mmtkd's summed losses of the student) and mmtkd's in-place form of the teachers'
    no-grad losses (:func:`summed_focal_loss_`); returns the list that grows by
    ``record(pred)`` per call (1 by default)."""
    from mmdet.models.losses import focal_loss

    from mmtkd.models.tasks import anchor_head_losses
    calls = []
    for module, name in ((focal_loss, 'py_sigmoid_focal_loss'), (anchor_head_losses,
                                                                 'summed_focal_loss_')):
        original = getattr(module, name)
        monkeypatch.setattr(
            module,
            name,
            lambda pred, *args, original=original, **kwargs: calls.append(record(pred)) or original(
                pred, *args, **kwargs))
    return calls


def count_calls(obj, name):
    """Wrap ``obj.name`` to count its calls; returns the list that grows by one per call."""
    calls, original = [], getattr(obj, name)
    setattr(obj, name, lambda *args, **kwargs: calls.append(1) or original(*args, **kwargs))
    return calls


def test_student_loss_and_gradients_are_mmdets(tmp_path):
    model = distiller(tmp_path, retinanet(34))
    task, student = model.task, model.student
    inputs, samples = boxes_batch()
    losses, student_out = task.student_forward(student, inputs, samples)
    from mmdet.models.utils import unpack_gt_instances
    gts, ignores, metas = unpack_gt_instances(samples)
    expected = student.bbox_head.loss_by_feat(*student_out.extras['head_outputs'], gts, metas,
                                              ignores)
    assert set(losses) == set(expected) == {'loss_cls', 'loss_bbox'}
    for key in expected:  # one value over every level (mmdet: one per level), their sum
        assert losses[key].dim() == 0
        torch.testing.assert_close(losses[key], torch.stack(expected[key]).sum())
    weights = [student.bbox_head.retina_cls.weight, student.bbox_head.retina_reg.weight]
    ours = torch.autograd.grad(sum(losses.values()), weights, retain_graph=True)
    theirs = torch.autograd.grad(sum(sum(v) for v in expected.values()), weights)
    for a, b in zip(ours, theirs):
        assert a.abs().sum() > 0
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize('batching', ['batch', 'image'])
def test_student_loss_calls_cover_every_level_within_mmdets_largest_call(
        tmp_path, monkeypatch, batching):
    """mmdet calls the focal and box losses once per FPN level (5 here); the student's loss
    calls each once per group of levels for every image: first the largest level (mmdet's
    largest call, 3 images x 1296 anchors), then the other four together (3 x 450), so that the
    largest call's temporaries peak before any other call's kept tensors exist; each group's
    class loss before its box loss, as mmdet orders them."""
    model = distiller(tmp_path, retinanet(34))
    model.task.loss_batching = batching
    student = model.student
    inputs, samples = boxes_batch()
    # the class loss: mmdet's focal-loss function (summed before its module's loss_weight)
    calls = focal_loss_calls(monkeypatch, record=lambda pred: ('cls', pred.shape[0]))
    student.bbox_head.loss_bbox.register_forward_hook(lambda module, args, out: calls.append(
        ('box', args[0].shape[0])))
    losses, student_out = model.task.student_forward(student, inputs, samples)
    levels = [s.shape[-2] * s.shape[-1] * 9 for s in student_out.logits]
    assert levels == [1296, 324, 81, 36, 9]
    assert calls == [('cls', 3 * 1296), ('box', 3 * 1296), ('cls', 3 * 450), ('box', 3 * 450)]
    from mmdet.models.utils import unpack_gt_instances
    gts, ignores, metas = unpack_gt_instances(samples)
    expected = student.bbox_head.loss_by_feat(*student_out.extras['head_outputs'], gts, metas,
                                              ignores)
    for key in expected:  # mmdet's per-level losses, summed
        torch.testing.assert_close(losses[key], torch.stack(expected[key]).sum())


@pytest.mark.parametrize('loss_weight', [1.0, 0.5])
def test_focal_loss_summed_before_its_weight_is_mmdets_without_a_host_sync(loss_weight):
    """mmdet's sigmoid FocalLoss summed per row by mmtkd (its element-wise loss before the
    ``loss_weight``, one-hot targets compared into floats) equals the module's own per-row
    sums, with no host synchronisation (``F.one_hot`` checks the labels' range with one) and
    fewer kernels than the module's call; another loss goes through its module."""
    from mmdet.models.losses import FocalLoss

    from mmtkd.benchmark.host_ops import count_ops
    from mmtkd.models.tasks.anchor_head_losses import summed_class_loss, unscaled_focal_loss
    head = MODELS.build(retinanet(18)).bbox_head
    head.loss_cls = FocalLoss(use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=loss_weight)
    torch.manual_seed(0)
    scores = torch.randn(3, 50, 2) * 3
    labels = torch.randint(0, 3, (3, 50))  # 2: background
    weights = (torch.rand(3, 50) > 0.2).float()
    expected = torch.stack([
        head.loss_cls(scores[i], labels[i], weights[i], reduction_override='sum') for i in range(3)
    ])
    torch.testing.assert_close(summed_class_loss(head, scores, labels, weights), expected)
    ours = count_ops(lambda: summed_class_loss(head, scores, labels, weights))
    module = count_ops(lambda: head.loss_cls(
        scores.reshape(-1, 2), labels.reshape(-1), weights.reshape(-1), reduction_override='none'))
    assert ours['syncs'] == 0 and module['syncs'] >= 1
    assert ours['kernels'] < module['kernels']
    assert unscaled_focal_loss(head.loss_bbox, scores[0], labels[0], weights[0]) is None


@pytest.mark.parametrize('loss_weight,alpha', [(1.0, 0.25), (0.5, 0.6)])
def test_teachers_focal_loss_in_place_is_mmdets_on_targets_built_once(loss_weight, alpha):
    """The teachers' no-grad focal loss on CPU (in place of a copy of their scores, on targets
    built once for every model scored on the same rows) equals mmdet's module summed per row;
    a second model's call reuses the targets, and each call dispatches 7 kernels where mmdet's
    Python form dispatches more than twice as many."""
    from mmdet.models.losses import FocalLoss

    from mmtkd.benchmark.host_ops import count_ops
    from mmtkd.models.tasks.anchor_head_losses import summed_class_loss_
    head = MODELS.build(retinanet(18)).bbox_head
    head.loss_cls = FocalLoss(use_sigmoid=True, gamma=2.0, alpha=alpha, loss_weight=loss_weight)
    torch.manual_seed(0)
    scores = torch.randn(2, 3, 50, 2) * 3  # two models, three rows
    labels = torch.randint(0, 3, (3, 50))  # 2: background
    weights = (torch.rand(3, 50) > 0.2).float()
    focal_targets = {}
    for model_scores in scores:
        expected = torch.stack([
            head.loss_cls(model_scores[i], labels[i], weights[i], reduction_override='sum')
            for i in range(3)
        ])
        copy = model_scores.clone()
        ours = count_ops(lambda: summed_class_loss_(head, copy, labels, weights, focal_targets))
        assert len(focal_targets) == 1  # built by the first model's call, read by the second
        torch.testing.assert_close(
            summed_class_loss_(head, model_scores.clone(), labels, weights, focal_targets),
            expected)
    assert ours['kernels'] == 7 + (loss_weight != 1) and ours['syncs'] == 0
    module = count_ops(lambda: head.loss_cls(
        scores[0].reshape(-1, 2),
        labels.reshape(-1),
        weights.reshape(-1),
        reduction_override='none'))
    assert module['kernels'] > 2 * ours['kernels']
    copy = scores[0].clone().requires_grad_()  # with gradients: mmdet's form, scores untouched
    summed_class_loss_(head, copy, labels, weights, {})
    assert torch.equal(copy, scores[0])


def test_level_groups_never_exceed_the_largest_level():
    groups = DetectionTask._level_groups
    assert groups([torch.zeros(1, 9 * n * n) for n in (40, 20, 10, 5, 3)], 1) == [[0], [1, 2, 3, 4]]
    assert groups([torch.zeros(1, 4), torch.zeros(1, 4), torch.zeros(1, 4)], 1) == [[0], [1], [2]]
    assert groups([torch.zeros(1, 8), torch.zeros(1, 5), torch.zeros(1, 3)], 1) == [[0], [1, 2]]
    assert groups([torch.zeros(1, 6)], 2) == [[0]]


def test_teachers_targets_serve_the_student_and_its_loss_needs_no_further_call(
        tmp_path, monkeypatch):
    model = distiller(tmp_path, retinanet(34))
    task, teacher, student = model.task, model.teachers['t'], model.student
    inputs, samples = boxes_batch()
    assigned = count_calls(teacher.bbox_head, 'get_targets')
    assigned_by_student = count_calls(student.bbox_head, 'get_targets')
    with torch.no_grad():
        teacher_out = task.teacher_forward(teacher, inputs, samples)
        teacher_losses, lent = task.per_sample_losses([teacher], [teacher_out], samples)
    assert len(assigned) == 1  # once for the batch
    assert 'anchor_targets' not in teacher_out.extras  # handed over explicitly, as `lent`
    losses, student_out = task.student_forward(student, inputs, samples, lent)
    assert not assigned_by_student and len(assigned) == 1  # the teachers' targets served
    own_losses, _ = task.student_forward(student, inputs, samples)
    assert len(assigned_by_student) == 1  # without the teachers, assigned by the student
    for key, value in own_losses.items():
        torch.testing.assert_close(losses[key], value)
    student_calls = focal_loss_calls(monkeypatch)
    student_losses = task.per_sample_loss(student, student_out, samples)
    assert not student_calls  # read from the summed training losses
    reference = [
        DistillOutputs(o.logits, o.features, dict(head_outputs=o.extras['head_outputs']))
        for o in (teacher_out, student_out)
    ]
    separate = torch.stack(
        [task.per_sample_loss(m, o, samples) for m, o in zip((teacher, student), reference)], 1)
    assert student_calls  # the reference called mmdet's loss per image
    torch.testing.assert_close(
        torch.stack([teacher_losses[:, 0], student_losses], 1), separate, rtol=1e-5, atol=1e-5)


def test_a_student_with_other_anchors_assigns_its_own_targets(tmp_path):
    model = distiller(tmp_path, retinanet(34))
    task, teacher = model.task, model.teachers['t']
    other = MODELS.build(
        retinanet(
            18,
            anchor_generator=dict(
                type='AnchorGenerator',
                octave_base_scale=3,
                scales_per_octave=3,
                ratios=[0.5, 1.0, 2.0],
                strides=[8, 16, 32, 64, 128])))
    inputs, samples = boxes_batch()
    with torch.no_grad():
        teacher_out = task.teacher_forward(teacher, inputs, samples)
        _, lent = task.per_sample_losses([teacher], [teacher_out], samples)
    assigned = count_calls(other.bbox_head, 'get_targets')
    losses, other_out = task.student_forward(other, inputs, samples, lent)
    assert len(assigned) == 1
    from mmdet.models.utils import unpack_gt_instances
    gts, ignores, metas = unpack_gt_instances(samples)
    expected = other.bbox_head.loss_by_feat(*other_out.extras['head_outputs'], gts, metas, ignores)
    for key in expected:
        torch.testing.assert_close(losses[key], torch.stack(expected[key]).sum())


def test_a_repeated_batch_layout_reuses_its_anchors(tmp_path):
    """The anchors and valid flags of a batch layout (feature-map sizes, padded shapes, device)
    are computed once: the next batch of that layout dispatches no kernel for them and gets
    the same targets and losses; another layout, or another image padding, computes its own."""
    from mmtkd.benchmark.host_ops import count_ops
    model = distiller(tmp_path, retinanet(34))
    task, student = model.task, model.student
    computed = count_calls(student.bbox_head, 'get_anchors')
    inputs, samples = boxes_batch()
    first, first_out = task.student_forward(student, inputs, samples)
    again, again_out = task.student_forward(student, inputs, samples)
    assert len(computed) == 1
    for key in first:
        torch.testing.assert_close(again[key], first[key])
    for a, b in zip(first_out.extras['anchor_targets'].labels,
                    again_out.extras['anchor_targets'].labels):
        assert torch.equal(a, b)
    sizes = [scores.shape[-2:] for scores in first_out.logits]
    metas = [sample.metainfo for sample in samples]
    assert count_ops(lambda: task._anchors.get_anchors(student.bbox_head, sizes, metas, inputs.
                                                       device))['kernels'] == 0
    # an image padded less: its valid flags differ, so the layout is new (and mmdet's own)
    smaller = copy.deepcopy(samples)
    smaller[0].set_metainfo(dict(pad_shape=(64, 64)))
    task.student_forward(student, inputs, smaller)
    assert len(computed) == 2
    anchors, flags = task._anchors.get_anchors(student.bbox_head, sizes,
                                               [s.metainfo for s in smaller], inputs.device)
    expected_anchors, expected_flags = type(student.bbox_head).get_anchors(
        student.bbox_head, sizes, [s.metainfo for s in smaller], inputs.device)
    assert not flags[0][0].all() and flags[1][0].all()
    for got, want in zip(anchors + flags, expected_anchors + expected_flags):
        for a, b in zip(got, want):
            assert torch.equal(a, b)
    # other feature-map sizes
    task.student_forward(student, *boxes_batch(size=64))
    assert len(computed) == 3


def test_anchor_cache_keeps_the_most_recent_layouts_and_leaves_other_heads_alone():
    from mmtkd.models.tasks.anchor_head_losses import AnchorCache
    head = MODELS.build(retinanet()).bbox_head
    computed = count_calls(head, 'get_anchors')
    cache = AnchorCache(entries=1)
    layouts = [[(12, 12), (6, 6), (3, 3), (2, 2), (1, 1)], [(8, 8), (4, 4), (2, 2), (1, 1), (1, 1)]]
    metas = [dict(pad_shape=(96, 96))]
    for sizes in layouts + layouts:  # one entry: alternating layouts always miss
        cache.get_anchors(head, sizes, metas, torch.device('cpu'))
    assert len(computed) == 4
    cache.get_anchors(head, layouts[1], metas, torch.device('cpu'))
    assert len(computed) == 4  # the most recent one is kept
    # a head with its own get_anchors may read more than the cache's key: never cached
    own = type('OwnAnchorsHead', (type(head), ), {
        'get_anchors':
        lambda self, *args, **kwargs: type(head).get_anchors(self, *args, **kwargs)
    })
    head.__class__ = own
    for _ in range(2):
        cache.get_anchors(head, layouts[1], metas, torch.device('cpu'))
    assert len(computed) == 6
    with pytest.raises(ValueError, match='entries must be >= 1'):
        AnchorCache(entries=0)


def test_teacher_losses_run_before_the_students_forward(tmp_path, monkeypatch):
    """Their intermediates must be freed before the student's activations exist (peak memory)."""
    from mmtkd.testing import save_model_checkpoint
    teacher_cfg = retinanet(34)
    path = save_model_checkpoint(teacher_cfg, str(tmp_path / 't.pth'))
    model = MODELS.build(
        dict(
            type='mmtkd.MultiTeacherDistiller',
            student=retinanet(),
            teachers=dict(t=dict(config=teacher_cfg, checkpoint=path)),
            weighting=dict(type='mmtkd.ConfidenceWeighting')))
    events = focal_loss_calls(monkeypatch)  # a 1 per loss call
    model.student.backbone.register_forward_pre_hook(lambda *args: events.append('student'))
    losses = model.loss(*boxes_batch())
    # on CPU: the teacher's image by image, then the student's forward and its own loss
    assert events[:4] == [1] * 3 + ['student'] and set(events[4:]) == {1}
    assert torch.isfinite(losses['loss_logit_kd']) and losses['loss_logit_kd'].requires_grad
