"""Can the compact agent state tell a trained detection teacher from an untrained one and from
one with wrong classes? A logistic probe on the states a credit agent sees, on composite data.

The pool is three copies of one architecture (the demo's RetinaNet-R18 teacher): as trained,
randomly initialised (``untrained``), and with its class outputs rolled (``permuted``), so that
nothing but what each teacher knows can tell them apart. The student (the demo's) trains with
the compact-state credit agent (:data:`PROBED`) through the distiller for ``--iters``
iterations; every step the agent's per-teacher state (the compact state ``[KL, CE, p, H]``)
and the per-teacher credit (the agreement reward) are logged. A multinomial logistic
regression (scikit-learn) is fitted on the first half of the logged images and scored on the
second half: the accuracy of telling each teacher's kind from one image's state, and from its
credit, for the three kinds together and for two at a time.

Usage:
    python tools/analysis/dense_state_probe.py [--iters 60] \\
        [--out docs/results/dense_state_probe.json]
"""
import argparse
import os.path as osp
from typing import Dict, List, Tuple

import numpy as np
import torch
from mmengine.runner import Runner

from mmtkd.benchmark.quality import METHODS
from mmtkd.benchmark.teacher_pools import permute_class_outputs, untrained_teacher
from mmtkd.demo.tasks import TASKS, load_cfg, save_json_atomically
from mmtkd.engine import AgentLearner

KINDS = ('trained', 'untrained', 'permuted')
#: the credit agent acting on the compact state (the recommended one learns from the same
#: credit but acts per teacher, on no per-sample state)
PROBED = 'mtkd_rl_credit_compact'


def pool_checkpoints(teacher_dir: str, out: str) -> Dict[str, str]:
    """The three kinds of the demo's res18 detection teacher.

    Args:
        teacher_dir (str): The demo's teacher cache (holds ``composite_res18.pth``).
        out (str): Where the corrupted copies go.

    Returns:
        dict: ``{kind: checkpoint}``.
    """
    task = TASKS['detection']
    trained = task.teacher_checkpoint(teacher_dir, 'res18')
    if not osp.isfile(trained):
        raise FileNotFoundError(f'{trained} is missing: run python tools/demo.py once (it trains '
                                'and caches the detection teachers)')
    return dict(
        trained=trained,
        untrained=untrained_teacher(task, 'res18', osp.join(out, 'probe_untrained.pth')),
        permuted=permute_class_outputs(trained, osp.join(out, 'probe_permuted.pth'),
                                       task.class_scores, task.num_classes))


def log_states(checkpoints: Dict[str, str],
               data_root: str,
               work_dir: str,
               iters: int,
               seed: int = 0) -> Tuple[np.ndarray, np.ndarray]:
    """Train the student with the compact-state credit agent and log what it sees.

    Args:
        checkpoints (dict): ``{kind: checkpoint}`` of the pool.
        data_root (str): The composite data.
        work_dir (str): The runner's work dir.
        iters (int): Training iterations.
        seed (int): Seed of the run.

    Returns:
        tuple: ``states`` (N, M, 4) per-teacher states as the distiller computes them and
        ``credit`` (N, M) raw agreements of the N logged images, teachers in :data:`KINDS`
        order. (The agent normalises each teacher's part of the state with that teacher's own
        running statistics, so it tells teachers apart by their position in the state as well;
        a probe pooled over teachers must see the raw values.)
    """
    task = TASKS['detection']
    cfg = load_cfg(
        task, 'mtkd_rl', work_dir, data_root, osp.dirname(checkpoints['trained']), seed=seed)
    spec = cfg.model.teachers.res18
    cfg.model.teachers = {kind: dict(spec, checkpoint=checkpoints[kind]) for kind in KINDS}
    cfg.model.weighting = METHODS[PROBED]
    runner = Runner.from_cfg(cfg)
    model = runner.model.train()
    learner = AgentLearner.attach_to(model)
    optim = runner.build_optim_wrapper(cfg.optim_wrapper)
    loader = runner.build_dataloader(cfg.train_dataloader)
    states: List[torch.Tensor] = []
    credit: List[torch.Tensor] = []
    done = 0
    while done < iters:
        for data_batch in loader:
            runner.message_hub.update_info('iter', done)
            data = model.data_preprocessor(data_batch, training=True)
            losses = model(**data, mode='loss')
            optim.update_params(model.parse_losses(losses)[0])
            learner.take_step()
            # what the learner stored: the step's states and raw per-teacher credit
            states.append(learner.buffer[-1]['states'])
            credit.append(learner.buffer[-1]['reward'])
            if (done + 1) % learner.interval == 0:
                learner.update()
            done += 1
            if done == iters:
                break
    num_teachers = len(KINDS)
    all_states = torch.cat(states).reshape(-1, num_teachers, 4).cpu().numpy()
    return all_states, torch.cat(credit).cpu().numpy()


def probe_accuracy(features: np.ndarray) -> float:
    """Held-out accuracy of a logistic regression telling each teacher's kind from its features.

    Args:
        features (np.ndarray): (N, M, F) per image and teacher, teachers in :data:`KINDS`
            order; the first half of the images trains the probe, the second half scores it.

    Returns:
        float: The accuracy (chance: 1 / M).
    """
    from sklearn.linear_model import LogisticRegression
    images, num_teachers = features.shape[:2]
    labels = np.tile(np.arange(num_teachers), (images, 1))
    half = images // 2
    rows = features.reshape(images * num_teachers, -1)
    train, test = slice(0, half * num_teachers), slice(half * num_teachers, None)
    probe = LogisticRegression(max_iter=2000).fit(rows[train], labels.flatten()[train])
    return float(probe.score(rows[test], labels.flatten()[test]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--iters', type=int, default=60)
    parser.add_argument('--data-root', default='data/composite')
    parser.add_argument('--teacher-dir', default='work_dirs/demo/teachers')
    parser.add_argument('--work-dir', default='work_dirs/analysis/dense_state_probe')
    parser.add_argument('--out', default='docs/results/dense_state_probe.json')
    args = parser.parse_args()
    TASKS['detection'].build_data(args.data_root)
    checkpoints = pool_checkpoints(args.teacher_dir, args.work_dir)
    states, credit = log_states(checkpoints, args.data_root, args.work_dir, args.iters)
    result = dict(
        pool='res18 teacher: ' + ', '.join(KINDS),
        images=int(states.shape[0]),
        iters=args.iters,
        chance=1 / len(KINDS),
        accuracy_state=probe_accuracy(states),
        accuracy_credit=probe_accuracy(credit[..., None]),
        accuracy_state_and_credit=probe_accuracy(np.concatenate([states, credit[..., None]], 2)),
        # two kinds at a time: chance 0.5
        accuracy_state_trained_vs_untrained=probe_accuracy(states[:, [0, 1]]),
        accuracy_state_trained_vs_permuted=probe_accuracy(states[:, [0, 2]]),
        mean_state={
            k: states[:, m].mean(0).round(3).tolist()
            for m, k in enumerate(KINDS)
        },
        mean_credit={
            k: round(float(credit[:, m].mean()), 4)
            for m, k in enumerate(KINDS)
        })
    save_json_atomically(result, args.out)
    for key, value in result.items():
        print(f'{key}: {value}')
