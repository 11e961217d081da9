"""Region labels of the synthetic scenes and depth metrics per region (textureless walls, textured walls,
road, objects): what the paper's claim is about."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from featdepth.evaluation.depth_metrics import compute_depth_errors, resize_bilinear

#: Region labels of the synthetic generator (``featdepth.data.synthetic``).
REGION_NAMES: dict[int, str] = {0: "sky", 1: "road", 2: "textureless", 3: "textured", 4: "object"}
#: Regions reported separately (textureless first: the paper's claim is about them).
EVAL_REGIONS: tuple[int, ...] = (2, 3, 1, 4)

# --------------------------------------------------------------------------------------------------
# per-region depth metrics
# --------------------------------------------------------------------------------------------------


def region_masks(regions: np.ndarray, valid: np.ndarray, region_ids: Sequence[int] = EVAL_REGIONS) -> dict[str, np.ndarray]:
    """Boolean masks ``{"all": valid, "<region name>": valid & (regions == id), ...}``.

    Args:
        regions: ``(H, W)`` integer region labels (0 sky, 1 road, 2 textureless, 3 textured, 4 object).
        valid: ``(H, W)`` boolean mask of the evaluated pixels.
        region_ids: labels to make masks for (names from :data:`REGION_NAMES`).
    """
    regions = np.asarray(regions)
    valid = np.asarray(valid, dtype=bool)
    if regions.shape != valid.shape:
        raise ValueError(f"regions {regions.shape} and valid {valid.shape} must have the same shape")
    out = {"all": valid}
    for r in region_ids:
        out[REGION_NAMES.get(int(r), f"region{int(r)}")] = valid & (regions == int(r))
    return out


def region_depth_errors(
    gt: np.ndarray,
    pred: np.ndarray,
    regions: np.ndarray,
    *,
    region_ids: Sequence[int] = EVAL_REGIONS,
    min_depth: float = 1e-3,
    max_depth: float = 80.0,
    min_region_pixels: int = 20,
) -> tuple[dict[str, dict[str, float] | None], float, dict[str, int]]:
    """Depth metrics of one image, overall and per region, with one median scale for the whole image.

    Args:
        gt: ``(H, W)`` GT depth in metres (0 or ``>= max_depth`` = not evaluated).
        pred: ``(h, w)`` predicted depth (any scale); resized bilinearly to ``(H, W)``.
        regions: ``(H, W)`` region labels aligned with ``gt``.
        region_ids, min_depth, max_depth: see the module docstring.
        min_region_pixels: a region with fewer valid pixels in this image gets ``None``.

    Returns:
        ``(metrics, ratio, counts)``: ``metrics[name]`` is the dict of
        :func:`~featdepth.evaluation.depth_metrics.compute_depth_errors` (or ``None``) for ``"all"`` and
        each region name; ``ratio = median(gt) / median(pred)`` over all valid pixels (applied to every
        subset); ``counts[name]`` the number of valid pixels.
    """

    gt = np.asarray(gt, dtype=np.float64)
    pred = np.asarray(pred, dtype=np.float64)
    if pred.ndim == 3 and pred.shape[0] == 1:
        pred = pred[0]
    if gt.ndim != 2 or pred.ndim != 2:
        raise ValueError(f"gt and pred must be 2-D, got {gt.shape} and {pred.shape}")
    if pred.shape != gt.shape:
        pred = resize_bilinear(pred, gt.shape)
    valid = np.isfinite(gt) & (gt > min_depth) & (gt < max_depth)
    if not valid.any():
        raise ValueError("no valid ground-truth pixel in this image")
    masks = region_masks(regions, valid, region_ids)
    ratio = float(np.median(gt[valid]) / np.median(pred[valid]))
    scaled = np.clip(np.nan_to_num(pred * ratio, nan=min_depth, posinf=max_depth, neginf=min_depth), min_depth, max_depth)
    metrics: dict[str, dict[str, float] | None] = {}
    counts: dict[str, int] = {}
    for name, m in masks.items():
        n = int(m.sum())
        counts[name] = n
        metrics[name] = compute_depth_errors(gt[m], scaled[m]) if n >= (1 if name == "all" else min_region_pixels) else None
    return metrics, ratio, counts


def evaluate_region_depth(
    gts: Sequence[np.ndarray],
    preds: Sequence[np.ndarray],
    regions: Sequence[np.ndarray],
    **kwargs: Any,
) -> dict[str, dict[str, Any]]:
    """:func:`region_depth_errors` over images; the mean of each metric over the images that have it.

    Returns:
        ``{name: {"metrics": {metric: mean}, "images": n_images, "pixels": n_pixels}}`` for ``"all"``
        and each region (``metrics`` is empty where no image had enough pixels of the region).
    """
    if not (len(gts) == len(preds) == len(regions)):
        raise ValueError(f"{len(gts)} GT maps, {len(preds)} predictions, {len(regions)} region maps")
    per_name: dict[str, list[dict[str, float]]] = {}
    pixels: dict[str, int] = {}
    for i, (g, p, r) in enumerate(zip(gts, preds, regions)):
        try:
            metrics, _, counts = region_depth_errors(g, p, r, **kwargs)
        except ValueError as exc:
            raise ValueError(f"image {i}: {exc}") from exc
        for name, m in metrics.items():
            per_name.setdefault(name, [])
            if m is not None:
                per_name[name].append(m)
                pixels[name] = pixels.get(name, 0) + counts[name]
    out: dict[str, dict[str, Any]] = {}
    for name, items in per_name.items():
        mean = {k: float(np.mean([m[k] for m in items])) for k in items[0]} if items else {}
        out[name] = {"metrics": mean, "images": len(items), "pixels": pixels.get(name, 0)}
    return out
