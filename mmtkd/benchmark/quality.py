"""Quality benchmark: weighting methods against the same teachers, paired over seeds, on the
embedded real data.

For one demo task (:mod:`mmtkd.demo.tasks`: Fashion-MNIST classification, composite detection,
composite segmentation or tree-crown detection), trains the student with every method of
``--methods`` (default: AVER, CA-MKD, EBKD and the configuration mmtkd recommends for the task,
:data:`RECOMMENDED`) for each seed and teacher pool: the three demo teachers as trained
(``clean``) or with some made bad (:mod:`mmtkd.benchmark.teacher_pools`: class outputs
permuted, or the teacher untrained); control pools run only when named in ``--pools``.

Runs are paired: a seed fixes the student's initialisation and the data order for every method
(the agent is initialised from its own seed outside the global random stream), so the
per-seed difference between two methods is the comparison, reported with its standard error.
Every run is an MMEngine runner on the task's demo configs with the student config's schedule, or
one changed by ``--epochs`` / ``--train-subset`` (``--lr-per-iteration`` steps its epoch-based LR
schedule every iteration: the demo's cosine otherwise holds its first value through a one-epoch run;
``--kd-temperature`` sets every method's logit-KD temperature, ``--logit-kd-weight`` its weight);
the composite tasks can be evaluated on a larger validation split (``--val-images``). Teachers
are only needed (and trained when missing from the cache) when a distillation method is asked
for. Each run is recorded in ``OUT/results.json`` as it finishes (an interrupted benchmark
resumes where it stopped), and, with ``--efficacy-file``, in the shared raw-results file that
``../shared/tools/efficacy_report.py`` reads (``docs/results/agent_efficacy.json``). The script
prints (and writes to ``OUT/quality.md``) each method's mean, its paired differences to AVER,
CA-MKD and EBKD and its share of weight on the bad teachers, and draws the differences
(``OUT/quality.png``). Each record also keeps every teacher's share of the KD weights over the
second half of training (``teacher_shares``, since session 36), which says what a weighting did
to the good teachers, on a clean pool too, and the weights' sum (``weight_totals``, since session
37: below 1 where a weighting drops a teacher without handing its weight on).

Usage:
    python tools/benchmark/quality.py --task classification --epochs 1 --train-subset 15000 \\
        --lr-per-iteration \\
        --out work_dirs/benchmark/quality_cls --efficacy-file docs/results/agent_efficacy.json
    python tools/benchmark/quality.py --task detection --val-images 1200 \\
        --out work_dirs/benchmark/quality_det --efficacy-file docs/results/agent_efficacy.json
    python tools/benchmark/quality.py --task segmentation --val-images 1200 \\
        --methods nokd aver camkd ebkd mtkd_rl_static mtkd_rl_credit \\
        --out work_dirs/benchmark/quality_seg --efficacy-file docs/results/agent_efficacy.json
    python tools/benchmark/quality.py --task trees --out work_dirs/benchmark/quality_trees \\
        --efficacy-file docs/results/agent_efficacy.json
    # the same grid as two single-threaded processes side by side (a 2-core machine)
    python tools/benchmark/quality.py --task trees --lanes 2 \\
        --out work_dirs/benchmark/quality_trees --efficacy-file docs/results/agent_efficacy.json
"""
import argparse
import copy
import fcntl
import json
import math
import os
import os.path as osp
import sys
import time
from typing import Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np
from mmengine.registry import DATASETS, init_default_scope

from mmtkd.analysis.plot_teacher_weights import find_scalars, read_weights
from mmtkd.benchmark.lanes import LaneRun, run_in_lanes
from mmtkd.benchmark.merge_efficacy import schedule_of
from mmtkd.benchmark.paired_summary import BASELINES, plot_summary, summarise
from mmtkd.benchmark.recommended import (BASELINE_WEIGHTINGS, CREDIT_AGENT, RECOMMENDED,
                                         candidate_weightings, recommended_weighting)
from mmtkd.benchmark.teacher_pools import POOLS, pool_checkpoints, task_pools, teacher_fingerprints
from mmtkd.demo.tasks import (TASKS, DemoTask, anneal_per_iteration, load_cfg, save_json_atomically,
                              set_data_root, train_and_test)

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))

