"""Online refinement (test-time training), both protocols of docs/method.md §3.6.

FeatDepth's paper reports "online refinement" rows (M*, MS*) described as "20 iterations on one test
sample" (following struct2depth / GLNet), while the released config (``cfg_kitti_fm_refine.py``)
trains one model on the whole test split for 20 more epochs. The two are different experiments and
neither is comparable with a plain evaluation, so both are provided and every output says which one
ran:

- :func:`refine_per_sample` (``"per-sample"``): for each test image, start from the trained weights,
  run ``steps`` iterations (default 20) of the stage's own training objective on that single sample
  (the target with its temporal / stereo neighbours), predict its disparity, then restore the
  weights. The model passed in is unchanged afterwards (parameters *and* BatchNorm buffers).
- :func:`refine_whole_split` (``"whole-split"``): train on the whole test split (with the training
  augmentation) for ``epochs`` epochs, lr halved half-way, as the released config does; then the caller
  evaluates the refined model. This one modifies the model in place.

Both use :func:`featdepth.training.step.train_step` (the same forward, loss, clipping and
non-finite handling as training). Predictions are returned as *scaled disparities*
(``disp_to_depth(sigmoid, min_depth, max_depth)[0]``), the input the Eigen protocol expects.
"""

from __future__ import annotations

import copy
import math
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable, Optional, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, default_collate

from featdepth.evaluation.loop import predict_scaled_disparities
from featdepth.inference.model import Model
from featdepth.training.step import train_step
from featdepth.utils.runtime import move_batch

__all__ = [
    "REFINE_PROTOCOLS",
    "RefinementResult",
    "refinement_label",
    "predict_scaled_disparity",
    "refine_per_sample",
    "refine_whole_split",
]

REFINE_PROTOCOLS = ("per-sample", "whole-split")


def refinement_label(protocol: Optional[str], *, steps: Optional[int] = None, epochs: Optional[int] = None) -> str:
    """Human-readable label of a refinement protocol, used in every printout and JSON file."""
    if protocol is None or protocol == "none":
        return "no online refinement"
    if protocol == "per-sample":
        return (f"online refinement, per-sample: {steps} iterations of the training objective on each test "
                f"image from the trained weights, weights restored after each (paper's 'M*'/'MS*' wording)")
    if protocol == "whole-split":
        return (f"online refinement, whole-split: {epochs} epoch(s) of training on the whole test split, "
                f"then evaluation (the released cfg_kitti_fm_refine protocol)")
    raise ValueError(f"refinement protocol must be one of {REFINE_PROTOCOLS} or None, got {protocol!r}")


@dataclass
class RefinementResult:
    """Outcome of an online refinement.

    Attributes:
        protocol: ``"per-sample"`` or ``"whole-split"``.
        label: :func:`refinement_label` text (say it wherever the numbers are shown).
        disparities: ``(N, h, w)`` float32 scaled disparities after refinement (``None`` for
            whole-split, where the caller predicts with the refined model).
        steps: iterations per sample (per-sample) or total optimiser steps (whole-split).
        epochs: epochs (whole-split only).
        lr: learning rate.
        num_refined: samples refined (per-sample) / training samples (whole-split).
        unrefined: items predicted without refinement because a neighbour frame is missing.
        loss_first, loss_last: mean loss of the first and of the last iteration (over samples for
            per-sample, over the first / last epoch for whole-split).
        nonfinite_steps: optimiser steps skipped because of non-finite values.
    """

    protocol: str
    label: str
    disparities: Optional[np.ndarray] = None
    steps: int = 0
    epochs: Optional[int] = None
    lr: float = 0.0
    num_refined: int = 0
    unrefined: list = field(default_factory=list)
    loss_first: float = math.nan
    loss_last: float = math.nan
    nonfinite_steps: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "protocol": self.protocol,
            "label": self.label,
            "steps": int(self.steps),
            "epochs": self.epochs,
            "lr": float(self.lr),
            "num_refined": int(self.num_refined),
            "num_unrefined": len(self.unrefined),
            "unrefined": [str(u) for u in self.unrefined[:20]],
            "loss_first": float(self.loss_first),
            "loss_last": float(self.loss_last),
            "nonfinite_steps": int(self.nonfinite_steps),
        }


# --------------------------------------------------------------------------------------------------
# Prediction
# --------------------------------------------------------------------------------------------------


def predict_scaled_disparity(system: Any, images: torch.Tensor, *, post_process: bool = False,
                             device: torch.device | str = "cpu") -> np.ndarray:
    """Scaled disparity ``(B, h, w)`` of the system's depth network for ``images`` ``(B,3,H,W)``, through
    the one evaluation loop (:func:`featdepth.evaluation.loop.predict_scaled_disparities`)."""
    model = Model.from_networks(system.depth_net, system.pose_net, system.cfg, stage=system.stage, device=device)
    return predict_scaled_disparities(model, images, post_process=post_process)


