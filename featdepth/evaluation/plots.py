"""Plots for evaluation: trajectory top views and colour-mapped disparities.

Figures are built with :class:`matplotlib.figure.Figure` and rendered by the Agg canvas directly, so
importing or calling these functions never touches pyplot or the global backend.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from featdepth.utils.files import PathLike

__all__ = ["plot_trajectories_topview", "colorize_disparity"]



def _positions(poses: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(poses, dtype=np.float64)
    if arr.ndim != 3 or arr.shape[1:] not in ((4, 4), (3, 4)):
        raise ValueError(f"{name} must be (N, 4, 4) or (N, 3, 4), got shape {arr.shape}")
    return arr[:, :3, 3]


def plot_trajectories_topview(
    path: PathLike,
    gt: np.ndarray | None,
    pred: np.ndarray | Sequence[np.ndarray],
    labels: Sequence[str] | None = None,
    *,
    gt_label: str = "Ground truth",
    title: str | None = None,
    dpi: int = 110,
    units: str = "m",
) -> Path:
    """Save an x-z top view (camera x right, z forward; equal aspect) of one or more trajectories.

    Args:
        path: output image (``.png``, ``.pdf``, ... by extension).
        gt: ``(N, 4, 4)`` GT ``T_world_cam`` or ``None``.
        pred: one ``(M, 4, 4)`` trajectory or a sequence of them.
        labels: one label per predicted trajectory (default ``"Prediction"``, ``"Prediction 2"``, ...).
        units: the axis unit: ``"m"`` for metric trajectories, e.g. ``"relative units"`` when the scale is unknown.

    Returns:
        the written path.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    preds = [pred] if isinstance(pred, np.ndarray) and np.asarray(pred).ndim == 3 else list(pred)
    if isinstance(labels, str):
        labels = [labels]
    if labels is None:
        labels = ["Prediction" if i == 0 else f"Prediction {i + 1}" for i in range(len(preds))]
    if len(labels) != len(preds):
        raise ValueError(f"{len(preds)} trajectories but {len(labels)} labels")
    fig = Figure(figsize=(6, 6))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    if gt is not None:
        g = _positions(gt, "gt")
        ax.plot(g[:, 0], g[:, 2], color="k", linestyle="--", linewidth=1.5, label=gt_label)
        ax.plot(g[0, 0], g[0, 2], "ks", markersize=5, label="Start")
    for i, (p, lab) in enumerate(zip(preds, labels)):
        xyz = _positions(p, f"pred[{i}]")
        ax.plot(xyz[:, 0], xyz[:, 2], linewidth=1.5, label=lab)
    ax.set_xlabel(f"x ({units})")
    ax.set_ylabel(f"z ({units})")
    ax.set_aspect("equal", adjustable="datalim")
    ax.grid(True, linewidth=0.3)
    ax.legend(loc="best")
    if title:
        ax.set_title(title)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    return path


def colorize_disparity(disp: np.ndarray, vmax: float | None = None, cmap: str = "magma", *,
                       vmin: float | None = None) -> np.ndarray:
    """Colour-map a disparity map the field's way (magma, ``vmin = min``, ``vmax = 95th percentile``).

    Args:
        disp: ``(H, W)`` disparity (any positive scale).
        vmax: upper end of the colour range; default ``np.percentile(disp, 95)``. Values above it
            saturate at the top colour.
        cmap: a name of ``matplotlib.colormaps``.
        vmin: lower end of the colour range; default the minimum of ``disp`` (a fixed range across
            the frames of a video keeps the colours from flickering).

    Returns:
        ``(H, W, 3)`` uint8 RGB.
    """
    import matplotlib
    from matplotlib.colors import Normalize

    d = np.asarray(disp, dtype=np.float64)
    if d.ndim == 3 and d.shape[0] == 1:
        d = d[0]
    if d.ndim != 2:
        raise ValueError(f"disp must be (H, W), got shape {np.shape(disp)}")
    vmin = float(np.min(d)) if vmin is None else float(vmin)
    top = float(np.percentile(d, 95)) if vmax is None else float(vmax)
    if top <= vmin:
        top = vmin + 1e-12
    norm = Normalize(vmin=vmin, vmax=top, clip=True)
    rgba = matplotlib.colormaps[cmap](norm(d))
    return (rgba[..., :3] * 255).astype(np.uint8)
