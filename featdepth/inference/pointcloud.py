"""Depth maps to coloured point clouds, and PLY files.

Back-projection follows docs/design.md: pixel centres at integer coordinates ``u = 0..W-1``,
``v = 0..H-1``; a pixel with depth ``d`` (its z coordinate) becomes
``X = d (u - cx) / fx``, ``Y = d (v - cy) / fy``, ``Z = d`` in the camera frame (x right, y down,
z forward). Points are listed in row-major pixel order.

PLY layout (``format binary_little_endian 1.0`` or ``ascii 1.0``): one ``vertex`` element with
``float x, float y, float z, uchar red, uchar green, uchar blue``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["depth_to_points", "ply_bytes", "PLY_VERTEX_DTYPE"]

#: The vertex record of the PLY files we write (little-endian, packed: 15 bytes).
PLY_VERTEX_DTYPE = np.dtype(
    [("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1")]
)


def depth_to_points(depth: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Back-project a depth map.

    Args:
        depth: ``(H, W)`` depth (z) per pixel.
        K: ``(3, 3)`` pixel intrinsics of the depth map's resolution.

    Returns:
        ``(H*W, 3)`` float32 camera-frame points, row-major pixel order.
    """
    d = np.asarray(depth, dtype=np.float64)
    if d.ndim != 2:
        raise ValueError(f"depth must be (H, W), got shape {d.shape}")
    K = np.asarray(K, dtype=np.float64)
    if K.shape != (3, 3):
        raise ValueError(f"K must be (3, 3), got shape {K.shape}")
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    if fx <= 0 or fy <= 0:
        raise ValueError(f"K must have fx > 0 and fy > 0, got fx={fx}, fy={fy}")
    h, w = d.shape
    v, u = np.mgrid[0:h, 0:w].astype(np.float64)
    x = (u - cx) / fx * d
    y = (v - cy) / fy * d
    return np.stack([x, y, d], axis=-1).reshape(-1, 3).astype(np.float32)


def ply_bytes(points: np.ndarray, colors: np.ndarray, *, binary: bool = True) -> bytes:
    """Encode coloured points as a PLY file.

    Args:
        points: ``(N, 3)`` float coordinates.
        colors: ``(N, 3)`` uint8 RGB.
        binary: binary little-endian (default) or ASCII.
    """
    p = np.asarray(points, dtype=np.float32)
    c = np.asarray(colors)
    if p.ndim != 2 or p.shape[1] != 3:
        raise ValueError(f"points must be (N, 3), got shape {p.shape}")
    if c.shape != p.shape:
        raise ValueError(f"colors must be (N, 3) like points {p.shape}, got shape {c.shape}")
    c = c.astype(np.uint8)
    fmt = "binary_little_endian" if binary else "ascii"
    header = (
        "ply\n"
        f"format {fmt} 1.0\n"
        "comment written by featdepth\n"
        f"element vertex {p.shape[0]}\n"
        "property float x\nproperty float y\nproperty float z\n"
        "property uchar red\nproperty uchar green\nproperty uchar blue\n"
        "end_header\n"
    ).encode("ascii")
    if binary:
        rec = np.empty(p.shape[0], dtype=PLY_VERTEX_DTYPE)
        rec["x"], rec["y"], rec["z"] = p[:, 0], p[:, 1], p[:, 2]
        rec["red"], rec["green"], rec["blue"] = c[:, 0], c[:, 1], c[:, 2]
        return header + rec.tobytes()
    lines = [
        f"{x:.6g} {y:.6g} {z:.6g} {r} {g} {b}"
        for (x, y, z), (r, g, b) in zip(p.tolist(), c.tolist())
    ]
    return header + ("\n".join(lines) + ("\n" if lines else "")).encode("ascii")
