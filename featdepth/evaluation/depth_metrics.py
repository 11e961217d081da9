"""KITTI depth evaluation: the Eigen protocol (Garg crop) and the improved-GT "eigen_benchmark" protocol.

Everything here is NumPy (plus one ``torch.nn.functional.interpolate`` call for the bilinear resize),
so it runs anywhere and is easy to check by hand.

The protocol (featdepth docs/method.md §4.1, monodepth2 ``evaluate_depth.py``), per image:

1. Resize the prediction to the GT size with a bilinear resize with half-pixel centres and no
   antialiasing (the semantics of ``cv2.resize(..., INTER_LINEAR)``). The standard resizes the
   *disparity* and then inverts it; pass disparities with ``pred_is_disparity=True`` to reproduce
   that exactly.
2. Mask: ``"eigen"``: ``min_depth < gt < max_depth`` and the Garg crop; ``"eigen_benchmark"``:
   ``gt > 0`` and no crop (exactly as monodepth2 does for the improved ground truth); ``"uncropped"``:
   ``min_depth < gt < max_depth`` and no crop (dense non-KITTI ground truth, e.g. the synthetic scenes).
3. Scale: ``ratio = median(gt) / median(pred)`` over the masked pixels is always computed (on the
   un-scaled prediction). ``scaling="median"`` multiplies by it (monocular models); a float multiplies
   by that fixed factor instead (stereo-trained models: 36 for FeatDepth's baseline of 0.015);
   ``None`` leaves the prediction as it is.
4. Clamp the prediction to ``[min_depth, max_depth]``. Predicted values that are NaN, infinite or
   negative are *not* clamped: they are an error naming the source and the
   count, or, with ``invalid_predictions="mask"``, left out (and counted in the result).
5. Metrics (:func:`compute_depth_errors`) per image, then the mean over images (not pixel pooling).

Units: depths in metres. Disparities are "scaled disparities" (``1 / depth`` up to the unknown scale);
a network's raw sigmoid output goes through :func:`disp_to_depth` first.
"""

from __future__ import annotations

import codecs
import json
import math
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Sequence, Union

import numpy as np
from featdepth.utils.files import PathLike

__all__ = [
    "DEPTH_METRIC_NAMES",
    "compute_depth_errors",
    "garg_crop_mask",
    "eigen_mask",
    "resize_bilinear",
    "disp_to_depth",
    "evaluate_depth_image",
    "evaluate_depth",
    "DepthEvalResult",
    "post_process_disparity",
    "load_predictions",
    "load_gt_depths",
]


#: Column order of the paper's table (and of monodepth2's printout).
DEPTH_METRIC_NAMES: tuple[str, ...] = ("abs_rel", "sq_rel", "rmse", "rmse_log", "a1", "a2", "a3")

#: Garg/Eigen crop as fractions of (height, height, width, width): rows [r0, r1) x cols [c0, c1).
GARG_CROP_FRACTIONS: tuple[float, float, float, float] = (0.40810811, 0.99189189, 0.03594771, 0.96405229)

Protocol = Literal["eigen", "eigen_benchmark", "uncropped"]
InvalidPredictions = Literal["error", "mask"]
Scaling = Union[Literal["median"], float, None]


# --------------------------------------------------------------------------------------------------
# Metrics and masks
# --------------------------------------------------------------------------------------------------


