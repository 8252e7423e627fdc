"""The learning-rate schedule of the paper's ImageNet recipe: linear warm-up (per iteration)
then a step decay (per epoch)."""

from __future__ import annotations

import torch
from torch.optim.lr_scheduler import LambdaLR


def lr_factor(
    epoch: float, warmup_epochs: float, warmup_start_factor: float, step_epochs: int, gamma: float
) -> float:
    """Multiplier of the base lr at fractional epoch ``epoch`` (0 = start of training).

    Warm-up rises linearly from ``warmup_start_factor`` to 1 over ``warmup_epochs``; the step
    decay counts whole epochs from the start: epochs [30, 60) give gamma, [60, 90) gamma^2 ...
    """
    decay = gamma ** (int(epoch) // step_epochs)
    if epoch < warmup_epochs:
        return decay * (warmup_start_factor + (1.0 - warmup_start_factor) * epoch / warmup_epochs)
    return decay


def warmup_step_scheduler(
    optimizer: torch.optim.Optimizer,
    iters_per_epoch: int,
    warmup_epochs: float,
    warmup_start_factor: float,
    step_epochs: int,
    gamma: float,
) -> LambdaLR:
    """A LambdaLR stepped once per iteration that follows :func:`lr_factor`.

    The lambda is a closure, so the scheduler's state dict holds only its step count.
    """

    def factor(step: int) -> float:
        return lr_factor(step / iters_per_epoch, warmup_epochs, warmup_start_factor, step_epochs,
                         gamma)

    return LambdaLR(optimizer, factor)
