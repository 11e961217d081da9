"""Loss landscapes around the ground truth: photometric vs feature-metric error, per region.

For a target/source pair with ground-truth depth ``D`` and pose ``T_src_tgt`` (synthetic data), the
source is warped into the target view with

- the depth scaled by a factor ``s`` (``D·s``, ``s`` log-spaced from 0.5 to 2, 1 in the middle) and the
  GT pose (sweep ``"depth"``);
- the GT depth and the pose perturbed by a translation ``tz`` along the source camera's z axis
  (``T' = Tz(tz) @ T``, sweep ``"tz"``, metres);
- the GT depth and the pose perturbed by a rotation ``ry`` about the source camera's y axis
  (``T' = Ry(ry) @ T``, sweep ``"ry"``, radians).

Measures (each an error map averaged over the pixels of a region):

- ``photometric``: :func:`~featdepth.losses.photometric.appearance_error` (0.85 SSIM + 0.15 Charbonnier)
  of the warped source image against the target, at full resolution;
- ``intensity``: the channel-mean Charbonnier :func:`~featdepth.losses.feature_metric.feature_metric_error`
  on the raw RGB images area-downsampled to H/2 and warped with ``K/2`` (the feature-metric loss with
  the image itself as the "feature");
- one per FeatureNet given: the feature-metric error on its ``extract()`` features (64 ch at H/2 for
  level 0), warped with ``K/stride``, exactly as in training (docs/method.md §2.3).

The pixel set is fixed along a sweep: a pixel counts when its reprojection lies inside the source
image for every value of the sweep, and it belongs to the (eroded) region at that resolution. The
paper's argument predicts a flat photometric curve and a convex feature-metric curve on textureless
regions; :func:`summarize_landscape` turns each curve into numbers (relative rise near and far from the
GT, curvature, where the minimum lies).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from featdepth.experiments.regions import REGION_NAMES
from featdepth.data.io import read_intrinsics_file
from featdepth.evaluation.loop import load_folder_sequence
from featdepth.geometry import intrinsics_for_stride, warp
from featdepth.losses.feature_metric import feature_metric_error
from featdepth.losses.photometric import appearance_error

__all__ = [
    "LandscapePair",
    "Landscape",
    "SWEEPS",
    "depth_scale_factors",
    "symmetric_values",
    "perturb_pose",
    "pairs_from_sequences",
    "compute_landscape",
    "compute_landscape_over_pairs",
    "summarize_curve",
    "summarize_landscape",
    "landscape_to_json",
    "plot_landscape",
]

SWEEPS = ("depth", "tz", "ry")
SWEEP_LABELS = {"depth": "depth scale factor", "tz": "translation error along z (m)", "ry": "rotation error about y (deg)"}
LANDSCAPE_REGIONS = (2, 3, 1, 4)


@dataclass
class LandscapePair:
    """One target/source pair with ground truth, all at the same resolution ``H x W``.

    ``target``/``source`` ``(1,3,H,W)`` in [0,1]; ``depth`` ``(1,1,H,W)`` GT z-depth of the target (metres);
    ``T_src_tgt`` ``(1,4,4)``; ``K`` ``(1,3,3)`` pixel intrinsics of ``H x W``; ``regions`` ``(1,1,H,W)`` int64.
    """

    target: Tensor
    source: Tensor
    depth: Tensor
    T_src_tgt: Tensor
    K: Tensor
    regions: Tensor
    name: str = ""

    def __post_init__(self) -> None:
        h, w = self.target.shape[-2:]
        for key, t, c in (("target", self.target, 3), ("source", self.source, 3), ("depth", self.depth, 1),
                          ("regions", self.regions, 1)):
            if t.dim() != 4 or t.shape[0] != 1 or t.shape[1] != c or tuple(t.shape[-2:]) != (h, w):
                raise ValueError(f"{key} must be (1,{c},{h},{w}), got {tuple(t.shape)}")
        if tuple(self.T_src_tgt.shape) != (1, 4, 4) or tuple(self.K.shape) != (1, 3, 3):
            raise ValueError(f"T_src_tgt must be (1,4,4) and K (1,3,3), got {tuple(self.T_src_tgt.shape)}, {tuple(self.K.shape)}")


@dataclass
class Landscape:
    """Curves ``curves[sweep][measure][region] -> (N,)`` over ``values[sweep] -> (N,)``."""

    values: dict[str, np.ndarray]
    curves: dict[str, dict[str, dict[str, np.ndarray]]]
    centre: dict[str, int]
    pixels: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)
    pairs: int = 1
    erode: int = 0  # region erosion in full-resolution pixels


# --------------------------------------------------------------------------------------------------
# sweeps


def depth_scale_factors(num: int = 31, low: float = 0.5, high: float = 2.0) -> np.ndarray:
    """``num`` factors log-spaced in ``[low, high]``; with ``low * high == 1`` and odd ``num`` the middle one is 1."""
    if num < 3:
        raise ValueError(f"num must be >= 3, got {num}")
    if not 0 < low < 1 < high:
        raise ValueError(f"need 0 < low < 1 < high, got {low}, {high}")
    f = np.exp(np.linspace(math.log(low), math.log(high), num))
    c = int(np.argmin(np.abs(np.log(f))))
    if abs(math.log(f[c])) < 1e-9 or abs(math.log(low) + math.log(high)) < 1e-12:
        f[c] = 1.0
    return f


def symmetric_values(num: int, half_range: float) -> np.ndarray:
    """``num`` values evenly spaced in ``[-half_range, half_range]``, the middle one exactly 0 (odd ``num``)."""
    if num < 3:
        raise ValueError(f"num must be >= 3, got {num}")
    v = np.linspace(-half_range, half_range, num)
    v[np.argmin(np.abs(v))] = 0.0
    return v


def perturb_pose(T_src_tgt: Tensor, kind: str, values: Sequence[float] | np.ndarray) -> Tensor:
    """``(N,4,4)`` poses ``Δ(v) @ T`` for every ``v``: ``kind="tz"`` a translation ``v`` metres along the
    source camera's z axis, ``kind="ry"`` a rotation by ``v`` radians about its y axis.

    Args:
        T_src_tgt: ``(1,4,4)`` or ``(4,4)``.
    """
    T = T_src_tgt.reshape(4, 4)
    vals = torch.as_tensor(np.asarray(values, dtype=np.float64), dtype=T.dtype, device=T.device)
    n = vals.shape[0]
    delta = torch.eye(4, dtype=T.dtype, device=T.device).repeat(n, 1, 1)
    if kind == "tz":
        delta[:, 2, 3] = vals
    elif kind == "ry":
        c, s = torch.cos(vals), torch.sin(vals)
        delta[:, 0, 0], delta[:, 0, 2], delta[:, 2, 0], delta[:, 2, 2] = c, s, -s, c
    else:
        raise ValueError(f"kind must be 'tz' or 'ry', got {kind!r}")
    return delta @ T.unsqueeze(0)


# --------------------------------------------------------------------------------------------------
# pairs


def pairs_from_sequences(root: str | Path, names: Sequence[str], height: int, width: int, *, num_pairs: int = 1,
                         offset: int = 1) -> list[LandscapePair]:
    """``num_pairs`` (target ``i``, source ``i + offset``) pairs spread over folder-format sequences with GT.

    Images are loaded at ``height x width``; GT depth and regions are nearest-resized to that size when
    they are stored at another size, and ``K`` is scaled accordingly.
    """

    pairs: list[LandscapePair] = []
    per_seq = max(1, math.ceil(num_pairs / max(1, len(names))))
    for name in names:
        seq = load_folder_sequence(root, name, height, width)
        if not seq.depths or not seq.regions or seq.poses is None:
            raise ValueError(f"sequence {name} lacks GT depth, regions or poses")
        n = len(seq.images)
        if n <= offset:
            continue
        K0 = read_intrinsics_file(Path(root) / name / "intrinsics.txt")
        h0, w0 = seq.depths[0].shape
        K = K0.copy()
        K[0] *= width / w0
        K[1] *= height / h0
        idx = np.linspace(0, n - 1 - offset, per_seq + 2)[1:-1].round().astype(int) if per_seq > 0 else []
        for i in idx:
            j = int(i) + offset
            T = np.linalg.inv(seq.poses[j]) @ seq.poses[int(i)]
            depth = torch.from_numpy(np.asarray(seq.depths[int(i)], np.float32))[None, None]
            regions = torch.from_numpy(np.asarray(seq.regions[int(i)], np.int64))[None, None]
            if (h0, w0) != (height, width):
                depth = F.interpolate(depth, (height, width), mode="nearest")
                regions = F.interpolate(regions.float(), (height, width), mode="nearest").long()
            pairs.append(LandscapePair(
                target=seq.images[int(i)][None].float(), source=seq.images[j][None].float(), depth=depth,
                T_src_tgt=torch.from_numpy(T.astype(np.float32))[None], K=torch.from_numpy(K.astype(np.float32))[None],
                regions=regions, name=f"{name}:{int(i)}->{j}"))
            if len(pairs) >= num_pairs:
                return pairs
    if not pairs:
        raise ValueError("no pair could be built from the given sequences")
    return pairs


# --------------------------------------------------------------------------------------------------
# the computation


def _erode(mask: Tensor, pixels: int) -> Tensor:
    """Binary erosion of ``(B,1,h,w)`` bool masks by a ``(2p+1)^2`` square."""
    if pixels <= 0:
        return mask
    k = 2 * pixels + 1
    return ~(F.max_pool2d((~mask).float(), k, stride=1, padding=pixels) > 0)


def _downsample_labels(regions: Tensor, size: tuple[int, int]) -> Tensor:
    if tuple(regions.shape[-2:]) == tuple(size):
        return regions
    return F.interpolate(regions.float(), size, mode="nearest").long()


def _downsample_depth(depth: Tensor, size: tuple[int, int]) -> Tensor:
    if tuple(depth.shape[-2:]) == tuple(size):
        return depth
    return F.interpolate(depth, size, mode="nearest")


@torch.no_grad()
def compute_landscape(
    pair: LandscapePair,
    feature_nets: Mapping[str, Any] | None = None,
    *,
    num_points: int = 31,
    depth_range: tuple[float, float] = (0.5, 2.0),
    tz_range: float = 0.5,
    ry_range: float = math.radians(3.0),
    region_ids: Sequence[int] = LANDSCAPE_REGIONS,
    erode: int = 4,
    include_intensity: bool = True,
    device: torch.device | str = "cpu",
) -> Landscape:
    """Error curves of one pair for the three sweeps (see the module docstring).

    Args:
        pair: the pair with ground truth.
        feature_nets: ``{name: FeatureNet}`` (eval mode is set here); their ``extract()`` maps are warped.
        num_points: points per sweep (odd: the GT sits in the middle).
        depth_range: ``(low, high)`` depth scale factors (log-spaced).
        tz_range: half range of the z translation error (metres).
        ry_range: half range of the y rotation error (radians).
        region_ids: regions to average over (besides ``"all"`` = every non-sky pixel).
        erode: erode region masks by this many full-resolution pixels (``ceil(erode / stride)`` at a map of
            stride ``stride``): the region means then describe the interior of each surface, away from
            its boundary, where any surface shows an edge.
        include_intensity: add the raw-intensity measure.

    Returns:
        A :class:`Landscape` with curves of ``photometric``, ``intensity`` and each FeatureNet.
    """

    dev = torch.device(device)
    tgt, src = pair.target.to(dev), pair.source.to(dev)
    depth, K, T = pair.depth.to(dev).float(), pair.K.to(dev).float(), pair.T_src_tgt.to(dev).float()
    regions = pair.regions.to(dev)
    h, w = tgt.shape[-2:]

    values = {
        "depth": depth_scale_factors(num_points, *depth_range),
        "tz": symmetric_values(num_points, tz_range),
        "ry": symmetric_values(num_points, ry_range),
    }
    centre = {k: int(np.argmin(np.abs(np.log(v)))) if k == "depth" else int(np.argmin(np.abs(v))) for k, v in values.items()}

    # the maps to warp: (name, target map, source map, stride, kind)
    maps: list[tuple[str, Tensor, Tensor, int, str]] = [("photometric", tgt, src, 1, "appearance")]
    if include_intensity:
        small = (h // 2, w // 2)
        maps.append(("intensity", F.interpolate(tgt, small, mode="area"), F.interpolate(src, small, mode="area"), 2, "charbonnier"))
    for name, net in (feature_nets or {}).items():
        net = net.to(dev).eval()
        both = net.extract(torch.cat([tgt, src]))
        maps.append((name, both[:1], both[1:], int(net.feature_stride), "charbonnier"))

    curves: dict[str, dict[str, dict[str, np.ndarray]]] = {k: {} for k in values}
    pixels: dict[str, dict[str, dict[str, int]]] = {k: {} for k in values}
    for sweep, vals in values.items():
        n = len(vals)
        if sweep == "depth":
            scales = torch.as_tensor(vals, dtype=torch.float32, device=dev).view(n, 1, 1, 1)
            poses = T.expand(n, 4, 4)
        else:
            scales = torch.ones(n, 1, 1, 1, device=dev)
            poses = perturb_pose(T.double(), sweep, vals).float()
        for name, fmap_t, fmap_s, stride, kind in maps:
            size = tuple(fmap_t.shape[-2:])
            d = _downsample_depth(depth, size) * scales  # (n,1,h',w')
            Ks = intrinsics_for_stride(K, stride) if stride > 1 else K
            warped, inside = warp(fmap_s.expand(n, *fmap_s.shape[1:]), d, poses, Ks.expand(n, 3, 3),
                                  align_corners=True, padding_mode="border", return_mask=True)
            tgt_rep = fmap_t.expand(n, *fmap_t.shape[1:])
            if kind == "appearance":
                err = appearance_error(warped, tgt_rep)
            else:
                err = feature_metric_error(tgt_rep, warped)
            keep = inside.bool().all(dim=0, keepdim=True)  # (1,1,h',w') inside for every sweep value
            labels = _downsample_labels(regions, size)
            e = math.ceil(erode / stride)
            region_masks = {"all": _erode(labels != 0, e) & keep}
            for r in region_ids:
                region_masks[REGION_NAMES.get(int(r), f"region{r}")] = _erode(labels == int(r), e) & keep
            curves[sweep][name] = {}
            pixels[sweep][name] = {}
            for rname, m in region_masks.items():
                cnt = int(m.sum())
                pixels[sweep][name][rname] = cnt
                if cnt == 0:
                    curves[sweep][name][rname] = np.full(n, np.nan)
                else:
                    mf = m.float()
                    curves[sweep][name][rname] = ((err * mf).sum(dim=(1, 2, 3)) / cnt).double().cpu().numpy()
    return Landscape(values=values, curves=curves, centre=centre, pixels=pixels, pairs=1, erode=int(erode))


def compute_landscape_over_pairs(pairs: Sequence[LandscapePair], feature_nets: Mapping[str, Any] | None = None,
                                 **kwargs: Any) -> Landscape:
    """:func:`compute_landscape` averaged over pairs (NaN-aware mean of the per-pair region means)."""
    if not pairs:
        raise ValueError("no pairs")
    items = [compute_landscape(p, feature_nets, **kwargs) for p in pairs]
    first = items[0]
    curves: dict[str, dict[str, dict[str, np.ndarray]]] = {}
    pixels: dict[str, dict[str, dict[str, int]]] = {}
    for sweep, by_measure in first.curves.items():
        curves[sweep], pixels[sweep] = {}, {}
        for measure, by_region in by_measure.items():
            curves[sweep][measure], pixels[sweep][measure] = {}, {}
            for region in by_region:
                stack = np.stack([it.curves[sweep][measure][region] for it in items])
                with np.errstate(all="ignore"):
                    curves[sweep][measure][region] = (np.nanmean(stack, axis=0) if np.isfinite(stack).any()
                                                      else np.full(stack.shape[1], np.nan))
                pixels[sweep][measure][region] = int(sum(it.pixels[sweep][measure][region] for it in items))
    return Landscape(values=first.values, curves=curves, centre=first.centre, pixels=pixels, pairs=len(items),
                     erode=first.erode)


# --------------------------------------------------------------------------------------------------
# numbers and pictures


def summarize_curve(x: np.ndarray, y: np.ndarray, centre: int, *, near: int | None = None) -> dict[str, Any]:
    """Numbers describing one curve ``y(x)`` around its ground-truth point ``x[centre]``.

    - ``at_gt``: ``y[centre]``; ``argmin_x``: the ``x`` of the smallest ``y``;
    - ``min_at_gt``: the minimum lies at the GT point or at one of its two neighbours;
    - ``rise_near``: ``mean(y[c-k], y[c+k]) / y[c] - 1`` with ``k = near`` (default ``N // 10``,
      at least 1): how much the error grows a little away from the GT (relative);
    - ``rise_far``: ``mean(y[0], y[-1]) / y[c] - 1``: the same at the ends of the sweep;
    - ``rise_near_abs``: ``mean(y[c-k], y[c+k]) - y[c]``, the absolute increase (in the measure's units);
    - ``curvature``: ``2a / y[c]`` of a least-squares parabola ``a t^2 + b t + c0`` over the central
      ``2k+1`` points, ``t`` the sweep coordinate normalised to ``[-1, 1]`` over the whole sweep
      (``log x`` for the depth factors);
    - ``convex_fraction``: the fraction of second differences that are ``>= 0`` over the whole sweep.
    """
    y = np.asarray(y, dtype=np.float64)
    n = y.shape[0]
    if not np.isfinite(y).all():
        return {"at_gt": float("nan"), "argmin_x": float("nan"), "min_at_gt": False, "rise_near": float("nan"),
                "rise_near_abs": float("nan"),
                "rise_far": float("nan"), "curvature": float("nan"), "convex_fraction": float("nan")}
    k = max(1, n // 10) if near is None else int(near)
    k = min(k, centre, n - 1 - centre)
    c0 = y[centre]
    t = np.asarray(x, dtype=np.float64)
    t = (t - t[centre]) / max(abs(t[0] - t[centre]), abs(t[-1] - t[centre]), 1e-12)
    lo, hi = centre - k, centre + k + 1
    a = float(np.polyfit(t[lo:hi], y[lo:hi], 2)[0]) if hi - lo >= 3 else float("nan")
    i_min = int(np.argmin(y))
    second = y[2:] - 2 * y[1:-1] + y[:-2]
    scale = max(abs(c0), 1e-12)
    return {
        "at_gt": float(c0),
        "argmin_x": float(x[i_min]),
        "min_at_gt": bool(abs(i_min - centre) <= 1),
        "rise_near": float((y[centre - k] + y[centre + k]) / 2 / scale - 1) if k > 0 else float("nan"),
        "rise_far": float((y[0] + y[-1]) / 2 / scale - 1),
        "rise_near_abs": float((y[centre - k] + y[centre + k]) / 2 - c0) if k > 0 else float("nan"),
        "curvature": float(2 * a / scale),
        "convex_fraction": float(np.mean(second >= -1e-12 * scale)) if second.size else float("nan"),
    }


def summarize_landscape(land: Landscape) -> list[dict[str, Any]]:
    """One row per (sweep, measure, region) with :func:`summarize_curve`'s numbers."""
    rows = []
    for sweep, by_measure in land.curves.items():
        x = land.values[sweep]
        xs = np.log(x) if sweep == "depth" else x
        for measure, by_region in by_measure.items():
            for region, y in by_region.items():
                s = summarize_curve(xs, y, land.centre[sweep])
                s["argmin_x"] = float(x[int(np.nanargmin(y))]) if np.isfinite(y).any() else float("nan")
                if sweep == "ry":
                    s["argmin_x"] = math.degrees(s["argmin_x"])
                rows.append({"sweep": sweep, "measure": measure, "region": region,
                             "pixels": land.pixels.get(sweep, {}).get(measure, {}).get(region), **s})
    return rows


def landscape_to_json(land: Landscape) -> dict[str, Any]:
    """Plain lists (for results.json)."""
    return {
        "values": {k: [float(v) for v in vals] for k, vals in land.values.items()},
        "centre": dict(land.centre),
        "pairs": land.pairs,
        "erode": land.erode,
        "curves": {s: {m: {r: [float(v) for v in y] for r, y in br.items()} for m, br in bm.items()}
                   for s, bm in land.curves.items()},
        "pixels": land.pixels,
    }


def landscape_from_json(data: Mapping[str, Any]) -> Landscape:
    return Landscape(
        values={k: np.asarray(v) for k, v in data["values"].items()},
        curves={s: {m: {r: np.asarray(y, dtype=np.float64) for r, y in br.items()} for m, br in bm.items()}
                for s, bm in data["curves"].items()},
        centre={k: int(v) for k, v in data["centre"].items()},
        pixels=data.get("pixels", {}),
        pairs=int(data.get("pairs", 1)),
        erode=int(data.get("erode", 0)),
    )


def plot_landscape(land: Landscape, path: str | Path, regions: Sequence[str] = ("textureless", "textured", "road"),
                   normalise: bool = True) -> Path:
    """A grid of curves: rows = regions, columns = sweeps, one line per measure; ``y / y(GT)`` when
    ``normalise`` (so measures with different units share an axis). Returns the PNG path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sweeps = [s for s in SWEEPS if s in land.curves]
    regions = [r for r in regions if any(r in br for bm in land.curves.values() for br in bm.values())]
    fig, axes = plt.subplots(len(regions), len(sweeps), figsize=(4.2 * len(sweeps), 3.0 * len(regions)), squeeze=False)
    for i, region in enumerate(regions):
        for j, sweep in enumerate(sweeps):
            ax = axes[i][j]
            x = land.values[sweep]
            xp = np.degrees(x) if sweep == "ry" else x
            c = land.centre[sweep]
            for measure, by_region in land.curves[sweep].items():
                y = by_region.get(region)
                if y is None or not np.isfinite(y).any():
                    continue
                yy = y / y[c] if normalise and np.isfinite(y[c]) and y[c] > 0 else y
                ax.plot(xp, yy, label=measure, lw=1.4 if measure != "photometric" else 2.2,
                        ls="-" if measure not in ("photometric", "intensity") else "--")
            if sweep == "depth":
                ax.set_xscale("log", base=2)
            ax.axvline(xp[c], color="grey", lw=0.6)
            ax.set_title(f"{region}: {sweep}", fontsize=9)
            if i == len(regions) - 1:
                ax.set_xlabel(SWEEP_LABELS[sweep], fontsize=8)
            if j == 0:
                ax.set_ylabel("error / error at GT" if normalise else "error", fontsize=8)
            ax.tick_params(labelsize=7)
    handles, labels = axes[0][0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="upper center", ncol=min(len(labels), 6), fontsize=8)
    fig.tight_layout(rect=(0, 0, 1, 0.94))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
