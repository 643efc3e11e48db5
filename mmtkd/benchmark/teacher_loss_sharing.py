"""Time the per-image detection losses that CA-MKD and MTKD-RL need, for the headline RetinaNet
setting: one ``loss_by_feat`` call per image and model (``per_sample_loss``) against one
anchor-target assignment shared by all models (``DetectionTask.per_sample_losses``), whose loss
kernels run over every level of one image (``loss_batching='image'``) or of as many images as
``max_loss_elements`` allows (``'batch'``). Runs on the GPU when there is one.

Usage:
    python tools/benchmark/teacher_loss_sharing.py [--size 320] [--batch 2] [--models 4]
"""
import argparse
import statistics

import torch
from mmengine.hub import get_config

import mmtkd  # noqa: F401
from mmtkd.benchmark.speed import timed as timed_calls
from mmtkd.models.tasks import DetectionTask
from mmtkd.testing import strip_pretrained
from mmtkd.utils.model_builder import build_model


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
    device = 'cuda' if torch.cuda.is_available() else 'cpu'
    models = [build_model(cfg, 'mmdet', 'benchmark').eval().to(device) for _ in range(args.models)]
    task = DetectionTask()
    task.bind(models[0])
    torch.manual_seed(0)
    inputs = torch.rand(args.batch, 3, args.size, args.size, device=device)
    samples = []
    for _ in range(args.batch):
        sample = DetDataSample(
            metainfo=dict(
                img_shape=(args.size, args.size),
                pad_shape=(args.size, args.size),
                batch_input_shape=(args.size, args.size)))
        corners = torch.rand(args.boxes, 2) * args.size * 0.7
        sample.gt_instances = InstanceData(
            bboxes=torch.cat([corners, corners + 16 + torch.rand(args.boxes, 2) * 80], 1),
            labels=torch.randint(0, 80, (args.boxes, ))).to(device)
        samples.append(sample)
    with torch.no_grad():
        outs = [task.teacher_forward(m, inputs, samples) for m in models]

    def timed(fn):
        """Median milliseconds of ``args.repeats`` calls."""
        return statistics.median(timed_calls(fn, args.repeats, 0, device)) * 1000

    def shared(batching):
        task.loss_batching = batching
        return task.per_sample_losses(models, outs, samples)[0]

    with torch.no_grad():
        separate = timed(
            lambda: [task.per_sample_loss(m, o, samples) for m, o in zip(models, outs)])
        per_image = timed(lambda: shared('image'))
        batched = timed(lambda: shared('batch'))
    print('| setting | per image and model | shared, image kernels | shared, batch kernels |')
    print('| --- | --- | --- | --- |')
    print(f'| {args.models} models, batch {args.batch} x {args.size}x{args.size}, {device} | '
          f'{separate:.1f} ms | {per_image:.1f} ms ({separate / per_image:.1f}x) | '
          f'{batched:.1f} ms ({separate / batched:.1f}x) |')


if __name__ == '__main__':
    main()