def compute_depth_errors(gt: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """The seven standard depth metrics on matching 1-D arrays of valid pixels.

    Args:
        gt: ``(N,)`` ground-truth depths in metres, all > 0.
        pred: ``(N,)`` predicted depths in metres, all > 0 (already scaled and clamped).

    Returns:
        ``{name: value}`` for :data:`DEPTH_METRIC_NAMES` (computed in float64):

        - ``abs_rel = mean(|g - p| / g)``
        - ``sq_rel = mean((g - p)^2 / g)``
        - ``rmse = sqrt(mean((g - p)^2))``
        - ``rmse_log = sqrt(mean((ln g - ln p)^2))``
        - ``a_k = mean(max(g/p, p/g) < 1.25^k)`` for ``k = 1, 2, 3``

    Raises:
        ValueError: shapes differ, the arrays are empty, or a value is not positive and finite.
    """
    g = np.asarray(gt, dtype=np.float64).reshape(-1)
    p = np.asarray(pred, dtype=np.float64).reshape(-1)
    if np.asarray(gt).ndim != 1 or np.asarray(pred).ndim != 1:
        raise ValueError(
            f"gt and pred must be 1-D arrays of valid pixels, got shapes {np.shape(gt)} and {np.shape(pred)}"
        )
    if g.shape != p.shape:
        raise ValueError(f"gt and pred must have the same length, got {g.shape[0]} and {p.shape[0]}")
    if g.size == 0:
        raise ValueError("no valid pixels: gt and pred are empty")
    if not (np.all(np.isfinite(g)) and np.all(g > 0)):
        raise ValueError("gt must be positive and finite at every evaluated pixel")
    if not (np.all(np.isfinite(p)) and np.all(p > 0)):
        raise ValueError("pred must be positive and finite at every evaluated pixel (clamp it first)")
    thresh = np.maximum(g / p, p / g)
    diff = g - p
    return {
        "abs_rel": float(np.mean(np.abs(diff) / g)),
        "sq_rel": float(np.mean(diff**2 / g)),
        "rmse": float(np.sqrt(np.mean(diff**2))),
        "rmse_log": float(np.sqrt(np.mean((np.log(g) - np.log(p)) ** 2))),
        "a1": float(np.mean(thresh < 1.25)),
        "a2": float(np.mean(thresh < 1.25**2)),
        "a3": float(np.mean(thresh < 1.25**3)),
    }


def garg_crop_mask(height: int, width: int) -> np.ndarray:
    """Boolean ``(height, width)`` mask of the Garg/Eigen crop.

    Rows ``[int32(0.40810811 H), int32(0.99189189 H))`` and columns
    ``[int32(0.03594771 W), int32(0.96405229 W))``, with the truncation toward zero of NumPy's
    ``astype(np.int32)`` as in the standard protocol. For 375x1242: rows 153..371, columns 44..1196.
    """
    if height <= 0 or width <= 0:
        raise ValueError(f"height and width must be positive, got {height}x{width}")
    fr0, fr1, fc0, fc1 = GARG_CROP_FRACTIONS
    r0, r1, c0, c1 = np.array([fr0 * height, fr1 * height, fc0 * width, fc1 * width]).astype(np.int32)
    mask = np.zeros((height, width), dtype=bool)
    mask[r0:r1, c0:c1] = True
    return mask


def eigen_mask(
    gt: np.ndarray,
    min_depth: float = 1e-3,
    max_depth: float = 80.0,
    crop: Literal["garg"] | None = "garg",
) -> np.ndarray:
    """Valid-pixel mask ``min_depth < gt < max_depth`` (strict), AND the Garg crop when ``crop="garg"``.

    Args:
        gt: ``(H, W)`` ground-truth depth in metres, 0 where there is no measurement.
    Returns:
        ``(H, W)`` bool.
    """
    gt = np.asarray(gt)
    if gt.ndim != 2:
        raise ValueError(f"gt must be (H, W), got shape {gt.shape}")
    mask = (gt > min_depth) & (gt < max_depth)
    if crop == "garg":
        mask &= garg_crop_mask(*gt.shape)
    elif crop is not None:
        raise ValueError(f"crop must be 'garg' or None, got {crop!r}")
    return mask


# --------------------------------------------------------------------------------------------------
# Resizing and disparity conversion
# --------------------------------------------------------------------------------------------------


def resize_bilinear(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a ``(h, w)`` map to ``size = (H, W)``.

    Same sampling as ``cv2.resize(image, (W, H), interpolation=cv2.INTER_LINEAR)`` on float input:
    half-pixel centres (source coordinate ``(x + 0.5) * w / W - 0.5``, clamped to the border) and no
    antialiasing when shrinking. Implemented with ``torch.nn.functional.interpolate(mode="bilinear",
    align_corners=False, antialias=False)``, so OpenCV is not needed. float64 input stays float64,
    anything else is computed in float32 (as OpenCV does for float32 maps).

    Returns:
        ``(H, W)`` array.
    """
    import torch
    import torch.nn.functional as F

    arr = np.asarray(image)
    if arr.ndim != 2:
        raise ValueError(f"resize_bilinear expects a (h, w) map, got shape {arr.shape}")
    H, W = int(size[0]), int(size[1])
    if H <= 0 or W <= 0:
        raise ValueError(f"size must be positive, got {size}")
    if arr.shape == (H, W):
        return arr.astype(np.float64 if arr.dtype == np.float64 else np.float32, copy=True)
    dtype = torch.float64 if arr.dtype == np.float64 else torch.float32
    t = torch.as_tensor(np.ascontiguousarray(arr), dtype=dtype)[None, None]
    out = F.interpolate(t, size=(H, W), mode="bilinear", align_corners=False, antialias=False)
    return out[0, 0].numpy()


def disp_to_depth(
    disp: np.ndarray, min_depth: float = 0.1, max_depth: float = 100.0
) -> tuple[np.ndarray, np.ndarray]:
    """Network sigmoid disparity in ``(0, 1)`` -> ``(scaled_disp, depth)``.

    ``scaled_disp = 1/max_depth + (1/min_depth - 1/max_depth) * disp`` and ``depth = 1 / scaled_disp``
    (the convention of docs/design.md; FeatDepth uses 0.1 and 100 on KITTI). Any shape.
    """
    disp = np.asarray(disp, dtype=np.float64 if np.asarray(disp).dtype == np.float64 else np.float32)
    if not (0 < min_depth < max_depth):
        raise ValueError(f"need 0 < min_depth < max_depth, got {min_depth}, {max_depth}")
    min_disp = 1.0 / max_depth
    max_disp = 1.0 / min_depth
    scaled = min_disp + (max_disp - min_disp) * disp
    return scaled, 1.0 / scaled


def post_process_disparity(disp: np.ndarray, disp_flipped: np.ndarray) -> np.ndarray:
    """Flip-and-blend post-processing (Monodepth v1 edge masks), done correctly.

    Args:
        disp: ``(..., h, w)`` disparity ``d_l`` predicted on the image.
        disp_flipped: ``(..., h, w)`` disparity ``d_r`` predicted on the horizontally flipped image,
            *as the network returned it* (still flipped; it is flipped back here).

    Returns:
        ``(..., h, w)``: ``r_mask * d_l + l_mask * flip(d_r) + (1 - l_mask - r_mask) * mean(d_l, flip(d_r))``
        with ``l_mask(x) = 1 - clip(20 (x - 0.05), 0, 1)`` over ``x = linspace(0, 1, w)`` and
        ``r_mask = flip(l_mask)``. So the left 5 % of columns come from ``flip(d_r)`` (the prediction
        whose disoccluded border is on the other side), the right 5 % from ``d_l``, a 5 % linear ramp
        follows on each side, and the middle is the mean of both.
    """
    d_l = np.asarray(disp)
    d_r = np.asarray(disp_flipped)
    if d_l.shape != d_r.shape:
        raise ValueError(f"disp and disp_flipped must have the same shape, got {d_l.shape} and {d_r.shape}")
    if d_l.ndim < 2:
        raise ValueError(f"disparities must be (..., h, w), got shape {d_l.shape}")
    w = d_l.shape[-1]
    x = np.linspace(0.0, 1.0, w)
    l_mask = 1.0 - np.clip(20.0 * (x - 0.05), 0.0, 1.0)
    r_mask = l_mask[::-1]
    d_r_back = d_r[..., ::-1]
    mean = 0.5 * (d_l + d_r_back)
    out = r_mask * d_l + l_mask * d_r_back + (1.0 - l_mask - r_mask) * mean
    return out.astype(np.result_type(d_l.dtype, np.float32), copy=False)


# --------------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------------


def _scaling_name(scaling: Scaling) -> str:
    if scaling is None:
        return "none"
    if isinstance(scaling, str):
        return scaling
    return f"fixed x{float(scaling):g}"


def evaluate_depth_image(
    gt: np.ndarray,
    pred: np.ndarray,
    *,
    protocol: Protocol = "eigen",
    scaling: Scaling = "median",
    min_depth: float = 1e-3,
    max_depth: float = 80.0,
    pred_is_disparity: bool = False,
    invalid_predictions: InvalidPredictions = "error",
    source: str | None = None,
) -> tuple[dict[str, float], float]:
    """Evaluate one prediction against one GT depth map.

    Args:
        gt: ``(H, W)`` ground-truth depth in metres, 0 = no measurement (original image resolution).
        pred: ``(h, w)`` predicted depth in metres (or scaled disparity when ``pred_is_disparity``);
            resized bilinearly to ``(H, W)`` (see :func:`resize_bilinear`). With disparities the resize
            happens before ``depth = 1 / disp``, exactly as in the standard protocol.
        protocol: ``"eigen"`` (``min_depth < gt < max_depth`` + Garg crop), ``"eigen_benchmark"``
            (``gt > 0``, no crop) or ``"uncropped"`` (``min_depth < gt < max_depth``, no crop: for
            non-KITTI ground truth such as the synthetic scenes, whose far background is stored at
            exactly ``max_depth`` and is not a measurement).
        scaling: ``"median"`` (per-image median ratio), a float (fixed factor), or ``None``.
        min_depth, max_depth: metres; the prediction is clamped to this range after scaling.
        invalid_predictions: what to do with predicted values that are NaN, infinite or negative
            (they used to be clamped silently to ``min_depth``/``max_depth``): ``"error"`` (default)
            raises naming ``source`` and the count; ``"mask"`` leaves the GT pixels they touch
            (after the resize) out of the evaluation (:func:`evaluate_depth` reports how many).
        source: where ``pred`` comes from (a file name), for error messages.

    Returns:
        ``(metrics, ratio)``: the metric dict of :func:`compute_depth_errors` and
        ``ratio = median(gt) / median(pred)`` of the un-scaled, resized prediction on the mask.

    Raises:
        ValueError: bad shapes, an unknown protocol/scaling, no valid GT pixel, or invalid predicted
            values with ``invalid_predictions="error"``.
    """
    metrics, ratio, _ = _evaluate_depth_image(
        gt,
        pred,
        protocol=protocol,
        scaling=scaling,
        min_depth=min_depth,
        max_depth=max_depth,
        pred_is_disparity=pred_is_disparity,
        invalid_predictions=invalid_predictions,
        source=source,
    )
    return metrics, ratio


def _invalid_prediction_text(pred: np.ndarray, invalid: np.ndarray) -> str:
    counts = {
        "NaN": int(np.count_nonzero(np.isnan(pred))),
        "infinite": int(np.count_nonzero(np.isinf(pred))),
        "negative": int(np.count_nonzero(np.nan_to_num(pred, nan=0.0, posinf=0.0, neginf=0.0) < 0)),
    }
    detail = ", ".join(f"{v} {k}" for k, v in counts.items() if v)
    return f"{int(np.count_nonzero(invalid))} of {pred.size} predicted values are NaN, infinite or negative ({detail})"


def _evaluate_depth_image(
    gt: np.ndarray,
    pred: np.ndarray,
    *,
    protocol: Protocol,
    scaling: Scaling,
    min_depth: float,
    max_depth: float,
    pred_is_disparity: bool,
    invalid_predictions: InvalidPredictions,
    source: str | None,
) -> tuple[dict[str, float], float, int]:
    """:func:`evaluate_depth_image` plus the number of evaluated GT pixels masked for invalid predictions."""
    gt = np.asarray(gt)
    pred = np.asarray(pred)
    if gt.ndim != 2:
        raise ValueError(f"gt must be (H, W), got shape {gt.shape}")
    if pred.ndim == 3 and pred.shape[0] == 1:
        pred = pred[0]
    if pred.ndim != 2:
        raise ValueError(f"pred must be (h, w), got shape {pred.shape}")
    if protocol == "eigen":
        mask = eigen_mask(gt, min_depth, max_depth, crop="garg")
    elif protocol == "eigen_benchmark":
        mask = gt > 0
    elif protocol == "uncropped":
        mask = eigen_mask(gt, min_depth, max_depth, crop=None)
    else:
        raise ValueError(f"protocol must be 'eigen', 'eigen_benchmark' or 'uncropped', got {protocol!r}")
    if not (isinstance(scaling, str) and scaling == "median") and scaling is not None:
        if isinstance(scaling, str) or not np.isfinite(float(scaling)) or float(scaling) <= 0:
            raise ValueError(f"scaling must be 'median', a positive float or None, got {scaling!r}")

    if invalid_predictions not in ("error", "mask"):
        raise ValueError(f"invalid_predictions must be 'error' or 'mask', got {invalid_predictions!r}")
    with np.errstate(invalid="ignore"):
        invalid = ~np.isfinite(pred) | (pred < 0)
    if np.any(invalid):
        if invalid_predictions == "error":
            where = f"{source}: " if source else ""
            raise ValueError(
                f"{where}{_invalid_prediction_text(pred, invalid)}; fix the predictions or pass "
                "invalid_predictions='mask' to leave those pixels out of the evaluation"
            )
        pred = np.where(invalid, np.nan, pred)  # NaN spreads through the resize to every pixel it touches

    resized = resize_bilinear(pred, gt.shape)
    if pred_is_disparity:
        with np.errstate(divide="ignore", invalid="ignore"):
            pred_depth = 1.0 / resized
    else:
        pred_depth = resized

    if not np.any(mask):
        raise ValueError("no valid ground-truth pixel in this image under the chosen protocol")
    n_masked = 0
    if np.any(invalid):
        usable = ~np.isnan(resized)
        n_masked = int(np.count_nonzero(mask & ~usable))
        mask = mask & usable
        if not np.any(mask):
            where = f"{source}: " if source else ""
            raise ValueError(
                f"{where}no pixel left to evaluate: {_invalid_prediction_text(pred, invalid)} and they cover "
                f"all {n_masked} valid ground-truth pixels"
            )
    g = gt[mask].astype(np.float64)
    p = pred_depth[mask].astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = float(np.median(g) / np.median(p))
    if isinstance(scaling, str):
        p = p * ratio
    elif scaling is not None:
        p = p * float(scaling)
    p = np.clip(np.nan_to_num(p, nan=min_depth, posinf=max_depth, neginf=min_depth), min_depth, max_depth)
    return compute_depth_errors(g, p), ratio, n_masked


@dataclass
class DepthEvalResult:
    """Result of :func:`evaluate_depth`.

    Attributes:
        metrics: mean of each metric over images, in :data:`DEPTH_METRIC_NAMES` order.
        ratio_median: median over images of the per-image ratio ``median(gt) / median(pred)``.
        ratio_std: ``std(ratios / ratio_median)`` (the "std" monodepth2 and FeatDepth print).
        num_images: number of evaluated images.
        per_image: one metric dict per image.
        ratios: ``(num_images,)`` per-image ratios.
        protocol, scaling: the settings used (scaling as text: ``"median"``, ``"fixed x36"``, ``"none"``).
        invalid_predictions: ``"error"`` or ``"mask"`` (see :func:`evaluate_depth_image`).
        num_masked_predictions: valid GT pixels left out because the prediction there was NaN,
            infinite or negative (only with ``invalid_predictions="mask"``); ``masked_per_image``
            per image.
        scale_recovery: for ``scaling="camera-height"`` (:func:`featdepth.evaluation.loop.evaluate_depth_batches`)
            the per-image scales recovered from the camera height, the rejected images, the median-scaled
            metrics of the same predictions and the spread of the recovered scale against the median ratio.
    """

    metrics: dict[str, float]
    ratio_median: float
    ratio_std: float
    num_images: int
    per_image: list[dict[str, float]] = field(default_factory=list)
    ratios: np.ndarray = field(default_factory=lambda: np.zeros(0))
    protocol: str = "eigen"
    scaling: str = "median"
    invalid_predictions: str = "error"
    num_masked_predictions: int = 0
    masked_per_image: list[int] = field(default_factory=list)
    scale_recovery: dict[str, Any] | None = None

    @staticmethod
    def table_header() -> str:
        """Column names in the paper's order, aligned with :meth:`table_row`."""
        return " | ".join(f"{name:>8s}" for name in DEPTH_METRIC_NAMES)

    def table_row(self, precision: int = 3) -> str:
        """The mean metrics in the paper's column order, e.g. ``"   0.099 |    0.697 | ..."``."""
        return " | ".join(f"{self.metrics[name]:8.{precision}f}" for name in DEPTH_METRIC_NAMES)

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly dict (plain floats and lists)."""
        return {
            "protocol": self.protocol,
            "scaling": self.scaling,
            "num_images": int(self.num_images),
            "metrics": {name: float(self.metrics[name]) for name in DEPTH_METRIC_NAMES},
            "ratio_median": float(self.ratio_median),
            "ratio_std": float(self.ratio_std),
            "invalid_predictions": self.invalid_predictions,
            "num_masked_predictions": int(self.num_masked_predictions),
            "masked_per_image": [int(v) for v in self.masked_per_image],
            "ratios": [float(r) for r in np.asarray(self.ratios).reshape(-1)],
            "per_image": [{k: float(v) for k, v in m.items()} for m in self.per_image],
            **({"scale_recovery": self.scale_recovery} if self.scale_recovery is not None else {}),
        }

    def to_json(self, path: PathLike | None = None, indent: int = 2) -> str:
        """Serialise :meth:`as_dict` to JSON; also write it to ``path`` when given."""
        text = json.dumps(self.as_dict(), indent=indent)
        if path is not None:
            Path(path).write_text(text + "\n")
        return text

    def __str__(self) -> str:
        return (
            f"{self.protocol} ({self.num_images} images, scaling {self.scaling}), "
            f"ratio med {self.ratio_median:.3f} std {self.ratio_std:.3f}"
            + (
                f", {self.num_masked_predictions} GT pixels masked (invalid predictions)"
                if self.num_masked_predictions
                else ""
            )
            + "\n"
            f"{self.table_header()}\n{self.table_row()}"
        )


def evaluate_depth(
    gts: Sequence[np.ndarray],
    preds: Sequence[np.ndarray] | np.ndarray,
    *,
    protocol: Protocol = "eigen",
    scaling: Scaling = "median",
    min_depth: float = 1e-3,
    max_depth: float = 80.0,
    preds_are_disparity: bool = False,
    invalid_predictions: InvalidPredictions = "error",
    source: str | None = None,
) -> DepthEvalResult:
    """Evaluate a set of predictions with :func:`evaluate_depth_image` and average over images.

    Args:
        gts: ``N`` GT maps ``(H_i, W_i)`` (sizes may differ between images), metres, 0 = invalid.
        preds: ``N`` predictions ``(h, w)`` (a ``(N, h, w)`` array or a sequence), depth in metres, or
            scaled disparity when ``preds_are_disparity`` (the standard: resize disparity, then invert).
        protocol, scaling, min_depth, max_depth, invalid_predictions: see :func:`evaluate_depth_image`.
        source: where the predictions come from (e.g. the prediction file), named in error messages.

    Returns:
        :class:`DepthEvalResult`; ``metrics`` are means over images (every image weighs the same,
        whatever its number of valid pixels).

    Raises:
        ValueError: different numbers of GT maps and predictions, nothing to evaluate, or (with
            ``invalid_predictions="error"``) NaN / inf / negative predicted values; the message
            names ``source``, the offending image index and the count.
    """
    n_gt, n_pred = len(gts), len(preds)
    if n_gt != n_pred:
        raise ValueError(f"{n_gt} ground-truth maps but {n_pred} predictions")
    if n_gt == 0:
        raise ValueError("nothing to evaluate: no images")
    per_image: list[dict[str, float]] = []
    masked: list[int] = []
    ratios = np.empty(n_gt, dtype=np.float64)
    for i in range(n_gt):
        try:
            metrics, ratio, n_masked = _evaluate_depth_image(
                gts[i],
                preds[i],
                protocol=protocol,
                scaling=scaling,
                min_depth=min_depth,
                max_depth=max_depth,
                pred_is_disparity=preds_are_disparity,
                invalid_predictions=invalid_predictions,
                source=None,
            )
        except ValueError as exc:
            where = f"{source}: " if source else ""
            raise ValueError(f"{where}image {i}: {exc}") from exc
        per_image.append(metrics)
        masked.append(n_masked)
        ratios[i] = ratio
    mean = {name: float(np.mean([m[name] for m in per_image])) for name in DEPTH_METRIC_NAMES}
    med = float(np.median(ratios))
    std = float(np.std(ratios / med)) if med != 0 and np.isfinite(med) else math.nan
    return DepthEvalResult(
        metrics=mean,
        ratio_median=med,
        ratio_std=std,
        num_images=n_gt,
        per_image=per_image,
        ratios=ratios,
        protocol=protocol,
        scaling=_scaling_name(scaling),
        invalid_predictions=invalid_predictions,
        num_masked_predictions=int(sum(masked)),
        masked_per_image=masked,
    )


# --------------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------------


def load_predictions(path: PathLike) -> np.ndarray:
    """Load stacked predictions (depth or disparity) from ``.npy`` or ``.npz``.

    ``.npy``: one array. ``.npz``: the array under key ``"data"``, ``"disp"`` or ``"depth"`` (first
    found, in that order), otherwise the first array of the archive. Accepted shapes: ``(N, h, w)``
    and ``(N, 1, h, w)`` (the channel is squeezed).

    Returns:
        ``(N, h, w)`` float32.

    Raises:
        FileNotFoundError: the file does not exist (message names it).
        ValueError: unknown extension, an empty archive, an object array or a wrong shape; the message
            names the file and the shape.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"prediction file not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except ValueError as exc:
            raise ValueError(f"{path}: cannot read as a numeric .npy array ({exc})") from exc
    elif suffix == ".npz":
        with np.load(path, allow_pickle=False) as archive:
            keys = list(archive.files)
            if not keys:
                raise ValueError(f"{path}: the .npz archive holds no array")
            key = next((k for k in ("data", "disp", "depth") if k in keys), keys[0])
            try:
                arr = archive[key]
            except ValueError as exc:
                raise ValueError(f"{path}: array {key!r} is not a numeric array ({exc})") from exc
    else:
        raise ValueError(f"{path}: predictions must be .npy or .npz, got {suffix or 'no extension'!r}")
    if arr.dtype == object or not np.issubdtype(arr.dtype, np.number):
        raise ValueError(f"{path}: predictions must be numeric, got dtype {arr.dtype}")
    if arr.ndim == 4 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 3:
        raise ValueError(f"{path}: predictions must have shape (N, h, w) or (N, 1, h, w), got {arr.shape}")
    if min(arr.shape) == 0:
        raise ValueError(f"{path}: predictions array is empty, shape {arr.shape}")
    return arr.astype(np.float32, copy=False)


class _ArrayOnlyUnpickler(pickle.Unpickler):
    """Unpickler that can rebuild NumPy arrays (and nothing else): no user file ever runs code.

    monodepth2's ``gt_depths.npz`` (and :func:`featdepth.evaluation.gt_export.save_gt_depths`) store an
    object array of per-image maps, which ``np.save`` pickles. Only the globals NumPy needs to rebuild
    arrays are resolved; any other global (``os.system``, ``builtins.open``, ...) is refused before it
    can be called.
    """

    _reconstruct = np.zeros(1).__reduce__()[0]
    _scalar = np.float32(1).__reduce__()[0]
    _frombuffer = np.zeros(1).__reduce_ex__(5)[0]  # protocol-5 pickles
    ALLOWED = {
        ("numpy.core.numeric", "_frombuffer"): _frombuffer,
        ("numpy._core.numeric", "_frombuffer"): _frombuffer,
        ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy.core.multiarray", "scalar"): _scalar,
        ("numpy._core.multiarray", "scalar"): _scalar,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): codecs.encode,  # bytes in protocol-2 pickles
    }

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self.ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refused to load '{module}.{name}' (only NumPy arrays are allowed)") from None

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("refused a persistent id (only NumPy arrays are allowed)")


def _read_npy_header(fh: Any) -> np.dtype:
    version = np.lib.format.read_magic(fh)
    if version == (1, 0):
        _, _, dtype = np.lib.format.read_array_header_1_0(fh)
    elif version == (2, 0):
        _, _, dtype = np.lib.format.read_array_header_2_0(fh)
    else:
        raise ValueError(f"unsupported .npy format version {version}")
    return dtype


def load_gt_depths(path: PathLike) -> list[np.ndarray]:
    """Load monodepth2's ``gt_depths.npz`` (key ``"data"``: object array of per-image ``(H_i, W_i)`` maps).

    A plain ``(N, H, W)`` numeric array under ``"data"`` (all images the same size) is accepted too.
    The object array is read with an unpickler that rebuilds NumPy arrays only (never
    ``allow_pickle=True``): a file whose pickle would run code or build anything else is refused.

    Returns:
        list of ``N`` float32 ``(H_i, W_i)`` arrays in metres (0 = invalid).

    Raises:
        FileNotFoundError: the file does not exist. ValueError: not an ``.npz`` with key ``"data"``, a
        pickle payload that is not plain arrays, or an entry that is not a 2-D map (message names the
        file and the entry).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ground-truth depth file not found: {path}")
    try:
        archive = np.load(path, allow_pickle=False)
    except Exception as exc:  # noqa: BLE001 - np.load raises many types on a corrupt file
        raise ValueError(f"{path}: cannot read as a .npz archive ({exc})") from exc
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ValueError(f"{path}: expected a .npz archive with key 'data', got a single array")
    with archive:
        if "data" not in archive.files:
            raise ValueError(f"{path}: expected key 'data' (monodepth2 format), found keys {archive.files}")
        try:
            with archive.zip.open("data.npy") as fh:
                dtype = _read_npy_header(fh)
                if dtype.hasobject:
                    data = _ArrayOnlyUnpickler(fh, encoding="latin1").load()
                else:
                    data = None
            if data is None:
                data = archive["data"]
        except (pickle.UnpicklingError, EOFError, AttributeError, TypeError, ValueError, KeyError, OSError) as exc:
            raise ValueError(
                f"{path}: entry 'data' is not a plain array of depth maps ({exc}); the file was not loaded. "
                "Regenerate it with `featdepth data export-gt` (or save a numeric (N, H, W) array under 'data')"
            ) from None
    if not isinstance(data, np.ndarray):
        raise ValueError(f"{path}: entry 'data' must be an array of depth maps, got {type(data).__name__}")
    if data.dtype != object and data.ndim == 2:
        data = data[None]
    out: list[np.ndarray] = []
    for i in range(len(data)):
        item = data[i]
        if not isinstance(item, np.ndarray) or item.ndim != 2 or not np.issubdtype(item.dtype, np.number):
            shape, dt = (item.shape, item.dtype) if isinstance(item, np.ndarray) else ((), type(item).__name__)
            raise ValueError(f"{path}: entry {i} must be a numeric (H, W) depth map, got shape {shape} dtype {dt}")
        out.append(item.astype(np.float32, copy=False))
    return out
