"""Validation during training: the one evaluation loop on the held-out data, without perturbing the
training random streams (so that resuming stays exact)."""

from __future__ import annotations

import random
from typing import Any, Iterator

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from featdepth.evaluation.loop import evaluate_depth_batches
from featdepth.inference.model import Model
from featdepth.utils.runtime import autocast_context, move_batch


def _depth_batches(loader: DataLoader) -> Iterator[tuple[torch.Tensor, list[np.ndarray]]]:
    for batch in loader:
        if "depth_gt" not in batch:
            return
        yield batch["color"][0], [g[0].numpy() for g in batch["depth_gt"]]


@torch.no_grad()
def validate(system: nn.Module, loader: DataLoader, device: torch.device, amp: str = "none",
             max_images: int | None = None) -> dict[str, float]:
    """Depth metrics with per-image median scaling where GT exists (``1e-3 < gt < 80``, no crop: the
    synthetic scenes' far background at exactly 80 m is not counted), through
    :func:`featdepth.evaluation.loop.evaluate_depth_batches`; the FeatureNet stage reports its
    reconstruction loss instead. Returns ``{}`` when the validation data has no ground truth."""
    was_training = system.training
    py_state, np_state = random.getstate(), np.random.get_state()
    rng_guard = torch.random.fork_rng(devices=[])
    rng_guard.__enter__()
    try:
        if system.stage == "featurenet":
            system.eval()
            totals: list[float] = []
            for batch in loader:
                batch = move_batch(batch, device)
                with autocast_context(device, amp):
                    out, _ = system(batch)
                totals.append(float(out.terms["reconstruction"]))
                if max_images and len(totals) * batch["color"][0].shape[0] >= max_images:
                    break
            return {"reconstruction": float(np.mean(totals))} if totals else {}
        model = Model.from_networks(system.depth_net, system.pose_net, system.cfg, stage=system.stage,
                                    source="validation", device=device, amp=amp)
        try:
            result, _ = evaluate_depth_batches(model, _depth_batches(loader), protocol="uncropped", scaling="median",
                                               max_images=max_images, batch_size=loader.batch_size or 1)
        except ValueError as exc:
            if "no image with ground-truth depth" in str(exc):
                return {}
            raise
        metrics: dict[str, Any] = dict(result.metrics)
        metrics["median_ratio"] = result.ratio_median
        return metrics
    finally:
        rng_guard.__exit__(None, None, None)
        random.setstate(py_state)
        np.random.set_state(np_state)
        system.train(was_training)
