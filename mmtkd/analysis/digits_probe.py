"""A small, real-data probe of teacher weighting: scikit-learn digits, MLP teachers and student,
logit KD only, some teachers poisoned (their logits permuted across classes).

Used by the behaviour tests and by ``tools/analysis/digits_probe.py`` to show whether a weighting
strategy learns to distrust bad teachers. It drives a weighting exactly the way the distiller and
:class:`mmtkd.engine.MTKDRLAgentHook` do (progress in the MessageHub -> weights -> loss from
``weighted_kd`` -> step record -> optimiser step -> the learner stores the step -> update).
"""
from typing import Dict, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.logging import MessageHub

from mmtkd.engine import AgentLearner
from mmtkd.models.distillers import StepRecord, weighted_kd
from mmtkd.models.losses import temperature_kl_div
from mmtkd.models.weighting import BaseWeighting, MTKDRLWeighting, TeacherSignals
from mmtkd.registry import MODELS

NUM_CLASSES = 10


def load_digits_split(seed: int = 0):
    """Standardised scikit-learn digits, split 1400 train / rest test.

    Args:
        seed (int): Shuffle seed.

    Returns:
        tuple: ``(x_train, y_train, x_test, y_test)`` tensors.
    """
    from sklearn.datasets import load_digits
    data = load_digits()
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(data.target))
    x = torch.tensor(data.data[order] / 16.0, dtype=torch.float32)
    y = torch.tensor(data.target[order], dtype=torch.long)
    return x[:1400], y[:1400], x[1400:], y[1400:]


def mlp(hidden: int) -> nn.Sequential:
    """A two-layer MLP on the 64 pixels."""
    return nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, NUM_CLASSES))


def train_teachers(x: torch.Tensor,
                   y: torch.Tensor,
                   hidden: Sequence[int] = (64, 96, 128),
                   steps: int = 300,
                   seed: int = 0):
    """Fit one MLP teacher per hidden size (full batch, Adam).

    Returns:
        list[nn.Sequential]: The frozen teachers.
    """
    teachers = []
    for i, width in enumerate(hidden):
        torch.manual_seed(seed + i)
        model = mlp(width)
        optim = torch.optim.Adam(model.parameters(), lr=1e-2)
        for _ in range(steps):
            optim.zero_grad()
            F.cross_entropy(model(x), y).backward()
            optim.step()
        teachers.append(model.eval().requires_grad_(False))
    return teachers


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Top-1 accuracy."""
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


def _signals(student_logits, teacher_logits, teacher_hidden, y, temperature) -> TeacherSignals:
    kl = torch.stack(
        [temperature_kl_div(student_logits.detach(), t, temperature) for t in teacher_logits], 1)
    ce = torch.stack([F.cross_entropy(t, y, reduction='none') for t in teacher_logits], 1)
    log_p = [F.log_softmax(t, 1) for t in teacher_logits]
    entropy = torch.stack([-(lp.exp() * lp).sum(1) for lp in log_p], 1)
    zeros = torch.zeros_like(kl)
    return TeacherSignals(
        logit_kd=kl,
        feature_kd=zeros,
        feature_cos=zeros,
        teacher_loss=ce,
        teacher_entropy=entropy,
        teacher_confidence=(-ce).exp(),
        embeddings=teacher_hidden,
        logit_summaries=list(teacher_logits),
        student_loss=F.cross_entropy(student_logits.detach(), y, reduction='none'))


def run_digits_probe(weighting_cfg: dict,
                     poisoned: Sequence[int] = (2, ),
                     iters: int = 800,
                     batch_size: int = 64,
                     temperature: float = 4.0,
                     seed: int = 0,
                     teachers=None,
                     lr: float = 0.1) -> Dict[str, object]:
    """Distil an MLP student on digits from three teachers with ``weighting_cfg``.

    Args:
        weighting_cfg (dict): Any weighting config (``mmtkd.MTKDRLWeighting``, AVER, ...).
        poisoned (Sequence[int]): Indices of teachers whose logits are permuted across classes.
        iters (int): Student iterations.
        batch_size (int): Samples per iteration.
        temperature (float): KD temperature.
        seed (int): Seed of data order, student init and the agent.
        teachers (list, optional): Pre-trained teachers (trained here if None).
        lr (float): Student learning rate (SGD, momentum 0.9). Defaults to 0.1 (batch 64).

    Returns:
        dict: ``mean_logit_weights`` (M floats, deterministic weights on the test set),
        ``student_acc``, ``teacher_acc`` (after poisoning).
    """
    x, y, x_test, y_test = load_digits_split(seed)
    teachers = teachers or train_teachers(x, y, seed=seed)
    permutation = torch.roll(torch.arange(NUM_CLASSES), 3)

    def teacher_outputs(inputs):
        logits, hidden = [], []
        for m, teacher in enumerate(teachers):
            h = teacher[1](teacher[0](inputs))
            z = teacher[2](h)
            logits.append(z[:, permutation] if m in poisoned else z)
            hidden.append(h)
        return logits, hidden

    torch.manual_seed(seed)
    weighting: BaseWeighting = MODELS.build(weighting_cfg)
    weighting.setup(len(teachers), [t[0].out_features for t in teachers], NUM_CLASSES, beta=0.0)
    learner = None
    if isinstance(weighting, MTKDRLWeighting):
        learner = AgentLearner(weighting, **weighting.learning_cfg)
    student = mlp(32)
    optim = torch.optim.SGD(student.parameters(), lr=lr, momentum=0.9)
    generator = torch.Generator().manual_seed(seed)
    hub = MessageHub.get_current_instance()
    weighting.train()
    for it in range(iters):
        hub.update_info('epoch', 0)
        hub.update_info('iter', it)
        idx = torch.randint(0, len(y), (batch_size, ), generator=generator)
        xb, yb = x[idx], y[idx]
        with torch.no_grad():
            t_logits, t_hidden = teacher_outputs(xb)
        s_logits = student(xb)
        signals = _signals(s_logits, t_logits, t_hidden, yb, temperature)
        weights = weighting(signals)
        kd = torch.stack([temperature_kl_div(s_logits, t, temperature) for t in t_logits], 1)
        kd_loss, kd_share = weighted_kd(weights.logit, kd, 1.0)  # alpha 1, no feature KD
        loss = F.cross_entropy(s_logits, yb) + kd_loss
        optim.zero_grad()
        loss.backward()
        optim.step()
        weighting.record(StepRecord(signals, weights, [kd_share], signals.student_loss, xb, yb))
        if learner is None:
            continue
        loss_after = None
        if learner.reward.after_step:
            with torch.no_grad():
                loss_after = F.cross_entropy(student(xb), yb, reduction='none')
        learner.take_step(loss_after)
        if (it + 1) % learner.interval == 0:
            learner.update()
    weighting.eval()
    with torch.no_grad():
        t_logits, t_hidden = teacher_outputs(x_test)
        signals = _signals(student(x_test), t_logits, t_hidden, y_test, temperature)
        mean_weights = weighting(signals).logit.mean(0)
    return dict(
        mean_logit_weights=[round(w, 4) for w in mean_weights.tolist()],
        student_acc=accuracy(student, x_test, y_test),
        teacher_acc=[(t.argmax(1) == y_test).float().mean().item() for t in t_logits])