_MTKD = dict(type='mmtkd.MTKDRLWeighting')
#: ``{method: weighting config}``; None trains the student alone, a callable builds the weighting
#: from the task's name (:data:`RECOMMENDED`)
METHODS: Dict[str, Union[None, dict, Callable[[str], dict]]] = {
    'nokd':
    None,
    **copy.deepcopy(BASELINE_WEIGHTINGS),
    'mtkd_rl_static':
    dict(_MTKD, update='official', mixing='static'),
    'mtkd_rl_dynamic':
    dict(_MTKD, update='official', mixing='dynamic'),
    'mtkd_rl_ppo':
    dict(_MTKD, update='ppo', state='compact', mixing='none'),
    # the official agent with the divergence-aware heuristic inverted (larger teacher-student gap
    # -> less weight): the change investigated after the first hard-pool results
    'mtkd_rl_static_inverse':
    dict(_MTKD, update='official', mixing='static', divergence='inverse'),
    # the PPO agent with half the exploration noise: the first results showed it finds the
    # unreliable teacher, but the noise of its sampled weights costs the student
    'mtkd_rl_ppo_std05':
    dict(_MTKD, update='ppo', state='compact', mixing='none', init_std=0.5),
    # the official agent (dynamic mixing) without its warm-up, whose weights of 1 give three
    # teachers three times AVER's KD weight: does the per-sample weighting alone help?
    'mtkd_rl_dynamic_nowarmup':
    dict(_MTKD, update='official', mixing='dynamic', warmup_iters=0),
    # the reverse: AVER with the official agent's warm-up (every teacher weighs 1 for the first
    # quarter of the run; ``warmup_iters=None`` is filled in with that quarter)
    'aver_warmup':
    dict(type='mmtkd.AverageWeighting', warmup_iters=None),
    # the best any teacher selection can do by knowing the pool: weight 0 on its bad teachers,
    # the same on the others, summing to 1 (AVER on the clean pool); filled in per pool
    'oracle_selection':
    dict(type='mmtkd.FixedWeighting', weights='drop_bad'),
    # AVER with the bad teachers' terms removed: the good teachers keep AVER's 1/M (a control
    # that separates what a bad teacher's own term does from how much the good ones weigh)
    'aver_without_bad':
    dict(type='mmtkd.FixedWeighting', weights='aver_without_bad'),
    # the credit agents (configs/mtkd_rl/_base_/credit_agent.py among them)
    **candidate_weightings(),
    # the recommended configuration: on each task the weighting shipped for its family
    RECOMMENDED:
    recommended_weighting,
}
#: methods that are another method with the distiller's KD weights multiplied:
#: ``{name: (method, alpha factor, beta factor)}``. EBKD's teacher weights sum to M - 1 (2 of 3
#: teachers), every other method's to 1, so EBKD distils with twice their KD weight; these rows
#: separate which teacher a method weighs from how much KD it applies in all
#: (``<method>_x2kd``: twice the KD, as EBKD; ``ebkd_halfkd``: EBKD's weights brought to a sum
#: of 1; ``aver_x067logit``: AVER's logit KD at 2/3, what AVER's two good teachers of three
#: weigh in a pool with one bad teacher; ``aver_x069kd`` / ``aver_x039kd``: AVER at the KD total
#: that the max-normalised credit agent kept over the second half on the clean and the
#: one-permuted Fashion-MNIST pools, session 37: is its lead which teachers or how much KD?)
KD_SCALES: Dict[str, Tuple[str, float, float]] = {
    'aver_x2kd': ('aver', 2.0, 2.0),
    f'{CREDIT_AGENT}_x2kd': (CREDIT_AGENT, 2.0, 2.0),
    'ebkd_halfkd': ('ebkd', 0.5, 0.5),
    'aver_x067logit': ('aver', 2 / 3, 1.0),
    'aver_x069kd': ('aver', 0.69, 0.69),
    'aver_x039kd': ('aver', 0.39, 0.39),
}
METHODS.update({name: copy.deepcopy(METHODS[scaled[0]]) for name, scaled in KD_SCALES.items()})


