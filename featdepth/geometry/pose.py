"""Rigid poses: axis-angle <-> rotation matrix, pose assembly, inversion, composition.

Conventions (see ``docs/design.md``):

- ``T_a_b`` is a ``(..., 4, 4)`` homogeneous rigid transform ``[[R, t], [0, 1]]`` that maps 3-D points from
  frame ``b`` into frame ``a``: ``X_a = R X_b + t``. ``T_src_tgt`` maps target-camera points into the source
  camera. Cameras look along +z, x right, y down. Translations are in the scene's units (metres for metric
  data; up to scale for monocular training).
- An axis-angle vector ``v`` (radians) encodes the rotation of angle ``|v|`` about ``v / |v|``
  (right-handed).

Half-precision inputs (float16 / bfloat16, e.g. PoseNet outputs under autocast) are computed and returned in
float32, with autocast disabled: geometry runs in float32. float32 and float64 inputs keep their dtype.
"""

from __future__ import annotations

import torch
from torch import Tensor

from featdepth.geometry.camera import _autocast_disabled, _check_tensor, _geometry_dtype

__all__ = [
    "axis_angle_to_matrix",
    "matrix_to_axis_angle",
    "pose_from_axis_angle_translation",
    "invert_pose",
    "compose_poses",
    "relative_pose",
]

# Below this squared angle (theta < 1e-2 rad) the Rodrigues coefficients use their Taylor series. The first
# dropped terms are O(theta^6) ~ 1e-12 * 1/5040, below float64 rounding, so the branches agree in value and
# derivative at the switch.
_SMALL_ANGLE_SQ = 1e-4


def _check_last_dim(x: object, name: str, size: int) -> Tensor:
    x = _check_tensor(x, name)
    if x.dim() < 1 or x.shape[-1] != size:
        raise ValueError(f"{name} must have shape (..., {size}), got {tuple(x.shape)}")
    return x


def _check_pose(T: object, name: str) -> Tensor:
    T = _check_tensor(T, name)
    if T.dim() < 2 or T.shape[-2:] != (4, 4):
        raise ValueError(f"{name} must have shape (..., 4, 4), got {tuple(T.shape)}")
    return T


def _upcast(x: Tensor) -> Tensor:
    return x.to(_geometry_dtype(x)) if x.dtype != torch.float64 else x


def _rodrigues_coefficients(theta_sq: Tensor) -> tuple[Tensor, Tensor]:
    """``a = sin(theta)/theta`` and ``b = (1 - cos(theta))/theta^2`` as functions of ``theta^2``.

    Finite values and gradients everywhere, including ``theta = 0``: small angles use the Taylor series, and
    the closed-form branch only ever sees ``theta^2 >= _SMALL_ANGLE_SQ`` (a stand-in of 1 elsewhere), so its
    backward never differentiates ``sqrt`` at 0. ``b`` is computed as ``0.5 * (sin(theta/2)/(theta/2))^2``,
    which has no ``1 - cos`` cancellation in float32.
    """
    small = theta_sq < _SMALL_ANGLE_SQ
    safe_sq = torch.where(small, torch.ones_like(theta_sq), theta_sq)
    theta = torch.sqrt(safe_sq)
    half = 0.5 * theta
    a_exact = torch.sin(theta) / theta
    b_exact = 0.5 * (torch.sin(half) / half) ** 2
    t2 = theta_sq
    a_taylor = 1.0 - t2 / 6.0 + t2 * t2 / 120.0
    b_taylor = 0.5 - t2 / 24.0 + t2 * t2 / 720.0
    return torch.where(small, a_taylor, a_exact), torch.where(small, b_taylor, b_exact)


def axis_angle_to_matrix(axis_angle: Tensor) -> Tensor:
    """Rotation matrix from an axis-angle vector (Rodrigues' formula).

    ``R = I + a [v]_x + b [v]_x^2`` with ``a = sin(theta)/theta``, ``b = (1 - cos(theta))/theta^2`` and
    ``theta = |v|``, written as ``R = (1 - b theta^2) I + a [v]_x + b v v^T``. Numerically stable at and near
    ``theta = 0`` (Taylor series below 1e-2 rad), with exact finite gradients there (``dR/dv_k = [e_k]_x`` at 0).
    Unlike the official code there is no ``1e-7`` added to the norm, so tiny rotations are not biased.

    Args:
        axis_angle: ``(..., 3)`` axis-angle vectors in radians.

    Returns:
        ``(..., 3, 3)`` rotation matrices (float32 for half-precision input, else ``axis_angle``'s dtype).
    """
    axis_angle = _check_last_dim(axis_angle, "axis_angle", 3)
    with _autocast_disabled(axis_angle.device):
        v = _upcast(axis_angle)
        x, y, z = v.unbind(-1)
        theta_sq = x * x + y * y + z * z
        a, b = _rodrigues_coefficients(theta_sq)
        diag = 1.0 - b * theta_sq
        rows = [
            [diag + b * x * x, -a * z + b * x * y, a * y + b * x * z],
            [a * z + b * x * y, diag + b * y * y, -a * x + b * y * z],
            [-a * y + b * x * z, a * x + b * y * z, diag + b * z * z],
        ]
        return torch.stack([torch.stack(r, dim=-1) for r in rows], dim=-2)


