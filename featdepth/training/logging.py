"""Run logging: TensorBoard scalars and images, a text log, and picture helpers.

Only the main process (rank 0) writes; other ranks get a logger whose methods do nothing.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch import Tensor
from featdepth.evaluation.plots import colorize_disparity


def pca_image(features: Tensor) -> Tensor:
    """Project a feature map ``(C,h,w)`` onto its first three principal components -> ``(3,h,w)`` in [0,1].

    The author's recommended visualisation of FeatureNet features (docs/method.md §5).
    """
    if features.dim() != 3:
        raise ValueError(f"features must be (C,h,w), got {tuple(features.shape)}")
    c, h, w = features.shape
    x = features.detach().float().reshape(c, -1).T  # (N, C)
    x = x - x.mean(dim=0, keepdim=True)
    q = min(3, c)
    try:
        _, _, v = torch.linalg.svd(x, full_matrices=False)
        proj = x @ v[:q].T  # (N, q)
    except RuntimeError:
        proj = x[:, :q]
    if q < 3:
        proj = torch.cat([proj, proj.new_zeros(proj.shape[0], 3 - q)], dim=1)
    lo = proj.quantile(0.01, dim=0, keepdim=True) if proj.shape[0] > 1 else proj.min(0, keepdim=True).values
    hi = proj.quantile(0.99, dim=0, keepdim=True) if proj.shape[0] > 1 else proj.max(0, keepdim=True).values
    proj = ((proj - lo) / (hi - lo).clamp_min(1e-8)).clamp(0, 1)
    return proj.T.reshape(3, h, w)


def colorize(disp: Tensor | np.ndarray) -> np.ndarray:
    """Magma colour map of a disparity ``(h,w)`` with vmax at its 95th percentile -> uint8 ``(h,w,3)``."""

    if isinstance(disp, Tensor):
        disp = disp.detach().float().cpu().numpy()
    return colorize_disparity(np.asarray(disp).squeeze())


class RunLogger:
    """TensorBoard + JSON-lines log for the main process; a no-op elsewhere."""

    def __init__(self, out_dir: str | Path, enabled: bool = True, tensorboard: bool = True) -> None:
        self.enabled = enabled
        self.out_dir = Path(out_dir)
        self.writer = None
        self._log = None
        if not enabled:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._log = open(self.out_dir / "log.jsonl", "a", buffering=1)
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(log_dir=str(self.out_dir / "tensorboard"))
            except Exception as exc:  # noqa: BLE001 - TensorBoard is optional at run time
                print(f"[featdepth] TensorBoard disabled: {exc}", file=sys.stderr)

    def scalars(self, step: int, values: Mapping[str, float], prefix: str = "") -> None:
        if not self.enabled:
            return
        clean = {f"{prefix}{k}": float(v) for k, v in values.items()}
        self._tensorboard(lambda w: [w.add_scalar(k, v, step) for k, v in clean.items()])
        if self._log is not None:
            self._log.write(json.dumps({"step": step, "time": time.time(), **clean}) + "\n")

    def log_step(self, step: int, result: Any, *, total: float, lr: float, step_time: float, data_time: float,
                 images: int, skipped_steps: int) -> None:
        """The scalars of one training step: the total and every term (unweighted and weighted), learning rate,
        gradient norm, timings, throughput and the count of skipped (non-finite) steps."""
        values = {"loss/total": total, "lr": lr, "grad_norm": result.grad_norm,
                  "time/step_s": step_time, "time/data_s": data_time,
                  "throughput/images_per_s": images / max(step_time + data_time, 1e-9),
                  "skipped_steps": skipped_steps}
        values.update({f"loss/{k}": v for k, v in result.terms.items()})
        values.update({f"loss_weighted/{k}": v for k, v in result.weighted.items()})
        self.scalars(step, values)

    def image(self, tag: str, step: int, image: np.ndarray | Tensor) -> None:
        """``image``: uint8 (h,w,3) array or float tensor (3,h,w) in [0,1]."""
        if not self.enabled or self.writer is None:
            return
        if isinstance(image, Tensor):
            picture = image.detach().float().clamp(0, 1).cpu()
            self._tensorboard(lambda w: w.add_image(tag, picture, step))
        else:
            self._tensorboard(lambda w: w.add_image(tag, np.asarray(image), step, dataformats="HWC"))

    def _tensorboard(self, write: Any) -> None:
        """Run ``write(writer)``; a failing TensorBoard writer (its folder deleted, a full disk) stops TensorBoard
        logging with one warning instead of ending the training run (log.jsonl keeps every scalar)."""
        if self.writer is None:
            return
        try:
            write(self.writer)
        except Exception as exc:  # noqa: BLE001 - logging must never end a training run
            self._drop_tensorboard(exc)

    def _drop_tensorboard(self, exc: BaseException) -> None:
        writer, self.writer = self.writer, None
        print(f"[featdepth] TensorBoard logging stopped ({type(exc).__name__}: {exc}); training goes on and "
              f"{self.out_dir / 'log.jsonl'} keeps the scalars", file=sys.stderr)
        self.text(f"TensorBoard logging stopped: {type(exc).__name__}: {exc}")
        try:
            writer.close()
        except Exception:  # noqa: BLE001 - the writer is already broken
            pass

    def text(self, message: str) -> None:
        if self.enabled and self._log is not None:
            self._log.write(json.dumps({"time": time.time(), "message": message}) + "\n")

    def log_training_images(self, step: int, batch: Mapping[str, Any], outputs: Mapping[str, Any]) -> None:
        """Input, colour-mapped disparity, warped sources, and a PCA of the FeatureNet features."""
        if not self.enabled or self.writer is None:
            return
        self.image("train/input", step, batch["color"][0][0])
        if "disp" in outputs:
            self.image("train/disparity", step, colorize(outputs["disp"][0][0, 0]))
        for f, img in outputs.get("warped", {}).items():
            self.image(f"train/warped_{f}", step, img[0])
        if "features" in outputs:
            self.image("train/features_pca", step, pca_image(outputs["features"][0]))
        if "reconstructions" in outputs:
            self.image("train/reconstruction", step, outputs["reconstructions"][0][0])
        if "automask" in outputs:
            self.image("train/automask", step, outputs["automask"][0].float().expand(3, -1, -1))

    def close(self) -> None:
        if self.writer is not None:
            try:
                self.writer.flush()
                self.writer.close()
                self.writer = None
            except Exception as exc:  # noqa: BLE001 - the run's results are saved; do not fail on the log
                self._drop_tensorboard(exc)
        if self._log is not None:
            self._log.close()
            self._log = None
