"""The demo's tasks on the embedded real data, shared by ``tools/demo.py`` and
``tools/benchmark/quality.py``: which configs, how to build the data, how to train a teacher once
(cached) and how to train and test a student with an MMEngine runner.
"""
import json
import os.path as osp
import time
from dataclasses import dataclass
from functools import partial
from typing import Callable, Dict, Optional, Tuple

import mmengine
from mmengine.config import Config
from mmengine.runner import Runner

import mmtkd  # noqa: F401  (registers mmtkd, allow-lists MMEngine checkpoint types)
from mmtkd.datasets.composite import build as build_composite
from mmtkd.datasets.fashion_mnist import DEBIAN_SOURCE
from mmtkd.datasets.fashion_mnist import build as build_fashion_mnist
from mmtkd.datasets.tree_crowns import build as build_tree_crowns
from mmtkd.utils import save_atomically
from mmtkd.utils.model_builder import build_model

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIGS = osp.join(ROOT, 'configs', 'demo')
#: the roles of a task's distiller configs, ``<distiller>_<role>.py``
DISTILLER_ROLES = ('mtkd_rl', 'credit', 'aver')


@dataclass(frozen=True)
class DemoTask:
    """One task of the demo.

    Attributes:
        name (str): ``detection``, ``segmentation``, ``trees`` or ``classification``.
        title (str): What the table's caption says about the data; ``{val_images}`` in it
            stands for the size of the validation split (see :meth:`caption`).
        prefix (str): Config file prefix under ``configs/demo`` (``composite`` / ``compseg`` /
            ``trees`` / ``fmnist``).
        distiller (str): Stem of the distiller configs: ``<distiller>_mtkd_rl.py``,
            ``<distiller>_credit.py`` and ``<distiller>_aver.py``.
        metrics (tuple): ``(metric key, column label)`` pairs, the first one is the headline.
        scale (float): Factor from the evaluator's value to the printed one (percent).
        data_root (str): Default data folder.
        build_data (callable): ``build_data(data_root)`` lays out the data (idempotent).
        class_scores (str): State-dict prefix of the models' class-score layer (RetinaNet stacks
            anchors x classes in it).
        teachers (tuple): Teacher names; their configs are ``<prefix>_teacher_<name>.py``.
        val_images (int, optional): Validation images of the default data (the composite
            sets), shown in the caption unless a benchmark evaluates on another split.
    """
    name: str
    title: str
    prefix: str
    distiller: str
    metrics: Tuple[Tuple[str, str], ...]
    scale: float
    data_root: str
    build_data: Callable[[str], None]
    class_scores: str
    teachers: Tuple[str, ...] = ('res18', 'res34', 'regnetx')
    val_images: Optional[int] = None

    def caption(self, val_images: Optional[int] = None) -> str:
        """What a table's caption says about the data.

        Args:
            val_images (int, optional): The validation split's size when it is not the
                default one (``quality.py --val-images``).

        Returns:
            str: The title with the split's size filled in.
        """
        return self.title.format(val_images=val_images or self.val_images)

    def config(self, role: str) -> str:
        """Path of a demo config: ``teacher_<name>``, ``student_nokd``, or one of
        :data:`DISTILLER_ROLES` (distiller configs: ``mtkd_rl`` the official agent, ``credit``
        the recommended one, ``aver``)."""
        stem = f'{self.distiller}_{role}' if role in DISTILLER_ROLES else \
            f'{self.prefix}_{role}'
        return osp.join(CONFIGS, f'{stem}.py')

    @property
    def num_classes(self) -> int:
        """Number of classes, as the task's (first) teacher config declares it."""
        model = Config.fromfile(self.config(f'teacher_{self.teachers[0]}')).model
        return (model.get('bbox_head') or model.get('decode_head') or model.head).num_classes

    def select(self, metrics: Dict[str, float]) -> Dict[str, float]:
        """The task's metrics from an evaluator's output. mmdet's CocoMetric returns nothing
        when a model detects nothing above the score threshold: that is 0 mAP."""
        if any(key not in metrics for key, _ in self.metrics):
            print(f'[demo] no {self.metrics[0][0]} in the test results (nothing detected?): '
                  'counted as 0')
        return {key: float(metrics.get(key, 0.0)) for key, _ in self.metrics}

    def teacher_checkpoint(self, teacher_dir: str, teacher: str) -> str:
        return osp.join(teacher_dir, f'{self.prefix}_{teacher}.pth')


