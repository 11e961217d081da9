"""One optimisation step: forward, backward, clip, update; a non-finite loss or gradient skips the update."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import torch
from torch import nn

from featdepth.training.distributed import all_gather_object, all_true
from featdepth.utils.runtime import autocast_context


@dataclass
class StepResult:
    total: float
    terms: dict[str, float]
    weighted: dict[str, float]
    finite: bool
    grad_norm: float
    nonfinite_terms: list[str] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)


def train_step(
    system: nn.Module,
    batch: Mapping[str, Any],
    optimizer: torch.optim.Optimizer,
    *,
    device: torch.device,
    amp: str = "none",
    scaler: torch.amp.GradScaler | None = None,
    grad_clip: float | None = 35.0,
    params: list[nn.Parameter] | None = None,
    sync: bool | None = None,
) -> StepResult:
    """Forward, backward, clip, step. A non-finite loss or gradient skips the update.

    Under DistributedDataParallel (``sync=None`` detects it; ``sync=True`` forces it) the ranks first agree
    on whether every rank's loss is finite: all skip the backward together (a rank that skipped alone would
    leave the others waiting in the gradient all-reduce), and the names of the non-finite terms of every
    rank are gathered. Gradients are averaged over ranks by DDP, so the gradient check agrees by itself.
    """
    if sync is None:
        sync = isinstance(system, nn.parallel.DistributedDataParallel)
    optimizer.zero_grad(set_to_none=True)
    with autocast_context(device, amp):
        out, outputs = system(batch)
    total = out.total.float()
    finite = bool(torch.isfinite(total))
    bad_terms = [k for k, v in out.terms.items() if not bool(torch.isfinite(v.detach()))]
    if not finite and not bad_terms:
        bad_terms = ["total"]
    if sync:
        finite = all_true(finite, device)
        if not finite:
            gathered = all_gather_object(bad_terms)
            bad_terms = sorted({t for rank_terms in gathered for t in rank_terms})
    grad_norm = float("nan")
    if finite:
        if scaler is not None:
            scaler.scale(total).backward()
            scaler.unscale_(optimizer)
        else:
            total.backward()
        params = params if params is not None else [p for p in system.parameters() if p.requires_grad]
        norm = torch.nn.utils.clip_grad_norm_(params, grad_clip if grad_clip else float("inf"))
        grad_norm = float(norm)
        if not math.isfinite(grad_norm):
            finite = False
            bad_terms = bad_terms or ["gradients"]
            optimizer.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.update()
        elif scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
    else:
        optimizer.zero_grad(set_to_none=True)
    terms = {k: float(v.detach()) for k, v in out.terms.items()}
    weighted = {k: float(v.detach()) for k, v in out.weighted_terms().items()}
    return StepResult(float(total.detach()), terms, weighted, finite, grad_norm, bad_terms, outputs)