def method_cfg(task: DemoTask,
               method: str,
               work_dir: str,
               args,
               seed: int,
               checkpoints: Optional[Dict[str, str]],
               iters: int,
               bad_teachers: Sequence[str] = ()):
    """The runner config of one (method, seed, pool) run.

    Args:
        task (DemoTask): The task.
        method (str): A :data:`METHODS` key.
        work_dir (str): The run's work dir.
        args: The parsed command line (``data_root``, ``teacher_dir``, ``epochs``,
            ``train_subset``, ``lr_per_iteration``, ``kd_temperature``,
            ``logit_kd_weight``).
        seed (int): The run's seed (the agent's too).
        checkpoints (dict, optional): The pool's teacher checkpoints.
        iters (int): Training iterations of the run (for the official agents' schedule).
        bad_teachers (Sequence[str]): The pool's bad teachers (for the oracle selection).

    Returns:
        Config: The runner config.
    """
    role = 'student_nokd' if METHODS[method] is None else 'mtkd_rl'
    cfg = load_cfg(
        task,
        role,
        work_dir,
        args.data_root,
        args.teacher_dir,
        args.epochs,
        seed,
        teacher_checkpoints=checkpoints)
    if args.train_subset:
        cfg.train_dataloader.dataset.indices = args.train_subset
    if args.lr_per_iteration:
        anneal_per_iteration(cfg)
    if METHODS[method] is not None:
        weighting = METHODS[method]
        weighting = copy.deepcopy(weighting(task.name) if callable(weighting) else weighting)
        if weighting['type'] == _MTKD['type']:
            # keep the config's MTKD-RL settings (e.g. state normalisation), shorten its
            # schedule: warm-up for the first quarter, then an agent update every tenth of the
            # run (about 8) and at every epoch end (the hook's own rule); the method's own
            # settings come last
            schedule = dict(
                cfg.model.weighting,
                warmup_iters=iters // 4,
                interval=max(1, iters // 10),
                seed=seed)
            schedule.pop('warmup_epochs', None)
            weighting = dict(schedule, **weighting)
        elif weighting.get('warmup_iters', 0) is None:
            weighting['warmup_iters'] = iters // 4  # the same warm-up as MTKD-RL's above
        elif weighting.get('weights') in ORACLE_RULES:
            weighting['weights'] = oracle_weights(
                list(cfg.model.teachers),
                bad_teachers,
                keep_aver=ORACLE_RULES[weighting['weights']])
        cfg.model.weighting = weighting
    if args.kd_temperature and cfg.model.get('logit_kd_loss'):
        cfg.model.logit_kd_loss.temperature = args.kd_temperature
    if args.logit_kd_weight and cfg.model.get('logit_kd_loss'):
        cfg.model.alpha = args.logit_kd_weight
    if method in KD_SCALES:
        _, alpha_factor, beta_factor = KD_SCALES[method]
        cfg.model.alpha *= alpha_factor
        cfg.model.beta *= beta_factor
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=-1, save_last=False)
    # teacher weights logged every 10 iterations: the shares over the second half of training
    # are read from them
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=10)
    return cfg


#: the ``weights`` of the :class:`FixedWeighting` methods filled in from the pool's bad
#: teachers, and whether the good teachers keep AVER's ``1/M`` (:func:`oracle_weights`)
ORACLE_RULES = {'drop_bad': False, 'aver_without_bad': True}


def oracle_weights(teachers: List[str],
                   bad_teachers: Sequence[str],
                   keep_aver: bool = False) -> List[float]:
    """The weights of a method that knows the pool: 0 for each bad teacher, the same for the
    others.

    Args:
        teachers (list[str]): The distiller's teachers, in order.
        bad_teachers (Sequence[str]): The pool's bad teachers.
        keep_aver (bool): Give the good teachers AVER's ``1/M`` (their weights then sum to less
            than 1) instead of sharing 1 among them.

    Returns:
        list[float]: One weight per teacher.
    """
    unknown = sorted(set(bad_teachers) - set(teachers))
    good = [t for t in teachers if t not in bad_teachers]
    if unknown or not good:
        raise ValueError(f'oracle selection: bad teachers {sorted(bad_teachers)} must be some, '
                         f'not all, of the teachers {teachers}')
    weight = 1 / len(teachers if keep_aver else good)
    return [0.0 if t in bad_teachers else weight for t in teachers]