def matrix_to_axis_angle(R: Tensor) -> Tensor:
    """Axis-angle vector of a rotation matrix (inverse of :func:`axis_angle_to_matrix` for angles < pi).

    Uses ``theta = atan2(|w|, (tr(R) - 1) / 2)`` with ``w = vee(R - R^T) / 2 = sin(theta) * axis``, which is
    accurate for small angles (no ``acos`` near 1). Intended for metrics and tests; the axis is ill-defined
    at exactly ``theta = pi`` and the gradient is not guarded at ``theta = 0``.

    Args:
        R: ``(..., 3, 3)`` rotation matrices (``(..., 4, 4)`` poses are also accepted; their rotation block is used).

    Returns:
        ``(..., 3)`` axis-angle vectors in radians, with norm in ``[0, pi]``.
    """
    R = _check_tensor(R, "R")
    if R.dim() < 2 or R.shape[-2:] not in ((3, 3), (4, 4)):
        raise ValueError(f"R must have shape (..., 3, 3) or (..., 4, 4), got {tuple(R.shape)}")
    with _autocast_disabled(R.device):
        R = _upcast(R)[..., :3, :3]
        w = 0.5 * torch.stack(
            [R[..., 2, 1] - R[..., 1, 2], R[..., 0, 2] - R[..., 2, 0], R[..., 1, 0] - R[..., 0, 1]], dim=-1
        )
        sin_theta = torch.linalg.vector_norm(w, dim=-1)
        cos_theta = 0.5 * (R[..., 0, 0] + R[..., 1, 1] + R[..., 2, 2] - 1.0)
        theta = torch.atan2(sin_theta, cos_theta)
        tiny = sin_theta < 1e-12
        # theta / sin(theta) -> 1 + theta^2 / 6 as theta -> 0
        factor = torch.where(tiny, 1.0 + theta * theta / 6.0, theta / torch.where(tiny, 1.0, sin_theta))
        return w * factor[..., None]


def _assemble(R: Tensor, t: Tensor) -> Tensor:
    """``[[R, t], [0, 0, 0, 1]]`` from ``R (..., 3, 3)`` and ``t (..., 3)``."""
    top = torch.cat([R, t[..., :, None]], dim=-1)
    bottom = torch.zeros(top.shape[:-2] + (1, 4), dtype=top.dtype, device=top.device)
    bottom[..., 0, 3] = 1.0
    return torch.cat([top, bottom], dim=-2)


def _inverse_rt(R: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
    """``(R^T, -R^T t)``, elementwise (no matmul)."""
    Rt = R.transpose(-1, -2)
    return Rt, -(Rt * t[..., None, :]).sum(dim=-1)


def pose_from_axis_angle_translation(axis_angle: Tensor, translation: Tensor, invert: bool = False) -> Tensor:
    """Rigid transform from a PoseNet output (axis-angle and translation), docs/method.md §1.4.

    Args:
        axis_angle: ``(B, 3)`` (or any ``(..., 3)``) axis-angle in radians.
        translation: translation with the same shape as ``axis_angle``.
        invert: ``False`` gives ``[R | t]`` (``X' = R X + t``); ``True`` gives its exact inverse
            ``[R^T | -R^T t]``. PoseNet sees (earlier, later) frames, so its output is used as is for sources
            ``f > 0`` and inverted for ``f < 0``; either way the result is ``T_src_tgt``.

    Returns:
        ``(..., 4, 4)`` rigid transforms (float32 for half-precision input).
    """
    axis_angle = _check_last_dim(axis_angle, "axis_angle", 3)
    translation = _check_last_dim(translation, "translation", 3)
    if axis_angle.shape != translation.shape:
        raise ValueError(
            f"axis_angle and translation must have the same shape, got {tuple(axis_angle.shape)} "
            f"and {tuple(translation.shape)}"
        )
    with _autocast_disabled(axis_angle.device):
        R = axis_angle_to_matrix(axis_angle)
        t = translation.to(R.dtype)
        if invert:
            R, t = _inverse_rt(R, t)
        return _assemble(R, t)


def invert_pose(T: Tensor) -> Tensor:
    """Exact rigid inverse ``[[R^T, -R^T t], [0, 1]]`` of ``T = [[R, t], [0, 1]]``.

    Args:
        T: ``(..., 4, 4)`` rigid transform ``T_a_b``.

    Returns:
        ``(..., 4, 4)`` transform ``T_b_a`` (float32 for half-precision input).
    """
    T = _check_pose(T, "T")
    with _autocast_disabled(T.device):
        T = _upcast(T)
        R, t = _inverse_rt(T[..., :3, :3], T[..., :3, 3])
        return _assemble(R, t)


def compose_poses(T_a_b: Tensor, T_b_c: Tensor) -> Tensor:
    """Composition ``T_a_c = T_a_b @ T_b_c`` (first map c -> b, then b -> a), in float32 or float64.

    Args:
        T_a_b: ``(..., 4, 4)``.
        T_b_c: ``(..., 4, 4)``, broadcastable with ``T_a_b``.

    Returns:
        ``(..., 4, 4)`` transform ``T_a_c``.
    """
    T_a_b = _check_pose(T_a_b, "T_a_b")
    T_b_c = _check_pose(T_b_c, "T_b_c")
    with _autocast_disabled(T_a_b.device):
        dtype = _geometry_dtype(T_a_b, T_b_c)
        return T_a_b.to(dtype) @ T_b_c.to(dtype)


def relative_pose(T_world_tgt: Tensor, T_world_src: Tensor) -> Tensor:
    """Relative transform ``T_src_tgt = inv(T_world_src) @ T_world_tgt``.

    Args:
        T_world_tgt: ``(..., 4, 4)`` camera-to-world pose of the target camera (e.g. a KITTI trajectory row).
        T_world_src: ``(..., 4, 4)`` camera-to-world pose of the source camera.

    Returns:
        ``(..., 4, 4)`` transform mapping target-camera points into the source camera.
    """
    T_world_tgt = _check_pose(T_world_tgt, "T_world_tgt")
    T_world_src = _check_pose(T_world_src, "T_world_src")
    return compose_poses(invert_pose(T_world_src), T_world_tgt)
