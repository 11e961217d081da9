"""Metric scale of a monocular depth map from the known height of the camera above the ground.

A self-supervised monocular model predicts depth up to an unknown global factor. For a camera on a vehicle
the mounting height above the road is known (KITTI: about 1.65 m), so the factor follows from the predicted
point cloud: fit the ground plane, measure the camera's height above it in model units, and
``scale = camera_height / predicted_height`` (Xue et al., "Toward Hierarchical Self-Supervised Monocular
Absolute Depth Estimation for Autonomous Driving Applications", IROS 2020, "DNet"). ``scale * depth`` is then
in metres.

Conventions (see ``docs/design.md`` and :mod:`featdepth.geometry.warp`):

- Camera frame: x right, y down, z forward; the camera centre is the origin. "Down" is ``+y``, so a level
  camera sees the ground as the plane ``y = h`` with normal ``(0, 1, 0)``.
- ``depth`` is the camera-frame ``z`` of every pixel (not the ray length), in model units; ``0``, negative
  and non-finite values are invalid. An optional ``mask`` (``True``/non-zero = usable) removes more pixels.
- ``K`` is ``(B, 3, 3)`` / ``(B, 4, 4)`` pixel intrinsics (top-left 3x3 block used) or one unbatched
  matrix; pixel centres at integer coordinates.
- A plane is ``{X : n . X = d}`` with a unit normal ``n``. Ground planes are oriented with ``n`` pointing
  down, away from the camera (``n_y > 0``), so ``d > 0`` is the camera's height above the plane.

How the ground is found (no ground truth, no semantic network):

1. back-project every valid pixel;
2. keep the pixels of the lower ``ground_region`` of the image that lie below the camera (``y > 0``);
3. where the local surface normal can be computed (the pixel and its right and lower neighbours at
   ``normal_step`` pixels are valid; dense predicted depth), drop pixels whose normal is more than
   ``max_normal_angle_deg`` from vertical (walls, car sides). Where it cannot be computed (sparse depth such
   as projected lidar) the pixel stays a candidate and step 4 alone judges it;
4. RANSAC (seeded, a fixed number of vectorised hypotheses, at most ``max_points`` candidates) over planes
   whose normal is within ``max_plane_angle_deg`` of vertical, refined by iteratively reweighted least
   squares (Tukey biweight with a robust residual scale, weighted PCA);
5. accept the plane when it lies below the camera and at least ``min_inlier_fraction`` of the lower image's
   valid pixels lie on it (the refinement never leaves the ``max_plane_angle_deg`` cone; the angle is checked
   again as a safeguard). A rejected frame's ``reason`` also describes the dominant plane of the lower image
   (an unconstrained fit), e.g. "... its normal 90° from vertical" for a wall filling the view.

6. measure the camera's height (``height_from``): ``"plane"`` (default; DNet's measure) takes the plane's
   distance ``d`` from the camera centre, right for any camera orientation; ``"level"`` takes the median of
   the inliers' vertical camera coordinate ``y``, the height of the ground below the camera where the ground
   points are, which is right only for a camera mounted level (a 3° pitch makes it 24 % wrong at typical
   ground distances). For a level camera, on predicted depth the fitted plane's tilt is mostly an error of
   the prediction (a bent or tilted predicted road) that extrapolating back to the camera centre multiplies,
   and ``"level"`` is then much closer to the truth; on exact geometry the two agree to a few per cent
   (KITTI lidar: 1.68-1.70 m by the plane, 1.69-1.75 m level). Measured in docs/experiments.md ("Metric
   scale from the camera height").

The inlier band is relative: a point is on the plane ``(n, d)`` when ``|n . X - d| <= inlier_threshold * d``.
A ground point whose depth is off by a relative error ``e`` moves along its ray and its height changes by
exactly ``e * d``, whatever its distance, so ``inlier_threshold`` is the relative depth error tolerated on the
ground, and the whole method is invariant to the scale of ``depth`` (scaling the depth by ``f`` scales the
predicted height by ``f``).

Everything here runs without gradients (RANSAC is not differentiable), with autocast disabled, in float64
internally; results are Python floats. Random sampling uses a ``torch.Generator`` (default: a fresh one
seeded with 0 per frame), never the global RNG, so results are reproducible.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch
from torch import Tensor

from featdepth.geometry.camera import _autocast_disabled, _check_intrinsics, _check_tensor, invert_intrinsics
from featdepth.geometry.warp import _backproject

__all__ = [
    "HEIGHT_FROM",
    "PlaneFit",
    "ScaleRecoveryResult",
    "SequenceScale",
    "check_height_from",
    "fit_plane",
    "recover_scale_from_camera_height",
    "recover_scale_from_camera_height_batch",
    "sequence_scale",
]

# Two sampled edge vectors with |a x b| < _DEGENERATE_SIN * |a| |b| (nearly collinear or repeated points)
# do not define a plane.
_DEGENERATE_SIN = 1e-6
_DOWN = (0.0, 1.0, 0.0)
# Tukey biweight tuning constant (95 % efficiency under Gaussian noise), in units of the robust residual scale,
# and the smallest Tukey constant as a fraction of the inlier band (noise-free data).
_TUKEY_C = 4.685
_MIN_C_FRACTION = 1e-6


# ----------------------------------------------------------------------------------------------------------------
# results
# ----------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlaneFit:
    """A plane ``{X : normal . X = offset}`` fitted to 3-D points.

    Attributes:
        normal: ``(3,)`` unit normal (dtype of the points: float32, or float64 for float64 points). Oriented
            towards ``prior_normal`` when one was given, otherwise so that ``offset >= 0``.
        offset: ``d`` in ``normal . X = d``, in the points' units (the distance of the origin from the plane
            when ``offset >= 0``).
        inliers: ``(N,)`` bool, the input points within the inlier band of the final plane (``False`` for
            points excluded by the mask).
        num_inliers: ``inliers.sum()``.
        inlier_fraction: ``num_inliers`` / number of valid input points.
        rms: root-mean-square point-to-plane distance of the inliers (points' units).
    """

    normal: Tensor
    offset: float
    inliers: Tensor
    num_inliers: int
    inlier_fraction: float
    rms: float

    def angle_to_deg(self, direction: Sequence[float] = _DOWN) -> float:
        """Angle in degrees (0..90) between the plane normal and the line along ``direction`` (sign ignored)."""
        v = torch.as_tensor(direction, dtype=torch.float64)
        n = self.normal.detach().to(device="cpu", dtype=torch.float64)
        cos = float((n @ v).abs() / v.norm().clamp_min(1e-300))
        return math.degrees(math.acos(min(1.0, cos)))


@dataclass(frozen=True)
class ScaleRecoveryResult:
    """Metric scale of one depth map from the camera height (see :func:`recover_scale_from_camera_height`).

    Attributes:
        ok: the ground plane was found and passed every check; only then is ``scale`` set.
        scale: ``camera_height / predicted_height`` (metres per model unit; ``scale * depth`` is metric);
            ``nan`` when ``ok`` is false.
        camera_height: the known camera height that was passed in (metres).
        predicted_height: the camera's height above the ground in model units, measured as ``height_from``
            says (``nan`` when no plane was fitted).
        normal: unit normal ``(nx, ny, nz)`` of the fitted ground plane in the camera frame, pointing down
            (``ny > 0``); ``None`` when no plane was fitted.
        offset: ``d`` of the plane ``normal . X = d`` (model units); equal to ``plane_height``.
        angle_from_vertical_deg: angle between ``normal`` and the camera's vertical axis ``(0, 1, 0)``
            (degrees; ``nan`` without a plane).
        inlier_fraction: fraction of the valid pixels of the lower image region (below the camera) that lie on
            the plane, in ``[0, 1]``.
        num_region_pixels: valid pixels in the lower image region below the camera.
        num_candidates: of those, the ground candidates that passed the local-normal test.
        num_inliers: region pixels on the fitted plane.
        reason: ``""`` when ``ok``; otherwise why the frame was rejected, in plain words.
        height_from: ``"level"`` or ``"plane"``: which of the two heights below is ``predicted_height``.
        plane_height: the plane's distance from the camera centre (``offset``), model units.
        level_height: the median vertical coordinate ``y`` of the plane's inliers in the lower region, model
            units (``nan`` without a plane).
    """

    ok: bool
    scale: float
    camera_height: float
    predicted_height: float
    normal: tuple[float, float, float] | None
    offset: float
    angle_from_vertical_deg: float
    inlier_fraction: float
    num_region_pixels: int
    num_candidates: int
    num_inliers: int
    reason: str
    height_from: str = "plane"
    plane_height: float = math.nan
    level_height: float = math.nan


@dataclass(frozen=True)
class SequenceScale:
    """Per-sequence metric scale (see :func:`sequence_scale`).

    Attributes:
        scale: median of the accepted frames' scales (mean of the two middle values for an even count).
        num_accepted: frames with ``ok``.
        num_rejected: frames without.
        scales: the accepted frames' scales, in frame order.
        relative_spread: median absolute deviation of the accepted scales divided by ``scale`` (0 for one frame).
        rejected: ``(frame index, reason)`` of every rejected frame.
    """

    scale: float
    num_accepted: int
    num_rejected: int
    scales: tuple[float, ...]
    relative_spread: float
    rejected: tuple[tuple[int, str], ...]


# ----------------------------------------------------------------------------------------------------------------
# argument checks
# ----------------------------------------------------------------------------------------------------------------


def _check_positive_float(value: object, name: str, upper: float | None = None, inclusive_upper: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(float(value)):
        raise ValueError(f"{name} must be a finite positive number, got {value!r}")
    x = float(value)
    if x <= 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    if upper is not None and (x > upper or (x == upper and not inclusive_upper)):
        bound = f"<= {upper:g}" if inclusive_upper else f"< {upper:g}"
        raise ValueError(f"{name} must be {bound}, got {value!r}")
    return x


def _check_positive_int(value: object, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


#: How the camera's height above the fitted ground is measured (module docstring, step 6).
HEIGHT_FROM = ("level", "plane")


def check_height_from(value: object) -> str:
    """``value`` if it is one of :data:`HEIGHT_FROM`, else a ``ValueError`` naming the choices."""
    if value not in HEIGHT_FROM:
        raise ValueError(f"height_from must be 'level' or 'plane', got {value!r}")
    return str(value)


def _check_angle(value: object, name: str) -> float:
    return _check_positive_float(value, name, upper=90.0, inclusive_upper=True)


def _check_generator(generator: object) -> torch.Generator:
    if generator is None:
        g = torch.Generator()
        g.manual_seed(0)
        return g
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    if generator.device.type != "cpu":
        raise ValueError(f"generator must be a CPU torch.Generator, got one on {generator.device}")
    return generator


# ----------------------------------------------------------------------------------------------------------------
# plane fitting
# ----------------------------------------------------------------------------------------------------------------


def _band(offset: Tensor, threshold: float, relative: bool) -> Tensor:
    return threshold * offset.abs() if relative else torch.full_like(offset, threshold)


def _ransac(
    pts: Tensor,
    threshold: float,
    relative: bool,
    iterations: int,
    prior: Tensor | None,
    cos_min: float,
    generator: torch.Generator,
) -> tuple[Tensor, Tensor] | None:
    """Best ``(normal (3,), offset ())`` of ``iterations`` 3-point hypotheses by normalised MSAC cost, or None."""
    m = pts.shape[0]
    idx = torch.randint(m, (iterations, 3), generator=generator).to(pts.device)
    p0, p1, p2 = pts[idx[:, 0]], pts[idx[:, 1]], pts[idx[:, 2]]
    a, b = p1 - p0, p2 - p0
    n = torch.linalg.cross(a, b)
    norm = n.norm(dim=1)
    good = norm > _DEGENERATE_SIN * a.norm(dim=1) * b.norm(dim=1)
    n = n / norm.clamp_min(1e-300).unsqueeze(1)
    d = (n * p0).sum(dim=1)
    if prior is not None:
        flip = (n @ prior) < 0
        cos = (n @ prior).abs()
        good &= cos >= cos_min
    else:
        flip = d < 0
    n = torch.where(flip.unsqueeze(1), -n, n)
    d = torch.where(flip, -d, d)
    band = _band(d, threshold, relative)
    good &= band > 0
    if not bool(good.any()):
        return None
    n, d, band = n[good], d[good], band[good]
    r = (pts @ n.T - d) / band  # (M, I) residuals in units of each hypothesis' band
    cost = (r * r).clamp(max=1.0).sum(dim=0)
    best = int(torch.argmin(cost))
    return n[best], d[best]


def _refine(
    pts: Tensor,
    n: Tensor,
    d: Tensor,
    threshold: float,
    relative: bool,
    iterations: int,
    prior: Tensor | None,
    cos_min: float,
) -> tuple[Tensor, Tensor]:
    """IRLS: Tukey-biweight weighted PCA.

    The Tukey constant is ``_TUKEY_C`` times the robust residual scale (``1.4826 * MAD`` of the residuals inside
    the band), capped at the band (``threshold`` or ``threshold * |d|``) and floored at ``_MIN_C_FRACTION`` of
    it: on noisy data this is the usual 95 %-efficient biweight, and points near but off the plane (the foot of a
    wall inside the band) lose their weight as the residual scale of the plane's own points shrinks.
    With a ``prior``, a step that would take the normal further than ``acos(cos_min)`` from it is not taken
    (the refinement stays in the admissible cone of the RANSAC hypotheses and stops there).
    """
    for _ in range(iterations):
        band = float(_band(d, threshold, relative))
        if band <= 0:
            break
        r = pts @ n - d
        inside = r.abs() <= band
        if int(inside.sum()) < 3:
            break
        sigma = 1.4826 * float(r[inside].abs().median())
        c = min(band, max(_TUKEY_C * sigma, _MIN_C_FRACTION * band))
        w = (1.0 - (r / c) ** 2).clamp_min(0.0) ** 2
        wsum = w.sum()
        if float(wsum) <= 0 or int((w > 0).sum()) < 3:
            break
        centroid = (w.unsqueeze(1) * pts).sum(dim=0) / wsum
        q = pts - centroid
        cov = (w.unsqueeze(1) * q).T @ q / wsum
        _, vecs = torch.linalg.eigh(cov)
        n_new = vecs[:, 0]
        if prior is not None:
            if float(n_new @ prior) < 0:
                n_new = -n_new
            if float(n_new @ prior) < cos_min:
                break
        elif float(n_new @ centroid) < 0:
            n_new = -n_new
        d_new = n_new @ centroid
        converged = float((n_new - n).abs().max()) < 1e-10 and abs(float(d_new - d)) <= 1e-10 * abs(float(d))
        n, d = n_new, d_new
        if converged:
            break
    return n, d


def _fit(
    pts: Tensor,
    threshold: float,
    relative: bool,
    iterations: int,
    refine_iterations: int,
    prior: Tensor | None,
    max_angle_deg: float,
    max_points: int,
    generator: torch.Generator,
) -> tuple[Tensor, Tensor] | None:
    """RANSAC + IRLS on float64 ``pts (M, 3)`` (M >= 3); ``(normal, offset)`` float64 or None."""
    if pts.shape[0] > max_points:
        keep = torch.randperm(pts.shape[0], generator=generator)[:max_points].to(pts.device)
        pts = pts[keep]
    cos_min = math.cos(math.radians(max_angle_deg)) if prior is not None else -1.0
    hyp = _ransac(pts, threshold, relative, iterations, prior, cos_min, generator)
    if hyp is None:
        return None
    return _refine(pts, hyp[0], hyp[1], threshold, relative, refine_iterations, prior, cos_min)


def fit_plane(
    points: Tensor,
    mask: Tensor | None = None,
    *,
    threshold: float,
    relative: bool = False,
    iterations: int = 256,
    refine_iterations: int = 50,
    prior_normal: Sequence[float] | Tensor | None = None,
    max_angle_deg: float = 90.0,
    max_points: int = 20000,
    generator: torch.Generator | None = None,
) -> PlaneFit | None:
    """Robust plane fit: seeded RANSAC over 3-point hypotheses, refined by iteratively reweighted least squares.

    RANSAC draws ``iterations`` point triplets at once (vectorised) and keeps the hypothesis with the lowest
    normalised MSAC cost ``sum_i min((r_i / band)^2, 1)``; the refinement repeats a Tukey-biweight weighted
    PCA (total least squares) up to ``refine_iterations`` times, with the Tukey constant 4.685 times the robust
    residual scale (1.4826 x the median absolute residual of the points inside the band), capped at the band.

    Args:
        points: ``(N, 3)`` points (any units).
        mask: optional ``(N,)`` bool / 0-1 tensor; ``False`` points are ignored. Non-finite points are ignored.
        threshold: half-width of the inlier band: ``|n . X - d| <= threshold`` (points' units), or
            ``<= threshold * |d|`` when ``relative`` (a fraction of the origin's distance to each hypothesis,
            scale-invariant; suited to a plane seen from a camera at the origin).
        relative: see ``threshold``.
        iterations: number of RANSAC hypotheses (fixed, no early stop).
        refine_iterations: maximum IRLS iterations (0: RANSAC only). With ``prior_normal`` the refinement stops
            rather than take the normal beyond ``max_angle_deg``.
        prior_normal: optional ``(3,)`` direction; hypotheses whose normal is more than ``max_angle_deg`` from
            it (sign ignored) are discarded, and the result's normal is oriented towards it.
        max_angle_deg: see ``prior_normal`` (degrees, ``(0, 90]``).
        max_points: RANSAC and the refinement use a random subset of at most this many valid points; the
            final inliers are counted on all of them.
        generator: CPU ``torch.Generator`` for the sampling (default: a fresh one seeded with 0).

    Returns:
        A :class:`PlaneFit`, or ``None`` when no sampled triplet defines an admissible plane (all degenerate,
        or all too far from ``prior_normal``; with a relative threshold, also all through the origin).

    Raises:
        ValueError: wrong shapes, fewer than 3 valid points, a non-positive ``threshold`` / count, an
            angle outside ``(0, 90]``, or a zero / non-finite ``prior_normal``.
    """
    points = _check_tensor(points, "points")
    if points.dim() != 2 or points.shape[1] != 3:
        raise ValueError(f"points must have shape (N, 3), got {tuple(points.shape)}")
    threshold = _check_positive_float(threshold, "threshold")
    iterations = _check_positive_int(iterations, "iterations")
    refine_iterations = _check_positive_int(refine_iterations, "refine_iterations", minimum=0)
    max_angle_deg = _check_angle(max_angle_deg, "max_angle_deg")
    max_points = _check_positive_int(max_points, "max_points", minimum=3)
    generator = _check_generator(generator)
    out_dtype = torch.float64 if points.dtype == torch.float64 else torch.float32
    with torch.no_grad(), _autocast_disabled(points.device):
        pts_all = points.detach().to(torch.float64)
        valid = torch.isfinite(pts_all).all(dim=1)
        if mask is not None:
            mask = _check_tensor(mask, "mask")
            if mask.shape != (points.shape[0],):
                raise ValueError(f"mask must have shape ({points.shape[0]},) to match points, got {tuple(mask.shape)}")
            valid &= mask.to(device=points.device).bool()
        num_valid = int(valid.sum())
        if num_valid < 3:
            raise ValueError(f"points has {num_valid} valid points; a plane needs at least 3")
        prior = None
        if prior_normal is not None:
            prior = torch.as_tensor(prior_normal, dtype=torch.float64).to(points.device).reshape(-1)
            if prior.shape != (3,) or not bool(torch.isfinite(prior).all()) or float(prior.norm()) == 0:
                raise ValueError(f"prior_normal must be a finite non-zero 3-vector, got {prior_normal!r}")
            prior = prior / prior.norm()
        fit = _fit(
            pts_all[valid],
            threshold,
            relative,
            iterations,
            refine_iterations,
            prior,
            max_angle_deg,
            max_points,
            generator,
        )
        if fit is None:
            return None
        n, d = fit
        r = (pts_all @ n - d).abs()
        inliers = valid & (r <= float(_band(d, threshold, relative)))
        num_inliers = int(inliers.sum())
        rms = float(r[inliers].pow(2).mean().sqrt()) if num_inliers else math.nan
        return PlaneFit(
            normal=n.to(out_dtype),
            offset=float(d),
            inliers=inliers,
            num_inliers=num_inliers,
            inlier_fraction=num_inliers / num_valid,
            rms=rms,
        )


# ----------------------------------------------------------------------------------------------------------------
# scale from the camera height
# ----------------------------------------------------------------------------------------------------------------


def _depth_frames(depth: object, name: str = "depth") -> Tensor:
    """``(B, H, W)`` view of ``(H, W)`` or ``(B, 1, H, W)`` depth."""
    depth = _check_tensor(depth, name)
    if depth.dim() == 2:
        depth = depth.unsqueeze(0)
    elif depth.dim() == 4 and depth.shape[1] == 1:
        depth = depth[:, 0]
    else:
        raise ValueError(f"{name} must have shape (H, W) or (B, 1, H, W), got {tuple(depth.shape)}")
    if depth.shape[0] < 1 or depth.shape[1] < 2 or depth.shape[2] < 2:
        raise ValueError(f"{name} must hold at least one frame of at least 2x2 pixels, got {tuple(depth.shape)}")
    if depth.is_complex() or depth.dtype == torch.bool:
        raise ValueError(f"{name} must be a real-valued tensor, got dtype {depth.dtype}")
    return depth


def _mask_frames(mask: object, depth: Tensor, depth_shape: tuple[int, ...]) -> Tensor:
    mask = _check_tensor(mask, "mask")
    if tuple(mask.shape) == depth_shape:
        m = mask
    elif mask.dim() == 2 and len(depth_shape) == 4 and tuple(mask.shape) == depth_shape[2:]:
        m = mask  # one (H, W) mask for every frame
    else:
        raise ValueError(f"mask must have the shape of depth {depth_shape}, got {tuple(mask.shape)}")
    m = m.to(device=depth.device).bool()
    if m.dim() == 4:
        m = m[:, 0]
    return m.expand_as(depth) if m.dim() == 2 else m


def _camera_heights(camera_height: object, batch: int) -> list[float]:
    if isinstance(camera_height, Tensor):
        values = camera_height.detach().to("cpu", torch.float64).reshape(-1).tolist()
        if camera_height.dim() > 1 or len(values) not in (1, batch):
            raise ValueError(
                f"camera_height must be a number or a ({batch},) tensor, got shape {tuple(camera_height.shape)}"
            )
    elif isinstance(camera_height, (list, tuple)):
        values = list(camera_height)
        if len(values) != batch:
            raise ValueError(f"camera_height must have {batch} values (one per frame), got {len(values)}: {values!r}")
    else:
        values = [camera_height]
    out = [_check_positive_float(v, "camera_height") for v in values]
    return out * batch if len(out) == 1 else out


def _intrinsics_frames(K: object, batch: int) -> Tensor:
    K = _check_intrinsics(K, "K")
    if K.dim() == 2:
        K = K.unsqueeze(0).expand(batch, -1, -1)
    elif K.dim() != 3 or K.shape[0] != batch:
        raise ValueError(
            f"K must have shape ({batch}, 3, 3), ({batch}, 4, 4), (3, 3) or (4, 4) to match {batch} depth "
            f"frame(s), got {tuple(K.shape)}"
        )
    K3 = K[:, :3, :3].detach().to(torch.float64)
    if not bool(torch.isfinite(K3).all()):
        raise ValueError(f"K must be finite, got {K3.tolist()}")
    if bool((K3[:, 0, 0] <= 0).any()) or bool((K3[:, 1, 1] <= 0).any()):
        raise ValueError(f"K must have positive focal lengths fx = K[0, 0] and fy = K[1, 1], got {K3.tolist()}")
    return K3


def _steep_surface(points: Tensor, valid: Tensor, step: int, cos_min: float) -> tuple[Tensor, Tensor]:
    """``(computable, steep)`` (H, W) bool maps of the local normal from forward differences at ``step`` pixels."""
    h, w = valid.shape
    computable = torch.zeros_like(valid)
    steep = torch.zeros_like(valid)
    if step >= h or step >= w:
        return computable, steep
    base = points[:, :-step, :-step]
    dx = points[:, :-step, step:] - base
    dy = points[:, step:, :-step] - base
    n = torch.linalg.cross(dx, dy, dim=0)
    norm = n.norm(dim=0)
    ok = valid[:-step, :-step] & valid[:-step, step:] & valid[step:, :-step] & (norm > 0)
    cos = n[1].abs() / norm.clamp_min(1e-300)
    computable[:-step, :-step] = ok
    steep[:-step, :-step] = ok & (cos < cos_min)
    # the last `step` rows / columns have no forward neighbour: they take the test of the nearest pixel that has
    # one (a valid pixel only, so that sparse depth stays untested)
    for k in range(1, step + 1):
        computable[h - k, :] = computable[h - step - 1, :] & valid[h - k, :]
        steep[h - k, :] = steep[h - step - 1, :] & valid[h - k, :]
    for k in range(1, step + 1):
        computable[:, w - k] = computable[:, w - step - 1] & valid[:, w - k]
        steep[:, w - k] = steep[:, w - step - 1] & valid[:, w - k]
    return computable, steep


def _pct(x: float) -> str:
    p = 100.0 * x
    return f"{p:.0f}%" if p >= 1 or p == 0 else f"{p:.1f}%"


def _nan_result(camera_height: float, n_region: int, n_cand: int, reason: str, **plane: object) -> ScaleRecoveryResult:
    fields: dict = dict(
        ok=False,
        scale=math.nan,
        camera_height=camera_height,
        predicted_height=math.nan,
        normal=None,
        offset=math.nan,
        angle_from_vertical_deg=math.nan,
        inlier_fraction=0.0,
        num_region_pixels=n_region,
        num_candidates=n_cand,
        num_inliers=0,
        reason=reason,
    )
    fields.update(plane)
    return ScaleRecoveryResult(**fields)


def _angle_from_vertical(n: Tensor) -> float:
    return math.degrees(math.acos(min(1.0, abs(float(n[1])))))


def _one_frame(
    depth: Tensor,
    mask: Tensor | None,
    K3: Tensor,
    camera_height: float,
    *,
    ground_region: float,
    use_normals: bool,
    normal_step: int,
    max_normal_angle_deg: float,
    max_plane_angle_deg: float,
    inlier_threshold: float,
    min_inlier_fraction: float,
    min_points: int,
    iterations: int,
    refine_iterations: int,
    max_points: int,
    generator: torch.Generator,
    height_from: str = "plane",
) -> ScaleRecoveryResult:
    h, w = depth.shape
    z = depth.detach().to(torch.float64)
    valid = torch.isfinite(z) & (z > 0)
    if mask is not None:
        valid &= mask
    z = torch.where(valid, z, torch.zeros_like(z))
    points = _backproject(z.reshape(1, 1, h, w), invert_intrinsics(K3).unsqueeze(0))[0]  # (3, H, W)
    first_row = min(h - 1, int(math.floor(h * (1.0 - ground_region))))
    rows = torch.arange(h, device=z.device).unsqueeze(1) >= first_row
    region = valid & rows & (points[1] > 0)
    n_region = int(region.sum())
    where = f"the lower {_pct(ground_region)} of the image below the camera"
    if n_region < min_points:
        return _nan_result(
            camera_height,
            n_region,
            0,
            f"no ground plane found: only {n_region} valid depth pixels in {where} (at least {min_points} needed)",
        )
    candidates = region
    if use_normals:
        _, steep = _steep_surface(points, valid, normal_step, math.cos(math.radians(max_normal_angle_deg)))
        candidates = region & ~steep
    n_cand = int(candidates.sum())
    region_pts = points[:, region].T  # (N, 3)
    down = torch.tensor(_DOWN, dtype=torch.float64, device=z.device)

    def dominant() -> str:
        fit = _fit(region_pts, inlier_threshold, True, iterations, refine_iterations, None, 90.0, max_points, generator)
        if fit is None:
            return ""
        n, d = fit
        frac = float(((region_pts @ n - d).abs() <= inlier_threshold * abs(float(d))).sum()) / n_region
        angle = _angle_from_vertical(n)
        return f"; the dominant plane there covers {_pct(frac)} of it with its normal {angle:.0f}° from vertical"

    if n_cand < min_points:
        return _nan_result(
            camera_height,
            n_region,
            n_cand,
            f"no ground plane found: only {_pct(n_cand / n_region)} of {where} has a near-horizontal surface "
            f"({n_cand} of {n_region} valid pixels with a local normal within {max_normal_angle_deg:g}° of vertical; "
            f"at least {min_points} needed)" + dominant(),
        )
    fit = _fit(
        points[:, candidates].T,
        inlier_threshold,
        True,
        iterations,
        refine_iterations,
        down,
        max_plane_angle_deg,
        max_points,
        generator,
    )
    if fit is None:
        return _nan_result(
            camera_height,
            n_region,
            n_cand,
            f"no ground plane found: no plane through the points of {where} has its normal within "
            f"{max_plane_angle_deg:g}° of vertical" + dominant(),
        )
    n, d = fit
    plane_height = float(d)
    angle = _angle_from_vertical(n)
    on_plane = (region_pts @ n - d).abs() <= inlier_threshold * abs(plane_height)
    n_in = int(on_plane.sum())
    frac = n_in / n_region
    level_height = float(region_pts[on_plane, 1].median()) if n_in else math.nan
    height = level_height if height_from == "level" else plane_height
    plane = dict(
        predicted_height=height,
        normal=(float(n[0]), float(n[1]), float(n[2])),
        offset=plane_height,
        angle_from_vertical_deg=angle,
        inlier_fraction=frac,
        num_inliers=n_in,
        height_from=height_from,
        plane_height=plane_height,
        level_height=level_height,
    )
    if angle > max_plane_angle_deg:  # a safeguard: the refinement stays within the limit
        return _nan_result(
            camera_height,
            n_region,
            n_cand,
            f"plane normal is {angle:.0f}° from vertical (at most {max_plane_angle_deg:g}° allowed)",
            **plane,
        )
    if not (height > 0 and plane_height > 0):
        return _nan_result(
            camera_height,
            n_region,
            n_cand,
            f"the fitted plane passes through or above the camera (d = {plane_height:.3g})"
            if height_from == "plane" or not plane_height > 0
            else f"the ground points lie at or above the camera's height (median y = {height:.3g})",
            **plane,
        )
    if frac < min_inlier_fraction or n_in < min_points:
        return _nan_result(
            camera_height,
            n_region,
            n_cand,
            f"no ground plane found: only {_pct(frac)} of {where} lies on a near-horizontal plane "
            f"({n_in} of {n_region} valid pixels; at least {_pct(min_inlier_fraction)} and {min_points} pixels needed)"
            + dominant(),
            **plane,
        )
    return ScaleRecoveryResult(
        ok=True,
        scale=camera_height / height,
        camera_height=camera_height,
        num_region_pixels=n_region,
        num_candidates=n_cand,
        reason="",
        **plane,  # type: ignore[arg-type]
    )


def recover_scale_from_camera_height_batch(
    depth: Tensor,
    K: Tensor,
    camera_height: float | Sequence[float] | Tensor,
    mask: Tensor | None = None,
    *,
    ground_region: float = 0.5,
    use_normals: bool = True,
    normal_step: int = 2,
    max_normal_angle_deg: float = 30.0,
    max_plane_angle_deg: float = 20.0,
    inlier_threshold: float = 0.05,
    min_inlier_fraction: float = 0.2,
    min_points: int = 100,
    iterations: int = 256,
    refine_iterations: int = 50,
    max_points: int = 20000,
    generator: torch.Generator | None = None,
    height_from: str = "plane",
) -> list[ScaleRecoveryResult]:
    """Metric scale of every frame of a batch from the camera height; one :class:`ScaleRecoveryResult` per frame.

    Same as :func:`recover_scale_from_camera_height` (see it for every argument) for ``depth`` of shape
    ``(B, 1, H, W)`` (or ``(H, W)``: one frame), ``K`` ``(B, 3, 3)`` / ``(B, 4, 4)`` or one unbatched matrix,
    ``camera_height`` one number or ``B`` numbers (a sequence or a ``(B,)`` tensor, metres), ``mask`` of the
    shape of ``depth`` or one ``(H, W)`` mask for every frame. With ``generator=None`` every frame uses a fresh
    generator seeded with 0, so a frame's result does not depend on its position in the batch.
    """
    frames = _depth_frames(depth)
    batch = frames.shape[0]
    heights = _camera_heights(camera_height, batch)
    K3 = _intrinsics_frames(K, batch).to(frames.device)
    masks = None if mask is None else _mask_frames(mask, frames, tuple(depth.shape))
    ground_region = _check_positive_float(ground_region, "ground_region", upper=1.0, inclusive_upper=True)
    normal_step = _check_positive_int(normal_step, "normal_step")
    max_normal_angle_deg = _check_angle(max_normal_angle_deg, "max_normal_angle_deg")
    max_plane_angle_deg = _check_angle(max_plane_angle_deg, "max_plane_angle_deg")
    inlier_threshold = _check_positive_float(inlier_threshold, "inlier_threshold", upper=1.0)
    min_inlier_fraction = _check_positive_float(
        min_inlier_fraction, "min_inlier_fraction", upper=1.0, inclusive_upper=True
    )
    min_points = _check_positive_int(min_points, "min_points", minimum=3)
    iterations = _check_positive_int(iterations, "iterations")
    refine_iterations = _check_positive_int(refine_iterations, "refine_iterations", minimum=0)
    max_points = _check_positive_int(max_points, "max_points", minimum=3)
    if generator is not None:
        _check_generator(generator)
    height_from = check_height_from(height_from)
    results = []
    with torch.no_grad(), _autocast_disabled(frames.device):
        for b in range(batch):
            results.append(
                _one_frame(
                    frames[b],
                    None if masks is None else masks[b],
                    K3[b],
                    heights[b],
                    ground_region=ground_region,
                    use_normals=bool(use_normals),
                    normal_step=normal_step,
                    max_normal_angle_deg=max_normal_angle_deg,
                    max_plane_angle_deg=max_plane_angle_deg,
                    inlier_threshold=inlier_threshold,
                    min_inlier_fraction=min_inlier_fraction,
                    min_points=min_points,
                    iterations=iterations,
                    refine_iterations=refine_iterations,
                    max_points=max_points,
                    generator=_check_generator(generator),
                    height_from=height_from,
                )
            )
    # frames rejected before a plane was fitted still say which measure was asked for
    return [r if r.height_from == height_from else replace(r, height_from=height_from) for r in results]


def recover_scale_from_camera_height(
    depth: Tensor,
    K: Tensor,
    camera_height: float,
    mask: Tensor | None = None,
    *,
    ground_region: float = 0.5,
    use_normals: bool = True,
    normal_step: int = 2,
    max_normal_angle_deg: float = 30.0,
    max_plane_angle_deg: float = 20.0,
    inlier_threshold: float = 0.05,
    min_inlier_fraction: float = 0.2,
    min_points: int = 100,
    iterations: int = 256,
    refine_iterations: int = 50,
    max_points: int = 20000,
    generator: torch.Generator | None = None,
    height_from: str = "plane",
) -> ScaleRecoveryResult:
    """Metric scale of one depth map from the known camera height above a flat ground.

    Finds the ground plane in the back-projected depth (see the module docstring for the steps), measures the
    camera's height above it in model units and returns ``scale = camera_height / predicted_height``;
    ``scale * depth`` is metric. For a batch use :func:`recover_scale_from_camera_height_batch`, and
    :func:`sequence_scale` for one robust scale per sequence.

    Args:
        depth: ``(H, W)`` or ``(1, 1, H, W)`` camera-frame ``z`` per pixel in model units (any positive scale).
            ``<= 0`` and non-finite values are invalid (e.g. pixels without lidar return in sparse ground truth).
        K: ``(3, 3)`` / ``(4, 4)`` (or ``(1, 3, 3)`` / ``(1, 4, 4)``) pixel intrinsics of ``depth``'s resolution.
        camera_height: known height of the camera centre above the ground, metres (> 0, finite).
        mask: optional ``(H, W)`` / ``(1, 1, H, W)`` bool or 0/1 tensor of usable pixels (``True`` = usable).
        ground_region: fraction of the image height, counted from the bottom, searched for the ground
            (``(0, 1]``); only pixels below the camera (``y > 0``) are used.
        use_normals: drop pixels whose local surface normal (where computable) is more than
            ``max_normal_angle_deg`` from vertical.
        normal_step: pixel distance of the neighbours used for the local normal.
        max_normal_angle_deg: see ``use_normals`` (degrees).
        max_plane_angle_deg: the ground plane's normal must be within this angle of the camera's vertical axis
            ``(0, 1, 0)`` (degrees): camera pitch/roll plus road slope.
        inlier_threshold: inlier band as a fraction of the plane's distance from the camera
            (``|n . X - d| <= inlier_threshold * d``; equivalently the relative depth error tolerated on the
            ground), in ``(0, 1)``.
        min_inlier_fraction: least fraction of the valid lower-region pixels that must lie on the plane.
        min_points: least number of valid region pixels, candidates and inliers.
        iterations: RANSAC hypotheses (fixed number, vectorised).
        refine_iterations: maximum IRLS refinement iterations (it stops earlier once the plane no longer
            changes; with Tukey weights it can need a few tens of iterations to settle, so that the result does
            not depend on the RANSAC sample).
        max_points: RANSAC and refinement use a random subset of at most this many candidates (speed on CPU).
        generator: CPU ``torch.Generator`` for the sampling (default: a fresh one seeded with 0).
        height_from: ``"plane"`` (default): the camera's height is the plane's distance from the camera
            centre (any camera orientation); ``"level"``: the median vertical coordinate of the plane's inliers
            (only for a camera mounted level, e.g. KITTI's). See the module docstring, step 6.

    Returns:
        A :class:`ScaleRecoveryResult`. A frame without a usable ground plane is not an error: ``ok`` is
        false, ``scale`` is ``nan`` and ``reason`` says why in plain words, e.g. "no ground plane found: only
        3% of the lower 50% of the image below the camera lies on a near-horizontal plane (...); the dominant
        plane there covers 95% of it with its normal 90° from vertical", "no ground plane found: only 0% of the
        lower 50% of the image below the camera has a near-horizontal surface (...)" (local normals), "no
        ground plane found: no plane through the points of ... has its normal within 20° of vertical; the
        dominant plane there covers 100% of it with its normal 40° from vertical", or "no ground plane found:
        only 37 valid depth pixels in ... (at least 100 needed)".

    Raises:
        ValueError: a bad ``camera_height`` (``<= 0``, non-finite, not a number) or parameter, wrong shapes of
            ``depth`` / ``K`` / ``mask``, or ``K`` with a non-positive or non-finite focal length; the message
            names the argument and the value. TypeError: a non-tensor ``depth`` / ``K`` / ``mask``.
    """
    d = _check_tensor(depth, "depth")
    if d.dim() == 3 and d.shape[0] == 1:
        d = d.unsqueeze(0)
    if not (d.dim() == 2 or (d.dim() == 4 and d.shape[:2] == (1, 1))):
        raise ValueError(
            f"depth must have shape (H, W) or (1, 1, H, W) for one frame, got {tuple(depth.shape)} "
            "(use recover_scale_from_camera_height_batch for several frames)"
        )
    one_element_tensor = isinstance(camera_height, Tensor) and camera_height.numel() == 1
    if isinstance(camera_height, (list, tuple, Tensor)) and not one_element_tensor:
        raise ValueError(f"camera_height must be one number for one frame, got {camera_height!r}")
    if isinstance(camera_height, Tensor):
        camera_height = float(camera_height)
    m = mask
    if m is not None:
        m = _check_tensor(m, "mask")
        if m.dim() == 3 and m.shape[0] == 1:
            m = m.unsqueeze(0)
        if tuple(m.shape) != tuple(d.shape) and not (m.dim() == 2 and tuple(m.shape) == tuple(d.shape[-2:])):
            raise ValueError(f"mask must have the shape of depth {tuple(depth.shape)}, got {tuple(mask.shape)}")
        m = m.reshape(d.shape)
    return recover_scale_from_camera_height_batch(
        d,
        K,
        camera_height,
        m,
        ground_region=ground_region,
        use_normals=use_normals,
        normal_step=normal_step,
        max_normal_angle_deg=max_normal_angle_deg,
        max_plane_angle_deg=max_plane_angle_deg,
        inlier_threshold=inlier_threshold,
        min_inlier_fraction=min_inlier_fraction,
        min_points=min_points,
        iterations=iterations,
        refine_iterations=refine_iterations,
        max_points=max_points,
        generator=generator,
        height_from=height_from,
    )[0]


def sequence_scale(results: Sequence[ScaleRecoveryResult], min_accepted: int = 1) -> SequenceScale:
    """One robust metric scale for a sequence: the median over the accepted frames.

    Args:
        results: per-frame results in frame order (from :func:`recover_scale_from_camera_height` or
            :func:`recover_scale_from_camera_height_batch`).
        min_accepted: least number of accepted frames required.

    Returns:
        A :class:`SequenceScale` with the median scale, the accepted / rejected counts, the accepted scales,
        their relative spread (MAD / median) and the reasons of the rejected frames.

    Raises:
        ValueError: ``results`` is empty or holds something else than :class:`ScaleRecoveryResult`, or fewer
            than ``min_accepted`` frames were accepted (the message gives the rejection reasons).
    """
    min_accepted = _check_positive_int(min_accepted, "min_accepted")
    results = list(results)
    if not results:
        raise ValueError("results is empty: no frame to take a scale from")
    for i, r in enumerate(results):
        if not isinstance(r, ScaleRecoveryResult):
            raise ValueError(f"results[{i}] must be a ScaleRecoveryResult, got {type(r).__name__}")
    scales = tuple(r.scale for r in results if r.ok)
    rejected = tuple((i, r.reason) for i, r in enumerate(results) if not r.ok)
    if len(scales) < min_accepted:
        shown = "; ".join(f"frame {i}: {reason}" for i, reason in rejected[:3])
        more = f"; and {len(rejected) - 3} more" if len(rejected) > 3 else ""
        what = "no frame was accepted" if not scales else f"only {len(scales)} frame(s) accepted"
        raise ValueError(
            f"cannot recover a sequence scale: {what} of {len(results)} (at least {min_accepted} needed); "
            f"{len(rejected)} rejected ({shown}{more})"
        )
    med = statistics.median(scales)
    mad = statistics.median(abs(s - med) for s in scales)
    return SequenceScale(
        scale=med,
        num_accepted=len(scales),
        num_rejected=len(rejected),
        scales=scales,
        relative_spread=mad / med,
        rejected=rejected,
    )