# --------------------------------------------------------------------------------------------------
# Per-sample
# --------------------------------------------------------------------------------------------------


def _check_system(system: Any) -> None:
    if getattr(system, "stage", None) == "featurenet" or getattr(system, "depth_net", None) is None:
        raise ValueError("online refinement needs a depth model (stage depth, joint or baseline), not a FeatureNet checkpoint")


def _as_batch(sample: dict[str, Any], device: torch.device | str) -> dict[str, Any]:

    return move_batch(default_collate([sample]), torch.device(device))


def refine_per_sample(
    system: nn.Module,
    dataset: Dataset,
    *,
    steps: int = 20,
    lr: Optional[float] = None,
    eval_dataset: Optional[Dataset] = None,
    post_process: bool = False,
    device: torch.device | str = "cpu",
    grad_clip: Optional[float] = None,
    seed: int = 0,
    progress: bool = False,
    on_sample: Optional[Callable[[int, list[float]], None]] = None,
) -> RefinementResult:
    """Per-sample online refinement: ``steps`` iterations on each test sample, predict, restore.

    Args:
        system: a :class:`~featdepth.training.system.FeatDepthSystem` of stage depth, joint or baseline.
            Its state (parameters and buffers) and train/eval mode are restored on return, also on error.
        dataset: the test samples *with the frame_ids of the model* (``system.cfg.data.frame_ids``),
            built with ``is_train=False`` (no augmentation); items must be hashable keys
            (``dataset.items``) when ``eval_dataset`` is given.
        steps: iterations of the training objective per sample (20 in the paper's wording).
        lr: Adam learning rate (default: the model's ``optim.lr``). A fresh optimiser per sample.
        eval_dataset: optional frame-0 dataset defining the order (and set) of the returned predictions.
            Its items missing from ``dataset`` (no neighbour frames) are predicted without refinement
            and listed in ``RefinementResult.unrefined``. Default: predict ``dataset``'s items.
        post_process: flip post-processing of the final prediction.
        grad_clip: gradient clipping (default: the model's ``optim.grad_clip``).
        seed: per-sample seed base (the loss adds tiny noise in the automask; runs are reproducible).
        on_sample: called as ``on_sample(index, losses)`` after each refined sample.

    Returns:
        :class:`RefinementResult` with ``disparities (N, h, w)`` scaled disparities.
    """

    _check_system(system)
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    cfg = system.cfg
    lr = float(cfg.optim.lr if lr is None else lr)
    clip = cfg.optim.grad_clip if grad_clip is None else grad_clip
    dev = torch.device(device)
    targets: Sequence[Any]
    index_of: dict[Hashable, int] = {}
    if eval_dataset is not None:
        items = getattr(dataset, "items", None)
        if items is None or getattr(eval_dataset, "items", None) is None:
            raise ValueError("eval_dataset needs both datasets to expose .items")
        index_of = {item: i for i, item in enumerate(items)}
        targets = list(eval_dataset.items)
    else:
        targets = list(range(len(dataset)))  # type: ignore[arg-type]

    initial_state = copy.deepcopy(system.state_dict())
    was_training = system.training
    params = [p for p in system.parameters() if p.requires_grad]
    preds: list[np.ndarray] = []
    unrefined: list[Any] = []
    firsts: list[float] = []
    lasts: list[float] = []
    nonfinite = 0
    n_refined = 0
    try:
        for k, target in enumerate(targets):
            if eval_dataset is not None:
                idx = index_of.get(target)
                if idx is None:
                    sample0 = eval_dataset[k]
                    system.load_state_dict(initial_state)
                    preds.append(predict_scaled_disparity(system, sample0["color"][0][None], post_process=post_process, device=dev)[0])
                    unrefined.append(target)
                    continue
            else:
                idx = int(target)
            sample = dataset[idx]
            batch = _as_batch(sample, dev)
            system.load_state_dict(initial_state)
            system.train()
            optimizer = torch.optim.Adam(params, lr=lr)
            losses: list[float] = []
            with torch.random.fork_rng(devices=[]):  # keep the caller's CPU random stream
                torch.manual_seed(seed * 1_000_003 + k)
                for _ in range(steps):
                    res = train_step(system, batch, optimizer, device=dev, grad_clip=clip, params=params)
                    losses.append(res.total)
                    nonfinite += 0 if res.finite else 1
            preds.append(predict_scaled_disparity(system, batch["color"][0], post_process=post_process, device=dev)[0])
            firsts.append(losses[0])
            lasts.append(losses[-1])
            n_refined += 1
            if on_sample is not None:
                on_sample(k, losses)
            if progress:
                print(f"\r[refine per-sample] {k + 1}/{len(targets)} loss {losses[0]:.4f} -> {losses[-1]:.4f}",
                      end="", file=sys.stderr, flush=True)
    finally:
        system.load_state_dict(initial_state)
        system.train(was_training)
        if progress:
            print(file=sys.stderr)
    return RefinementResult(
        protocol="per-sample",
        label=refinement_label("per-sample", steps=steps),
        disparities=np.stack(preds).astype(np.float32) if preds else np.zeros((0, 0, 0), np.float32),
        steps=steps,
        lr=lr,
        num_refined=n_refined,
        unrefined=unrefined,
        loss_first=float(np.mean(firsts)) if firsts else math.nan,
        loss_last=float(np.mean(lasts)) if lasts else math.nan,
        nonfinite_steps=nonfinite,
    )


