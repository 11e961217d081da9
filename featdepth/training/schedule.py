"""Learning-rate schedule of the paper's runs (docs/method.md §3.1).

Linear warm-up over the first ``warmup_iters`` iterations from ``warmup_ratio``·lr, then step decay:
``lr = base · gamma^k`` with k the number of milestones (epochs) ≤ the current 0-based epoch.
"""

from __future__ import annotations

from bisect import bisect_right
from typing import Sequence

import torch


def lr_factor(
    step: int,
    epoch: int,
    *,
    warmup_iters: int = 500,
    warmup_ratio: float = 1.0 / 3.0,
    milestones: Sequence[int] = (20, 30),
    gamma: float = 0.5,
) -> float:
    """Multiplier of the base learning rate at iteration ``step`` (0-based) in ``epoch`` (0-based)."""
    decay = gamma ** bisect_right(sorted(milestones), epoch)
    if warmup_iters > 0 and step < warmup_iters:
        warm = 1.0 - (1.0 - step / warmup_iters) * (1.0 - warmup_ratio)
        return warm * decay
    return decay


class WarmupStepSchedule:
    """Sets the learning rate of every parameter group from the step and epoch counters.

    Stateless apart from the base learning rates, so resuming needs only the step and epoch.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, *, warmup_iters: int, warmup_ratio: float,
                 milestones: Sequence[int], gamma: float) -> None:
        self.optimizer = optimizer
        self.base_lrs = [g.get("initial_lr", g["lr"]) for g in optimizer.param_groups]
        for g, lr in zip(optimizer.param_groups, self.base_lrs):
            g["initial_lr"] = lr
        self.kwargs = dict(warmup_iters=warmup_iters, warmup_ratio=warmup_ratio, milestones=list(milestones), gamma=gamma)

    def set(self, step: int, epoch: int) -> float:
        f = lr_factor(step, epoch, **self.kwargs)
        for g, lr in zip(self.optimizer.param_groups, self.base_lrs):
            g["lr"] = lr * f
        return self.optimizer.param_groups[0]["lr"]

    def state_dict(self) -> dict:
        return {"base_lrs": list(self.base_lrs), **self.kwargs}

    def load_state_dict(self, state: dict) -> None:
        self.base_lrs = list(state["base_lrs"])