def _build_composite(data_root: str) -> None:
    if not osp.isfile(osp.join(data_root, 'annotations', 'val.json')):
        print(f'[demo] building the composite detection set in {data_root}...')
        build_composite(
            data_root, fashion_root=osp.join(osp.dirname(data_root.rstrip('/')), 'fashion_mnist'))


def _build_tree_crowns(data_root: str) -> None:
    if not osp.isfile(osp.join(data_root, 'annotations', 'val.json')):
        print(f'[demo] building the tree-crown set in {data_root}...')
        build_tree_crowns(data_root)


def _build_fashion_mnist(data_root: str) -> None:
    build_fashion_mnist(DEBIAN_SOURCE, data_root)


TASKS: Dict[str, DemoTask] = {
    'detection':
    DemoTask(
        name='detection',
        title='composite detection set ({val_images} val images of 128x128, 10 '
        'classes)',
        prefix='composite',
        distiller='composite_retina_3teachers',
        metrics=(('coco/bbox_mAP', 'mAP'), ('coco/bbox_mAP_50', 'mAP@50')),
        scale=100.0,
        data_root='data/composite',
        build_data=_build_composite,
        class_scores='bbox_head.retina_cls.',
        val_images=400),
    'segmentation':
    DemoTask(
        name='segmentation',
        title='composite segmentation set ({val_images} val images of 128x128, 10 classes and '
        'background)',
        prefix='compseg',
        distiller='compseg_fcn_3teachers',
        metrics=(('mIoU', 'mIoU'), ('aAcc', 'pixel acc.')),
        scale=1.0,
        data_root='data/composite',
        build_data=_build_composite,
        class_scores='decode_head.conv_seg.',
        teachers=('pspnet', 'deeplabv3', 'segformer'),
        val_images=400),
    'trees':
    DemoTask(
        name='trees',
        title='tree-crown set (10 val tiles of up to 400x400 from aerial photos, 1 class)',
        prefix='trees',
        distiller='trees_retina_3teachers',
        metrics=(('coco/bbox_mAP', 'mAP'), ('coco/bbox_mAP_50', 'mAP@50')),
        scale=100.0,
        data_root='data/tree_crowns',
        build_data=_build_tree_crowns,
        class_scores='bbox_head.retina_cls.'),
    'classification':
    DemoTask(
        name='classification',
        title='Fashion-MNIST test set (10k images)',
        prefix='fmnist',
        distiller='fmnist_res18_3teachers',
        metrics=(('accuracy/top1', 'top-1'), ),
        scale=1.0,
        data_root='data/fashion_mnist',
        build_data=_build_fashion_mnist,
        class_scores='head.fc.'),
}


def save_json_atomically(obj, path: str) -> None:
    """Write JSON through a temporary file, so an interrupted run never leaves half a file.

    Args:
        obj: A JSON-serialisable object.
        path (str): The destination.
    """
    save_atomically(obj, path, dump=partial(mmengine.dump, file_format='json', indent=1))


def set_epochs(cfg: Config, epochs: int) -> None:
    """Shorten or lengthen an epoch-based schedule, keeping its cosine decay to the end."""
    cfg.train_cfg.max_epochs = epochs
    schedulers = cfg.param_scheduler
    for scheduler in schedulers if isinstance(schedulers, list) else [schedulers]:
        if scheduler.get('by_epoch', True) and scheduler.type == 'CosineAnnealingLR':
            scheduler.T_max = epochs
            if 'end' in scheduler:
                scheduler.end = epochs


def anneal_per_iteration(cfg: Config) -> None:
    """Step every epoch-based scheduler of ``cfg`` at every iteration (MMEngine's
    ``convert_to_iter_based``): a cosine over one or two epochs then decays to its end within
    the run instead of holding its first value for a whole epoch."""
    schedulers = cfg.param_scheduler
    for scheduler in schedulers if isinstance(schedulers, list) else [schedulers]:
        if scheduler.get('by_epoch', True):
            scheduler.convert_to_iter_based = True


def set_data_root(cfg: Config, data_root: str) -> None:
    """Point every dataloader and COCO evaluator at ``data_root``."""
    for loader in (cfg.train_dataloader, cfg.val_dataloader, cfg.test_dataloader):
        loader.dataset.data_root = data_root
    for evaluator in (cfg.val_evaluator, cfg.test_evaluator):
        if 'ann_file' in evaluator:
            evaluator.ann_file = osp.join(data_root, 'annotations', 'val.json')