def student_schedule(task: DemoTask, args) -> Tuple[int, int]:
    """Epochs and training iterations of the (possibly subset) student run.

    Args:
        task (DemoTask): The demo task.
        args: The parsed command line (``epochs``, ``train_subset`` and the folders).

    Returns:
        tuple[int, int]: ``(epochs, iterations)``; the epochs are ``args.epochs`` or the
        student config's own.
    """
    cfg = load_cfg(task, 'student_nokd', args.out, args.data_root, args.teacher_dir, args.epochs)
    init_default_scope(cfg.default_scope)
    images = len(DATASETS.build(cfg.train_dataloader.dataset))
    per_epoch = math.ceil(
        min(images, args.train_subset or images) / cfg.train_dataloader.batch_size)
    return cfg.train_cfg.max_epochs, cfg.train_cfg.max_epochs * per_epoch


def logged_weights(work_dir: str) -> Optional[Dict[str, Dict[str, np.ndarray]]]:
    """Each teacher's logged KD weights, per kind.

    Args:
        work_dir (str): The run's work dir (its logged scalars).

    Returns:
        dict | None: ``{'logit': {teacher: weights}, 'feat': {...}}``, one value per logged
        step (a kind with no logged weight maps to ``{}``); None where the run logged no
        scalars.
    """
    try:
        logged = read_weights(find_scalars(work_dir))
    except FileNotFoundError:
        return None
    return {
        kind: {
            t: np.array([w for _, w in values])
            for t, values in sorted(logged[prefix].items())
        }
        for kind, prefix in (('logit', 'weight_logit/'), ('feat', 'weight_feat/'))
    }


def teacher_shares(work_dir: str) -> Optional[Dict[str, Dict[str, float]]]:
    """Each teacher's share of the logit-KD and of the feature-KD weight: its logged weight
    divided by the weights' sum over teachers at each logged step, averaged over the second
    half of training.

    Args:
        work_dir (str): The run's work dir (its logged scalars).

    Returns:
        dict | None: ``{'logit': {teacher: share}, 'feat': {teacher: share}}`` (a kind with no
        logged weight maps to ``{}``); None where the run logged no scalars.
    """
    logged = logged_weights(work_dir)
    if logged is None:
        return None
    shares = {}
    for kind, series in logged.items():
        if not series:
            shares[kind] = {}
            continue
        totals = np.maximum(np.sum(list(series.values()), axis=0), 1e-12)
        half = len(totals) // 2
        shares[kind] = {t: float((w / totals)[half:].mean()) for t, w in series.items()}
    return shares


