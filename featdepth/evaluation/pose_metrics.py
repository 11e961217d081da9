"""Odometry metrics: the 5-frame-snippet ATE (SfMLearner/monodepth2) and the KITTI devkit t_err/r_err.

Pose conventions: see :mod:`featdepth.evaluation.trajectory`. Absolute poses are ``T_world_cam``
``(N, 4, 4)``; relative poses between consecutive frames are ``T_{i+1<-i}`` ``(N, 4, 4)`` (maps
frame-``i`` points into frame ``i+1``; monodepth2's GT "local pose" ``inv(inv(G_i) @ G_{i+1})``).

**ATE-5** (docs/method.md §4.2a). For every start ``i``, the ``length - 1`` relative poses ``rel[i : i+length-1]``
are accumulated exactly as monodepth2's ``dump_xyz`` does (``M_0 = I``, ``M_{k+1} = M_k @ rel[i+k]``,
positions ``M_k[:3, 3]``), for GT and prediction alike; then the first positions are aligned
(``pred += gt[0] - pred[0]``), the least-squares scale ``s = sum(gt * pred) / sum(pred^2)`` is applied
and ``ATE = sqrt(sum ||s pred - gt||^2) / n`` (the square root of the *sum*, divided by the number of
positions ``n``). Like monodepth2, starts run over every relative pose, so the last
``length - 2`` snippets are shorter (``n < length``); ``include_partial=False`` drops them.

**KITTI devkit** (docs/method.md §4.2b): segments of 100..800 m start every 10 frames from frame 0; the last
frame is the first whose travelled GT distance exceeds the start's by more than the length;
``E = inv(inv(P_r[a]) P_r[b]) @ (inv(P_g[a]) P_g[b])``; ``t_err = ||t_E|| / len``,
``r_err = arccos(clip((tr R_E - 1) / 2, -1, 1)) / len``; results are means over all segments,
reported as percent and degrees per 100 m.
"""

from __future__ import annotations

from typing import Any, Literal, Sequence

import numpy as np
from featdepth.evaluation.trajectory import check_rotations

__all__ = [
    "KITTI_SEGMENT_LENGTHS",
    "ate_5frame",
    "accumulate_positions",
    "snippets_from_relative_poses",
    "evaluate_ate5",
    "trajectory_distances",
    "last_frame_from_segment_length",
    "rotation_error",
    "translation_error",
    "calc_sequence_errors",
    "umeyama_alignment",
    "align_trajectory",
    "kitti_odometry_errors",
]

KITTI_SEGMENT_LENGTHS: tuple[int, ...] = (100, 200, 300, 400, 500, 600, 700, 800)

Alignment = Literal["none", "scale", "sim3"]