# --------------------------------------------------------------------------------------------------
# Whole split
# --------------------------------------------------------------------------------------------------


def refine_whole_split(
    system: nn.Module,
    dataset: Dataset,
    *,
    epochs: int = 20,
    lr: Optional[float] = None,
    batch_size: Optional[int] = None,
    milestones: Optional[Sequence[int]] = None,
    gamma: float = 0.5,
    device: torch.device | str = "cpu",
    grad_clip: Optional[float] = None,
    num_workers: int = 0,
    seed: int = 0,
    max_steps: Optional[int] = None,
    progress: bool = False,
) -> RefinementResult:
    """Whole-split online refinement: train ``system`` **in place** on the test split for ``epochs``.

    Args:
        system: the model to refine (modified in place; load a fresh copy to keep the original).
        dataset: the test split with the model's frame_ids; ``is_train=True`` reproduces the released
            config (flip and colour augmentation), ``False`` trains on the plain frames.
        epochs: epochs over the split (the released config: 20, from epoch 40 to 60).
        lr: Adam learning rate (default the model's ``optim.lr``, 1e-4 in the paper).
        batch_size: default the model's ``optim.batch_size`` (capped at the split size).
        milestones: epochs (counted from the start of refinement) where the lr is multiplied by
            ``gamma``; default ``[epochs // 2]`` (the released config halves it at 50 of 40..60).
        max_steps: optional cap on optimiser steps (for quick runs).

    Returns:
        :class:`RefinementResult` (``disparities`` is ``None``: predict with the refined ``system``).
    """

    _check_system(system)
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    cfg = system.cfg
    lr = float(cfg.optim.lr if lr is None else lr)
    clip = cfg.optim.grad_clip if grad_clip is None else grad_clip
    n = len(dataset)  # type: ignore[arg-type]
    if n == 0:
        raise ValueError("the refinement split is empty")
    bs = max(1, min(int(batch_size or cfg.optim.batch_size), n))
    milestones = [epochs // 2] if milestones is None else list(milestones)
    dev = torch.device(device)
    gen = torch.Generator().manual_seed(seed)
    loader = DataLoader(dataset, batch_size=bs, shuffle=True, drop_last=True, num_workers=num_workers, generator=gen)
    params = [p for p in system.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=lr)
    system.train()
    total_steps = 0
    nonfinite = 0
    epoch_means: list[float] = []
    for epoch in range(epochs):
        factor = gamma ** sum(1 for m in milestones if epoch >= m)
        for group in optimizer.param_groups:
            group["lr"] = lr * factor
        losses: list[float] = []
        for batch in loader:
            batch = move_batch(batch, dev)
            res = train_step(system, batch, optimizer, device=dev, grad_clip=clip, params=params)
            total_steps += 1
            if res.finite:
                losses.append(res.total)
            else:
                nonfinite += 1
            if max_steps is not None and total_steps >= max_steps:
                break
        epoch_means.append(float(np.mean(losses)) if losses else math.nan)
        if progress:
            print(f"[refine whole-split] epoch {epoch + 1}/{epochs} loss {epoch_means[-1]:.4f}", file=sys.stderr, flush=True)
        if max_steps is not None and total_steps >= max_steps:
            break
    system.eval()
    return RefinementResult(
        protocol="whole-split",
        label=refinement_label("whole-split", epochs=epochs),
        disparities=None,
        steps=total_steps,
        epochs=epochs,
        lr=lr,
        num_refined=n,
        loss_first=epoch_means[0] if epoch_means else math.nan,
        loss_last=epoch_means[-1] if epoch_means else math.nan,
        nonfinite_steps=nonfinite,
    )