def weight_totals(work_dir: str) -> Optional[Dict[str, float]]:
    """The sum of the teachers' logit-KD and feature-KD weights, averaged over the second half
    of training: 1 for weights that sum to 1, less where a weighting drops a teacher without
    handing its weight on (``normalise='max'``), M - 1 for EBKD's.

    Args:
        work_dir (str): The run's work dir (its logged scalars).

    Returns:
        dict | None: ``{'logit': total, 'feat': total}`` (only the kinds with logged
        weights); None where the run logged no scalars.
    """
    logged = logged_weights(work_dir)
    if logged is None:
        return None
    totals = {}
    for kind, series in logged.items():
        if series:
            summed = np.sum(list(series.values()), axis=0)
            totals[kind] = float(summed[len(summed) // 2:].mean())
    return totals


def worst_bad_shares(shares: Optional[Dict[str, Dict[str, float]]],
                     bad: List[str]) -> Tuple[Optional[float], Optional[float]]:
    """The largest logit-KD and feature-KD share of the pool's bad teachers.

    Args:
        shares (dict, optional): :func:`teacher_shares` of a run.
        bad (list[str]): The pool's bad teachers.

    Returns:
        tuple: ``(logit share, feature share)``; None where nothing was logged or the pool has
        no bad teacher.
    """
    worst = []
    for kind in ('logit', 'feat'):
        of_kind = (shares or {}).get(kind, {})
        if not bad or any(t not in of_kind for t in bad):
            worst.append(None)
        else:
            worst.append(max(of_kind[t] for t in bad))
    return worst[0], worst[1]


def efficacy_record(task: DemoTask, pool: str, method: str, seed: int, metrics: dict) -> dict:
    """One run in the format of ``docs/results/agent_efficacy.json``.

    Args:
        task (DemoTask): The task.
        pool (str): The pool.
        method (str): The method.
        seed (int): The seed.
        metrics (dict): The run's metrics (test metrics, shares, updates, minutes).

    Returns:
        dict: The record.
    """
    key = task.metrics[0][0]
    return dict(
        task=task.name,
        pool=pool,
        bad_teachers=sorted(task_pools(task.name)[pool]),
        method=method,
        seed=seed,
        metric=key,
        value=round(metrics[key] * task.scale, 4),
        bad_share_logit=metrics.get('bad_share_logit'),
        bad_share_feat=metrics.get('bad_share_feat'),
        teacher_shares=metrics.get('teacher_shares'),
        weight_totals=metrics.get('weight_totals'),
        agent_updates=metrics.get('agent_updates'),
        minutes=round(metrics['minutes'], 3),
        teachers=metrics.get('teachers'))


def record_run(path: str, record: dict) -> List[dict]:
    """Add (or replace) one run in an efficacy file under a lock, so that several benchmark
    processes can fill one grid without losing each other's runs.

    Args:
        path (str): The JSON file ``{"recommended": ..., "runs": [...]}`` (created if missing).
        record (dict): The run (see :func:`efficacy_record`).

    Returns:
        list[dict]: All runs now in the file.
    """
    with open(path + '.lock', 'w') as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        data = dict(recommended=RECOMMENDED, runs=[])
        if osp.isfile(path):
            with open(path) as f:
                data = json.load(f)
        same = ('task', 'pool', 'method', 'seed')
        data['runs'] = [r for r in data['runs'] if any(r[k] != record[k] for k in same)] + [record]
        data['recommended'] = RECOMMENDED
        save_json_atomically(data, path)
    return data['runs']


def run_settings(args) -> dict:
    """What a run records of its schedule, evaluation and KD settings (the keys that
    ``merge_efficacy.SCHEDULE_KEYS`` pairs runs by), from the parsed command line."""
    settings = optional_settings(args)
    settings.update(epochs=args.epochs, train_subset=args.train_subset, val_images=args.val_images)
    return settings


def check_efficacy_file(args) -> None:
    """Refuse, before any training, to write runs into an efficacy file that holds the same
    task, pool, method and seed made with other settings: a file keeps one run per such key, so
    the new run would silently replace the other setting's.

    Args:
        args: The parsed command line (``efficacy_file``, the grid, its settings; ``epochs``
            resolved).

    Raises:
        ValueError: Naming the clashing runs, both settings and what to do.
    """
    if not args.efficacy_file or not osp.isfile(args.efficacy_file):
        return
    with open(args.efficacy_file) as f:
        stored = {(r['task'], r['pool'], r['method'], r['seed']): r for r in json.load(f)['runs']}
    mine = schedule_of(run_settings(args))
    clashes = []
    for pool, method, seed in grid_runs(args):
        run = stored.get((args.task, pool, method, seed))
        if run is not None and schedule_of(run) != mine:
            clashes.append(f'{pool}/{method}/seed {seed}: {dict(schedule_of(run))}')
    if clashes:
        raise ValueError(
            f'quality.py: {args.efficacy_file} already holds {len(clashes)} of these runs made '
            f'with other settings (e.g. {"; ".join(clashes[:3])}); this command\'s are '
            f'{dict(mine)}, and a file keeps one run per task, pool, method and seed, so they '
            'would be replaced. Give this setting its own --efficacy-file.')


def optional_settings(args) -> dict:
    """The settings recorded only when given (``lr_per_iteration``, ``kd_temperature``,
    ``logit_kd_weight``), so that output folders and records of runs made before an option
    existed still match.

    Args:
        args: The parsed command line.

    Returns:
        dict: The options that are set.
    """
    given = dict(
        lr_per_iteration=args.lr_per_iteration,
        kd_temperature=args.kd_temperature,
        logit_kd_weight=args.logit_kd_weight)
    return {key: value for key, value in given.items() if value}


def check_settings(args) -> None:
    """Refuse to resume into an output folder whose results came from other settings (they would
    be mixed into one table); record the settings of a new folder.

    Args:
        args: The parsed command line (``out`` and the settings that change results).
    """
    settings = dict(
        task=args.task,
        epochs=args.epochs,
        train_subset=args.train_subset,
        val_images=args.val_images,
        pools={p: task_pools(args.task)[p]
               for p in args.pools})
    settings.update(optional_settings(args))
    path = osp.join(args.out, 'settings.json')
    if osp.isfile(path):
        with open(path) as f:
            stored = json.load(f)
        stored_pools, pools = stored.pop('pools', {}), settings.pop('pools')
        clash = {p for p in set(stored_pools) & set(pools) if stored_pools[p] != pools[p]}
        if stored != settings or clash:
            sys.exit(f'[quality] {args.out} holds results of other settings '
                     f'({dict(stored, pools=stored_pools)}); these are '
                     f'{dict(settings, pools=pools)}: give another --out')
        save_json_atomically(dict(settings, pools=dict(stored_pools, **pools)), path)
    else:
        save_json_atomically(settings, path)


def val_data_root(task: DemoTask, args) -> str:
    """The data folder of the runs: for the composite tasks (detection, segmentation) with
    ``--val-images``, a copy of the composite set whose validation split has that many images
    (the training split is the same: it is drawn first from the same seed)."""
    if task.name not in ('detection', 'segmentation') or not args.val_images:
        return args.data_root
    root = f'{args.data_root.rstrip("/")}_val{args.val_images}'
    if not osp.isfile(osp.join(root, 'annotations', 'val.json')):
        from mmtkd.datasets.composite import build
        print(f'[quality] building {root} ({args.val_images} validation images)')
        build(
            root,
            val=args.val_images,
            fashion_root=osp.join(osp.dirname(args.data_root.rstrip('/')), 'fashion_mnist'))
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--task', choices=sorted(TASKS), default='classification')
    parser.add_argument(
        '--methods',
        nargs='+',
        choices=list(METHODS),
        default=list(BASELINES) + [RECOMMENDED],
        help='default: the baselines and the recommended agent (the paired grid)')
    parser.add_argument('--pools', nargs='+', help='default: every pool of the task (POOLS)')
    parser.add_argument('--seeds', nargs='+', type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument(
        '--epochs', type=int, help="student training epochs (default: the student config's)")
    parser.add_argument(
        '--train-subset', type=int, help='train on the first N training images only')
    parser.add_argument(
        '--val-images',
        type=int,
        help='detection, segmentation: evaluate on a composite validation split of this many '
        'images')
    parser.add_argument(
        '--lr-per-iteration',
        action='store_true',
        help="step the config's epoch-based LR schedule every iteration (the demo's cosine "
        'otherwise holds its first value through a one-epoch run)')
    parser.add_argument(
        '--kd-temperature',
        type=float,
        help="every method's logit-KD temperature (default: the task config's)")
    parser.add_argument(
        '--logit-kd-weight',
        type=float,
        help="every method's logit-KD weight, the distiller's alpha (default: the task "
        "config's; the KD_SCALES methods scale it further)")
    parser.add_argument('--data-root')
    parser.add_argument(
        '--teacher-dir',
        default='work_dirs/demo/teachers',
        help="teacher cache (the demo's; teachers missing there are trained)")
    parser.add_argument('--out', default='work_dirs/benchmark/quality')
    parser.add_argument(
        '--efficacy-file',
        help='also record every run in this shared file (docs/results/agent_efficacy.json)')
    parser.add_argument(
        '--lanes',
        type=int,
        default=1,
        help='run the grid as this many processes side by side, one run each, taken in the '
        "grid's order (logs in OUT/lanes); 2 on a 2-core machine")
    parser.add_argument(
        '--lane-threads',
        type=int,
        default=1,
        help='OpenMP threads of each lane (default 1: the runs are small models)')
    parser.add_argument(
        '--summary-only',
        action='store_true',
        help="train nothing: print the task's tables from --efficacy-file and draw them "
        '(OUT/quality.md, OUT/quality.png)')
    # set by a grid's parent on each lane's command line: the parent made the pools' teachers
    parser.add_argument('--lane-of-grid', action='store_true', help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.lanes < 1 or args.lane_threads < 1:
        parser.error('--lanes and --lane-threads must be at least 1')
    task = TASKS[args.task]
    args.pools = args.pools or list(POOLS[task.name])
    unknown = sorted(set(args.pools) - set(task_pools(task.name)))
    if unknown:
        parser.error(f'unknown pools {unknown} for {task.name}: {sorted(task_pools(task.name))}')
    if args.summary_only:
        if not args.efficacy_file:
            parser.error('--summary-only reads --efficacy-file')
        with open(args.efficacy_file) as f:
            write_summary(task, json.load(f)['runs'], args, 'runs of ' + args.efficacy_file)
        return
    args.data_root = args.data_root or task.data_root
    os.makedirs(args.out, exist_ok=True)
    task.build_data(args.data_root)
    pools = pool_checkpoints(
        task, args, make=not args.lane_of_grid) if any(METHODS[m] for m in args.methods) else {}
    args.epochs, iters = student_schedule(task, args)
    check_settings(args)
    check_efficacy_file(args)
    run_root = val_data_root(task, args)
    results_file = osp.join(args.out, 'results.json')
    runs = []
    if osp.isfile(results_file):
        with open(results_file) as f:
            runs = json.load(f)['runs']
    done = {(r['pool'], r['method'], r['seed']) for r in runs}
    pending = [run for run in grid_runs(args) if run not in done]
    if args.lanes > 1 and pending:
        runs = run_grid_in_lanes(pending, args, sys.argv[1:], results_file)
    elif pending:
        grid = GridContext(task, args, pools, iters, run_root, results_file)
        for pool, method, seed in pending:
            runs = make_run(grid, pool, method, seed)
    write_summary(
        task, runs, args, f'student trained {args.epochs} epoch(s) on '
        f'{args.train_subset or "all"} training images, seeds {args.seeds}, CPU')


class GridContext(NamedTuple):
    """What every run of one grid shares.

    Attributes:
        task (DemoTask): The demo task.
        args: The parsed command line.
        pools (dict): ``{pool: {teacher: checkpoint}}`` (empty without a distillation method).
        iters (int): The student's training iterations.
        run_root (str): The data folder of the runs (:func:`val_data_root`).
        results_file (str): ``OUT/results.json``.
    """
    task: DemoTask
    args: argparse.Namespace
    pools: Dict[str, Dict[str, str]]
    iters: int
    run_root: str
    results_file: str


def make_run(grid: GridContext, pool: str, method: str, seed: int) -> List[dict]:
    """Train and test one student of the grid in this process and record it in
    ``OUT/results.json`` (and ``--efficacy-file``).

    Args:
        grid (GridContext): What the grid's runs share.
        pool (str): The teacher pool.
        method (str): The weighting method (:data:`METHODS`).
        seed (int): The seed of the student's initialisation and data order.

    Returns:
        list[dict]: Every run now in ``OUT/results.json``.
    """
    task, args = grid.task, grid.args
    print(f'[quality] {pool}/{method}/{seed}')
    work_dir = osp.join(args.out, 'runs', pool, method, f'seed{seed}')
    start = time.time()
    cfg = method_cfg(task, method, work_dir, args, seed, grid.pools.get(pool), grid.iters,
                     task_pools(task.name)[pool])
    set_data_root(cfg, grid.run_root)
    metrics = train_and_test(task, cfg, inspect=agent_updates)
    metrics['minutes'] = (time.time() - start) / 60
    metrics['teachers'] = teacher_fingerprints(
        grid.pools.get(pool) if METHODS[method] is not None else None)
    if METHODS[method] is not None:
        metrics['teacher_shares'] = teacher_shares(work_dir)
        metrics['weight_totals'] = weight_totals(work_dir)
        metrics['bad_share_logit'], metrics['bad_share_feat'] = worst_bad_shares(
            metrics['teacher_shares'], sorted(task_pools(task.name)[pool]))
    record = efficacy_record(task, pool, method, seed, metrics)
    # the schedule and evaluation, so that merged files pair like with like
    record.update(run_settings(args))
    runs = record_run(grid.results_file, record)
    if args.efficacy_file:
        record_run(args.efficacy_file, record)
    return runs


def grid_runs(args) -> List[Tuple[str, str, int]]:
    """The grid's runs in the order they are made: pool by pool, seed by seed, every method of a
    seed before the next seed, so that an interrupted grid leaves whole cells of paired seeds.

    Args:
        args: The parsed command line (``pools``, ``seeds``, ``methods``).

    Returns:
        list[tuple]: ``(pool, method, seed)`` of every run (the student alone on the clean pool
        only: it has no teachers to make bad).
    """
    return [(pool, method, seed) for pool in args.pools for seed in args.seeds
            for method in args.methods if METHODS[method] is not None or pool == 'clean']


def run_grid_in_lanes(pending: Sequence[Tuple[str, str, int]], args, argv: Sequence[str],
                      results_file: str) -> List[dict]:
    """Make the pending runs in ``args.lanes`` processes side by side: each is this script with
    the same command line for one run, into the same ``--out`` and ``--efficacy-file`` (both
    written under a lock).

    Args:
        pending (Sequence[tuple]): ``(pool, method, seed)`` of the runs not made yet, in order.
        args: The parsed command line.
        argv (Sequence[str]): The command line as given; each run's ``--pools``, ``--methods``,
            ``--seeds``, ``--lanes 1`` and ``--lane-of-grid`` (read the pools' teachers this
            process made) are appended (argparse keeps an option's last value).
        results_file (str): ``OUT/results.json``.

    Returns:
        list[dict]: Every run in ``results_file`` once the lanes are done.
    """
    script = osp.join(ROOT, 'tools', 'benchmark', 'quality.py')
    runs = [
        LaneRun(f'{pool}_{method}_seed{seed}', [
            sys.executable, script, *argv, '--pools', pool, '--methods', method, '--seeds',
            str(seed), '--lanes', '1', '--lane-of-grid'
        ]) for pool, method, seed in pending
    ]
    print(f'[quality] {len(runs)} runs in {args.lanes} lanes of {args.lane_threads} thread(s)')
    statuses = run_in_lanes(runs, args.lanes, osp.join(args.out, 'lanes'), args.lane_threads)
    failed = sorted(name for name, status in statuses.items() if status != 0)
    if failed:
        sys.exit(f'[quality] runs failed: {failed} (logs in {osp.join(args.out, "lanes")})')
    with open(results_file) as f:
        return json.load(f)['runs']


def write_summary(task: DemoTask, runs: List[dict], args, note: str) -> None:
    """Print the tables of ``runs`` and write them (``OUT/quality.md``) and their plot
    (``OUT/quality.png``).

    Args:
        task (DemoTask): The task.
        runs (list[dict]): Efficacy records.
        args: The parsed command line (``pools``, ``out``).
        note (str): The caption's settings.
    """
    data = task.caption(args.val_images)
    table = summarise(task, runs, args.pools, f'{data}; {note}', list(METHODS))
    print(table)
    os.makedirs(args.out, exist_ok=True)
    with open(osp.join(args.out, 'quality.md'), 'w') as f:
        f.write(table + '\n')
    figure = plot_summary(task, runs, args.pools, osp.join(args.out, 'quality.png'), data,
                          list(METHODS))
    print(f'[quality] wrote {figure}')


def agent_updates(runner) -> dict:
    """The number of agent updates of a finished run (none without an agent)."""
    for hook in runner.hooks:
        learner = getattr(hook, 'learner', None)
        if learner is not None:
            return dict(agent_updates=learner.num_updates)
    return {}


if __name__ == '__main__':
    main()