def _as_poses(poses: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(poses, dtype=np.float64)
    if arr.ndim == 3 and arr.shape[1:] == (3, 4):
        full = np.tile(np.eye(4), (arr.shape[0], 1, 1))
        full[:, :3, :] = arr
        arr = full
    if arr.ndim != 3 or arr.shape[1:] != (4, 4):
        raise ValueError(f"{name} must be (N, 4, 4) (or (N, 3, 4)), got shape {np.shape(poses)}")
    return arr


# --------------------------------------------------------------------------------------------------
# 5-frame ATE
# --------------------------------------------------------------------------------------------------


def ate_5frame(gt_xyz: np.ndarray, pred_xyz: np.ndarray) -> float:
    """ATE of one snippet (SfMLearner/monodepth2 ``compute_ate``).

    Args:
        gt_xyz: ``(n, 3)`` GT positions (``n = 5`` for full snippets).
        pred_xyz: ``(n, 3)`` predicted positions (any scale).

    Returns:
        ``sqrt(sum ||s (pred + gt[0] - pred[0]) - gt||^2) / n`` in GT units (metres), with
        ``s = sum(gt * pred') / sum(pred'^2)`` on the offset prediction ``pred'``.
    """
    gt = np.asarray(gt_xyz, dtype=np.float64)
    pred = np.asarray(pred_xyz, dtype=np.float64)
    if gt.ndim != 2 or gt.shape[1] != 3 or gt.shape != pred.shape:
        raise ValueError(f"gt_xyz and pred_xyz must both be (n, 3), got {gt.shape} and {pred.shape}")
    if gt.shape[0] == 0:
        raise ValueError("empty snippet")
    pred = pred + (gt[0] - pred[0])[None, :]
    denom = np.sum(pred**2)
    scale = np.sum(gt * pred) / denom if denom > 0 else 0.0
    err = pred * scale - gt
    return float(np.sqrt(np.sum(err**2)) / gt.shape[0])


def accumulate_positions(rel_poses: np.ndarray) -> np.ndarray:
    """monodepth2 ``dump_xyz``: ``(k, 4, 4)`` relative poses -> ``(k + 1, 3)`` positions.

    ``M_0 = I``, ``M_{j+1} = M_j @ rel[j]``; returns ``M_j[:3, 3]``. (With ``T_{i+1<-i}`` inputs this
    right-multiplication is the monodepth2 protocol, kept as is; GT and prediction go through the same
    accumulation.)
    """
    rel = _as_poses(rel_poses, "rel_poses") if np.asarray(rel_poses).size else np.zeros((0, 4, 4))
    M = np.eye(4)
    out = [M[:3, 3].copy()]
    for T in rel:
        M = M @ T
        out.append(M[:3, 3].copy())
    return np.asarray(out)


def snippets_from_relative_poses(
    rel_gt: np.ndarray, rel_pred: np.ndarray, length: int = 5, *, include_partial: bool = True
) -> np.ndarray:
    """Per-start ATE over snippets of ``length`` frames.

    Args:
        rel_gt: ``(N, 4, 4)`` GT ``T_{i+1<-i}`` for ``i = 0..N-1`` (``N + 1`` frames).
        rel_pred: ``(N, 4, 4)`` predicted relative poses, same convention.
        length: frames per snippet (5 in the standard).
        include_partial: keep the shorter snippets at the end (monodepth2 does: one ATE per start
            ``i = 0..N-1``).

    Returns:
        ``(N,)`` ATEs (or ``(N - length + 2,)`` without the partial ones), metres.
    """
    gt = _as_poses(rel_gt, "rel_gt")
    pred = _as_poses(rel_pred, "rel_pred")
    if gt.shape != pred.shape:
        raise ValueError(f"rel_gt and rel_pred must have the same shape, got {gt.shape} and {pred.shape}")
    if length < 2:
        raise ValueError(f"length must be >= 2, got {length}")
    n = gt.shape[0]
    starts = range(n) if include_partial else range(max(n - (length - 1) + 1, 0))
    ates = [
        ate_5frame(accumulate_positions(gt[i : i + length - 1]), accumulate_positions(pred[i : i + length - 1]))
        for i in starts
    ]
    return np.asarray(ates, dtype=np.float64)


def evaluate_ate5(
    rel_gt: np.ndarray, rel_pred: np.ndarray, length: int = 5, *, include_partial: bool = True
) -> tuple[float, float]:
    """Mean and (population) standard deviation of :func:`snippets_from_relative_poses`, metres."""
    ates = snippets_from_relative_poses(rel_gt, rel_pred, length, include_partial=include_partial)
    if ates.size == 0:
        raise ValueError("no snippet to evaluate")
    return float(np.mean(ates)), float(np.std(ates))


# --------------------------------------------------------------------------------------------------
# KITTI odometry devkit
# --------------------------------------------------------------------------------------------------


def trajectory_distances(poses: np.ndarray) -> np.ndarray:
    """Cumulative travelled distance ``(N,)`` (metres) along ``(N, 4, 4)`` ``T_world_cam``; ``dist[0] = 0``."""
    P = _as_poses(poses, "poses")
    steps = np.linalg.norm(np.diff(P[:, :3, 3], axis=0), axis=1)
    return np.concatenate([[0.0], np.cumsum(steps)])


def last_frame_from_segment_length(dist: np.ndarray, first_frame: int, length: float) -> int:
    """First frame ``i >= first_frame`` with ``dist[i] > dist[first_frame] + length``, or ``-1``."""
    dist = np.asarray(dist, dtype=np.float64)
    idx = int(np.searchsorted(dist, dist[first_frame] + length, side="right"))
    idx = max(idx, first_frame)
    while idx < dist.shape[0] and not dist[idx] > dist[first_frame] + length:  # robust to non-monotone input
        idx += 1
    return idx if idx < dist.shape[0] else -1


def rotation_error(pose_error: np.ndarray) -> float:
    """Rotation angle (radians) of a ``(4, 4)`` or ``(3, 3)`` error: ``arccos(clip((tr R - 1) / 2, -1, 1))``."""
    E = np.asarray(pose_error, dtype=np.float64)
    d = 0.5 * (E[0, 0] + E[1, 1] + E[2, 2] - 1.0)
    return float(np.arccos(max(min(d, 1.0), -1.0)))


def translation_error(pose_error: np.ndarray) -> float:
    """Norm (metres) of the translation of a ``(4, 4)`` error."""
    E = np.asarray(pose_error, dtype=np.float64)
    return float(np.linalg.norm(E[:3, 3]))


def calc_sequence_errors(
    gt: np.ndarray,
    pred: np.ndarray,
    lengths: Sequence[float] = KITTI_SEGMENT_LENGTHS,
    step: int = 10,
) -> np.ndarray:
    """Per-segment errors of the KITTI devkit.

    Args:
        gt, pred: ``(N, 4, 4)`` ``T_world_cam`` of the same frames.
        lengths: segment lengths in metres.
        step: start frames ``0, step, 2 step, ...``.

    Returns:
        ``(M, 5)`` float64 rows ``[first_frame, r_err / len (rad/m), t_err / len (m/m), len, speed (m/s)]``
        in devkit order (start frame, then length), ``speed = len / (0.1 (last - first + 1))``.
    """
    G = _as_poses(gt, "gt")
    P = _as_poses(pred, "pred")
    if G.shape != P.shape:
        raise ValueError(f"gt and pred must have the same number of poses, got {G.shape[0]} and {P.shape[0]}")
    if step < 1:
        raise ValueError(f"step must be >= 1, got {step}")
    dist = trajectory_distances(G)
    inv_G = np.linalg.inv(G)
    inv_P = np.linalg.inv(P)
    rows: list[list[float]] = []
    for first in range(0, G.shape[0], step):
        for length in lengths:
            last = last_frame_from_segment_length(dist, first, length)
            if last == -1:
                continue
            delta_gt = inv_G[first] @ G[last]
            delta_pred = inv_P[first] @ P[last]
            E = np.linalg.inv(delta_pred) @ delta_gt
            num_frames = last - first + 1.0
            r_err = rotation_error(E) / length
            t_err = translation_error(E) / length
            rows.append([float(first), r_err, t_err, float(length), length / (0.1 * num_frames)])
    return np.asarray(rows, dtype=np.float64).reshape(-1, 5)


def umeyama_alignment(x: np.ndarray, y: np.ndarray, with_scale: bool = True) -> tuple[np.ndarray, np.ndarray, float]:
    """Least-squares similarity ``y ~ s R x + t`` (Umeyama 1991).

    Args:
        x: ``(3, N)`` source points (e.g. predicted positions).
        y: ``(3, N)`` target points (e.g. GT positions).
        with_scale: estimate ``s`` (Sim(3)); otherwise ``s = 1`` (SE(3)).

    Returns:
        ``(R (3, 3), t (3,), s)``.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.ndim != 2 or x.shape != y.shape:
        raise ValueError(f"x and y must both be (m, N), got {x.shape} and {y.shape}")
    m, n = x.shape
    if n < 2:
        raise ValueError(f"need at least 2 points, got {n}")
    mx = x.mean(axis=1)
    my = y.mean(axis=1)
    xc = x - mx[:, None]
    yc = y - my[:, None]
    var_x = np.sum(xc**2) / n
    cov = yc @ xc.T / n
    U, D, Vt = np.linalg.svd(cov)
    S = np.eye(m)
    if np.linalg.det(U) * np.linalg.det(Vt) < 0:
        S[-1, -1] = -1.0
    R = U @ S @ Vt
    if with_scale and var_x == 0:
        raise ValueError("source points are all identical; the scale is undefined")
    s = float(np.trace(np.diag(D) @ S) / var_x) if with_scale else 1.0
    t = my - s * (R @ mx)
    return R, t, s


def align_trajectory(
    gt: np.ndarray,
    pred: np.ndarray,
    align: Alignment = "scale",
    *,
    gt_name: str = "ground-truth",
    pred_name: str = "predicted",
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Align ``pred`` to ``gt`` (both ``(N, 4, 4)`` ``T_world_cam``) by an Umeyama fit of the positions.

    - ``"none"``: unchanged.
    - ``"scale"``: FeatDepth's ``align_trajectory(correct_only_scale=True)``: fit Sim(3) on the
      positions, then multiply every translation by its scale ``s`` only.
    - ``"sim3"``: translations times ``s``, then left-multiply by ``[R | t]`` (positions become
      ``s R p + t``).

    Returns:
        ``(aligned (N, 4, 4), R, t, s)`` (identity, zero and 1 for ``"none"``).

    Raises:
        ValueError: with ``"scale"``/``"sim3"``, a degenerate trajectory (all positions identical);
            the message uses ``gt_name`` / ``pred_name`` (pass the file names when known).
    """
    G = _as_poses(gt, "gt")
    P = _as_poses(pred, "pred")
    if G.shape != P.shape:
        raise ValueError(f"gt and pred must have the same number of poses, got {G.shape[0]} and {P.shape[0]}")
    if align == "none":
        return P.copy(), np.eye(3), np.zeros(3), 1.0
    if align not in ("scale", "sim3"):
        raise ValueError(f"align must be 'none', 'scale' or 'sim3', got {align!r}")
    for name, X in ((pred_name, P), (gt_name, G)):
        if X.shape[0] >= 2 and not np.any(np.ptp(X[:, :3, 3], axis=0) > 0):
            raise ValueError(
                f"{name} trajectory is degenerate: all {X.shape[0]} camera positions are identical "
                f"(the camera never moves), so the '{align}' alignment scale is undefined"
            )
    R, t, s = umeyama_alignment(P[:, :3, 3].T, G[:, :3, 3].T, with_scale=True)
    out = P.copy()
    out[:, :3, 3] *= s
    if align == "sim3":
        A = np.eye(4)
        A[:3, :3] = R
        A[:3, 3] = t
        out = A[None] @ out
    return out, R, t, s


def kitti_odometry_errors(
    gt: np.ndarray,
    pred: np.ndarray,
    align: Alignment = "none",
    lengths: Sequence[float] = KITTI_SEGMENT_LENGTHS,
    step: int = 10,
    *,
    gt_name: str = "ground-truth",
    pred_name: str = "predicted",
) -> dict[str, Any]:
    """KITTI odometry t_err (%) and r_err (deg / 100 m) of a full trajectory.

    Args:
        gt, pred: ``(N, 4, 4)`` ``T_world_cam`` of the same frames (KITTI pose files).
        align: see :func:`align_trajectory` (FeatDepth reports ``"scale"`` for monocular models).
        lengths, step: see :func:`calc_sequence_errors`.

    Returns:
        dict with ``t_err_percent`` (mean of ``t_err / len`` x 100), ``r_err_deg_per_100m`` (mean of
        ``r_err / len`` in degrees x 100), ``num_segments``, ``scale`` (the alignment scale),
        ``per_length`` (``{len: {"t_err_percent", "r_err_deg_per_100m", "num_segments"}}``, lengths
        without segments omitted) and ``segments`` (the ``(M, 5)`` array of :func:`calc_sequence_errors`).
        With no segment at all (trajectory shorter than the smallest length), the errors are NaN.

    Raises:
        ValueError: a pose whose rotation block is not a rotation (all-zero poses included), or a
            degenerate ground truth (the camera never moves: no segment can ever be measured); the
            message uses ``gt_name`` / ``pred_name`` (pass the file names when known).
    """

    G = _as_poses(gt, "gt")
    P = _as_poses(pred, "pred")
    if not (np.all(np.isfinite(G)) and np.all(np.isfinite(P))):
        raise ValueError(f"{gt_name if not np.all(np.isfinite(G)) else pred_name} trajectory has non-finite values")
    check_rotations(G, f"{gt_name} trajectory")
    check_rotations(P, f"{pred_name} trajectory")
    if G.shape[0] >= 2 and trajectory_distances(G)[-1] == 0:
        raise ValueError(
            f"{gt_name} trajectory is degenerate: all {G.shape[0]} camera positions are identical "
            "(the camera never moves, total distance 0 m); KITTI segment errors are undefined"
        )
    aligned, _, _, s = align_trajectory(gt, pred, align, gt_name=gt_name, pred_name=pred_name)
    seg = calc_sequence_errors(gt, aligned, lengths, step)
    per_length: dict[float, dict[str, float]] = {}
    for length in lengths:
        sel = seg[seg[:, 3] == float(length)]
        if sel.shape[0]:
            per_length[length] = {
                "t_err_percent": float(np.mean(sel[:, 2]) * 100.0),
                "r_err_deg_per_100m": float(np.degrees(np.mean(sel[:, 1])) * 100.0),
                "num_segments": int(sel.shape[0]),
            }
    if seg.shape[0]:
        t_err = float(np.mean(seg[:, 2]) * 100.0)
        r_err = float(np.degrees(np.mean(seg[:, 1])) * 100.0)
    else:
        t_err = r_err = float("nan")
    return {
        "t_err_percent": t_err,
        "r_err_deg_per_100m": r_err,
        "num_segments": int(seg.shape[0]),
        "scale": float(s),
        "per_length": per_length,
        "segments": seg,
    }


def yaw_deg(T: np.ndarray) -> np.ndarray:
    """Rotation about the camera's vertical (y) axis, degrees, of transforms ``(..., 4, 4)`` or ``(..., 3, 3)``:
    ``atan2(R[0, 2], R[2, 2])`` (exact for a pure yaw; for small pitch/roll the yaw component)."""
    T = np.asarray(T, np.float64)
    return np.degrees(np.arctan2(T[..., 0, 2], T[..., 2, 2]))


def rotation_response(true_yaw_deg: np.ndarray, pred_yaw_deg: np.ndarray) -> dict[str, Any]:
    """How a PoseNet's predicted yaw follows the true yaw over pairs with known turns.

    Returns ``slope`` and ``intercept`` (degrees) of the least-squares line ``pred = slope * true + intercept``,
    the correlation ``r`` and the mean absolute error ``mae_deg``. A network that learned rotation has a
    slope near 1; one that ignores rotation (predicts the same turn whatever the images) has a slope near 0.

    Raises:
        ValueError: different lengths, fewer than 2 pairs or fewer than 2 distinct true yaws.
    """
    t = np.asarray(true_yaw_deg, np.float64).ravel()
    p = np.asarray(pred_yaw_deg, np.float64).ravel()
    if t.shape != p.shape:
        raise ValueError(f"true and predicted yaws differ in length: {t.size} vs {p.size}")
    if t.size < 2 or np.ptp(t) == 0:
        raise ValueError("rotation_response needs at least two different true yaws")
    tc = t - t.mean()
    slope = float(np.dot(tc, p - p.mean()) / np.dot(tc, tc))
    intercept = float(p.mean() - slope * t.mean())
    r = float(np.corrcoef(t, p)[0, 1]) if np.ptp(p) > 0 else 0.0
    return {"slope": slope, "intercept": intercept, "r": r, "mae_deg": float(np.mean(np.abs(p - t))),
            "pairs": int(t.size)}