def load_cfg(task: DemoTask,
             role: str,
             work_dir: str,
             data_root: str,
             teacher_dir: str,
             epochs: Optional[int] = None,
             seed: int = 0,
             teacher_checkpoints: Optional[Dict[str, str]] = None,
             subset: Optional[int] = None) -> Config:
    """A demo config ready for one run.

    Args:
        task (DemoTask): The task.
        role (str): See :meth:`DemoTask.config`.
        work_dir (str): The run's work dir.
        data_root (str): The data folder.
        teacher_dir (str): Where cached teacher checkpoints are.
        epochs (int, optional): Training epochs; the config's own when None.
        seed (int): Random seed of the run.
        teacher_checkpoints (dict, optional): Checkpoint per teacher name, overriding
            ``teacher_dir`` (the quality benchmark's hard pool).
        subset (int, optional): Use only the first ``subset`` images of every split (smoke
            runs).

    Returns:
        Config: The config.
    """
    cfg = Config.fromfile(task.config(role))
    cfg.work_dir = work_dir
    # one process runs several runners: each needs its own experiment and visualizer name
    cfg.experiment_name = f'{osp.basename(work_dir)}_{time.strftime("%Y%m%d_%H%M%S")}' \
                          f'_{int(time.time() * 1e6) % 1000000}'
    cfg.visualizer.name = cfg.experiment_name
    cfg.randomness = dict(seed=seed, deterministic=False)
    if epochs is not None:
        set_epochs(cfg, epochs)
    # every run is tested right after training: a validation of the same model is redundant
    cfg.train_cfg.val_interval = cfg.train_cfg.max_epochs + 1
    set_data_root(cfg, data_root)
    if subset:
        for loader in (cfg.train_dataloader, cfg.val_dataloader, cfg.test_dataloader):
            loader.dataset.indices = subset
            loader.batch_size = min(loader.batch_size, subset)
    if 'teachers' in cfg.model:
        for teacher, spec in cfg.model.teachers.items():
            spec.checkpoint = (teacher_checkpoints
                               or {}).get(teacher, task.teacher_checkpoint(teacher_dir, teacher))
    return cfg


def train_and_test(
        task: DemoTask,
        cfg: Config,
        inspect: Optional[Callable[[Runner], Dict[str, float]]] = None) -> Dict[str, float]:
    """Train with an MMEngine runner, then test the final model.

    Args:
        task (DemoTask): The task.
        cfg (Config): A runner config.
        inspect (callable, optional): Reads more numbers from the trained runner (e.g. the
            agent's update count); they are added to the metrics.

    Returns:
        dict: The task's test metrics (and what ``inspect`` returned).
    """
    runner = Runner.from_cfg(cfg)
    runner.train()
    extra = inspect(runner) if inspect is not None else {}
    return dict(task.select(runner.test()), **extra)


def cached_teacher(task: DemoTask,
                   teacher: str,
                   work_dir: str,
                   data_root: str,
                   teacher_dir: str,
                   epochs: Optional[int] = None,
                   subset: Optional[int] = None) -> Dict[str, float]:
    """Train a teacher unless its checkpoint and metrics are cached.

    Args:
        task (DemoTask): The task.
        teacher (str): Teacher name (``res18`` / ``res34`` / ``regnetx``).
        work_dir (str): Where the teacher's training run goes.
        data_root (str): The data folder.
        teacher_dir (str): The cache.
        epochs (int, optional): Training epochs; the config's own when None.
        subset (int, optional): See :func:`load_cfg`.

    Returns:
        dict: The teacher's test metrics.
    """
    ckpt = task.teacher_checkpoint(teacher_dir, teacher)
    metric_file = osp.splitext(ckpt)[0] + '.json'
    if osp.isfile(ckpt) and osp.isfile(metric_file):
        with open(metric_file) as f:
            metrics = json.load(f)
        print(f'[demo] teacher {teacher}: cached ({ckpt})')
        return metrics
    print(f'[demo] training teacher {teacher}...')
    cfg = load_cfg(
        task,
        f'teacher_{teacher}',
        osp.join(work_dir, f'teacher_{teacher}'),
        data_root,
        teacher_dir,
        epochs,
        subset=subset)
    runner = Runner.from_cfg(cfg)
    runner.train()
    metrics = task.select(runner.test())
    save_atomically({'state_dict': runner.model.state_dict(), 'meta': {'metrics': metrics}}, ckpt)
    save_json_atomically(metrics, metric_file)
    return metrics


def count_params(task: DemoTask, role: str) -> float:
    """Parameters of a demo model, in millions."""
    cfg = Config.fromfile(task.config(role))
    model = build_model(cfg.model, cfg.get('default_scope'), role)
    return sum(p.numel() for p in model.parameters()) / 1e6
