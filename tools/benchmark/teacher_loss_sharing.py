"""Time the per-image detection losses that CA-MKD and MTKD-RL need: one anchor-target assignment
shared by all models (``DetectionTask.per_sample_losses``) against one ``loss_by_feat`` call per
image and model (``per_sample_loss``), for the headline RetinaNet setting.

Usage:
    python tools/benchmark/teacher_loss_sharing.py [--size 320] [--batch 2] [--models 4]
"""
import argparse
import statistics
import time

import torch
from mmengine.hub import get_config

import mmtkd  # noqa: F401
from mmtkd.models.distillers.model_builder import build_model
from mmtkd.models.tasks import DetectionTask
from mmtkd.testing import strip_pretrained


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--size', type=int, default=320)
    parser.add_argument('--batch', type=int, default=2)
    parser.add_argument('--models', type=int, default=4, help='teachers + student')
    parser.add_argument('--boxes', type=int, default=8, help='ground-truth boxes per image')
    parser.add_argument('--repeats', type=int, default=20)
    args = parser.parse_args()
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData
    cfg = strip_pretrained(get_config('mmdet::retinanet/retinanet_r18_fpn_1x_coco.py').model)
    models = [build_model(cfg, 'mmdet', 'benchmark').eval() for _ in range(args.models)]
    task = DetectionTask()
    task.bind(models[0])
    torch.manual_seed(0)
    inputs = torch.rand(args.batch, 3, args.size, args.size)
    samples = []
    for _ in range(args.batch):
        sample = DetDataSample(metainfo=dict(img_shape=(args.size, args.size),
                                             pad_shape=(args.size, args.size),
                                             batch_input_shape=(args.size, args.size)))
        corners = torch.rand(args.boxes, 2) * args.size * 0.7
        sample.gt_instances = InstanceData(
            bboxes=torch.cat([corners, corners + 16 + torch.rand(args.boxes, 2) * 80], 1),
            labels=torch.randint(0, 80, (args.boxes, )))
        samples.append(sample)
    with torch.no_grad():
        outs = [task.teacher_forward(m, inputs, samples) for m in models]

    def timed(fn):
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return statistics.median(times) * 1000

    with torch.no_grad():
        shared = timed(lambda: task.per_sample_losses(models, outs, samples))
        separate = timed(lambda: [task.per_sample_loss(m, o, samples) for m, o in zip(models,
                                                                                       outs)])
    print(f'| {args.models} models, batch {args.batch} x {args.size}x{args.size} | '
          f'per image and model: {separate:.1f} ms | shared targets: {shared:.1f} ms | '
          f'{separate / shared:.1f}x |')


if __name__ == '__main__':
    main()
