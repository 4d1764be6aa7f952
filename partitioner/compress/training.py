"""The short training that follows a structural change: distillation through the frozen tail.

The student (a pruned, factorised or new head) learns to reproduce the teacher head
at the cut (hint loss, normalised by the teacher's variance so that it does not
depend on the features' scale) and, through the frozen tail, the teacher's soft
predictions and the labels. Only the student's weights move; the tail is the
deployed cloud half and stays byte for byte what it was. Runs are reproducible:
the torch RNG is forked and seeded, the batch order comes from a seeded Generator.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from partitioner.compress.config import TrainConfig
from partitioner.compress.head import Context, as_tuple


def distill_loss(
    student_cut: tuple[torch.Tensor, ...],
    teacher_cut: tuple[torch.Tensor, ...],
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor | None,
    config: TrainConfig,
) -> torch.Tensor:
    loss = student_logits.new_zeros(())
    if config.hint_weight:
        hint = sum(
            F.mse_loss(s, t) / (t.var() + 1e-6)
            for s, t in zip(student_cut, teacher_cut, strict=True)
        )
        loss = loss + config.hint_weight * hint / len(student_cut)
    classifier = student_logits.dim() == 2
    if config.soft_weight:
        if classifier:
            temp = config.temperature
            soft = F.kl_div(
                F.log_softmax(student_logits / temp, dim=1),
                F.log_softmax(teacher_logits / temp, dim=1),
                reduction="batchmean",
                log_target=True,
            )
            loss = loss + config.soft_weight * temp * temp * soft
        else:  # not a classifier: match the outputs themselves
            loss = loss + config.soft_weight * F.mse_loss(student_logits, teacher_logits)
    if config.label_weight and classifier and labels is not None:
        loss = loss + config.label_weight * F.cross_entropy(student_logits, labels)
    return loss


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Torch on one intra-op thread, restored afterwards.

    The batches here are small: on a loaded 2-core machine one forward and backward
    pass of a two-conv student on 64 MNIST frames took 514 ms on two threads (spinning
    OpenMP workers) and 24 ms on one (measured), and one thread is no slower idle.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def train_student(student: nn.Module, ctx: Context, config: TrainConfig, *, task: str) -> None:
    """Train ``student`` in place against the context's teacher and frozen tail."""
    if config.epochs == 0:
        student.eval()
        return
    x = ctx.data.x_train
    y = ctx.data.y_train
    teacher_cut, teacher_logits = ctx.teacher_outputs("train")
    n = x.shape[0]
    steps_per_epoch = math.ceil(n / config.batch_size)
    rng = np.random.default_rng(ctx.seed)
    params = [p for p in student.parameters() if p.requires_grad]
    with torch.random.fork_rng(devices=[]), torch.enable_grad(), one_thread():
        torch.manual_seed(ctx.seed)
        optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
        schedule = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, config.lr, total_steps=config.epochs * steps_per_epoch
        )
        student.train()
        ctx.report(task, 0, config.epochs)
        for epoch in range(1, config.epochs + 1):
            for index in torch.split(torch.from_numpy(rng.permutation(n)), config.batch_size):
                s_cut = as_tuple(student(x[index]))
                loss = distill_loss(
                    s_cut,
                    tuple(t[index] for t in teacher_cut),
                    ctx.logits(s_cut),
                    teacher_logits[index],
                    y[index],
                    config,
                )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
            ctx.report(task, epoch, config.epochs)
    student.eval()
