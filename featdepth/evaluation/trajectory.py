"""Trajectories: chaining relative poses, and the KITTI and TUM text formats.

Conventions (docs/design.md):

- An absolute pose is ``T_world_cam`` ``(4, 4)``: camera-to-world, ``X_world = R X_cam + t``; the
  camera position is ``T_world_cam[:3, 3]``.
- A relative pose between consecutive frames is ``T_src_tgt`` with target ``i`` and source ``i + 1``,
  written ``T_{i+1<-i}``: it maps points of frame ``i`` into frame ``i + 1``,
  ``T_{i+1<-i} = inv(T_world_cam[i+1]) @ T_world_cam[i]``. This is also monodepth2's GT "local pose"
  ``inv(inv(G_i) @ G_{i+1})`` and what FeatDepth's ``draw_odometry`` chains.
- Chaining: ``T_world_cam[i+1] = T_world_cam[i] @ inv(T_{i+1<-i})``, starting from identity.

KITTI files: one line per pose, the 12 row-major numbers of the top ``3 x 4`` of ``T_world_cam``.
TUM files: ``timestamp tx ty tz qx qy qz qw`` (Hamilton quaternion, scalar last), ``#`` comments.

Readers refuse what is not a trajectory: rotation blocks that are not rotations (orthonormal within
:data:`ROTATION_TOLERANCE`, det +1), quaternions far from unit norm, all-zero files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence, Union

import numpy as np

__all__ = [
    "chain_relative_poses",
    "relative_poses_from_absolute",
    "rotation_matrix_to_quaternion",
    "quaternion_to_rotation_matrix",
    "write_kitti_trajectory",
    "read_kitti_trajectory",
    "write_tum_trajectory",
    "read_tum_trajectory",
    "read_trajectory",
    "detect_trajectory_format",
    "is_stationary",
    "check_rotations",
    "ROTATION_TOLERANCE",
]

PathLike = Union[str, Path]


def _check_poses(poses: np.ndarray, name: str = "poses") -> np.ndarray:
    arr = np.asarray(poses, dtype=np.float64)
    if arr.ndim == 3 and arr.shape[1:] == (3, 4):
        full = np.tile(np.eye(4), (arr.shape[0], 1, 1))
        full[:, :3, :] = arr
        arr = full
    if arr.ndim != 3 or arr.shape[1:] != (4, 4):
        raise ValueError(f"{name} must be (N, 4, 4) (or (N, 3, 4)), got shape {np.shape(poses)}")
    return arr


def chain_relative_poses(rel_poses: np.ndarray, initial: np.ndarray | None = None) -> np.ndarray:
    """Absolute camera-to-world poses from consecutive relative poses.

    Args:
        rel_poses: ``(N, 4, 4)`` ``T_{i+1<-i}`` (maps frame-``i`` points into frame ``i+1``).
        initial: ``(4, 4)`` ``T_world_cam[0]``; identity by default.

    Returns:
        ``(N + 1, 4, 4)`` float64 ``T_world_cam`` with ``T_world_cam[i+1] = T_world_cam[i] @ inv(T_{i+1<-i})``.
    """
    rel = _check_poses(rel_poses, "rel_poses")
    out = np.empty((rel.shape[0] + 1, 4, 4), dtype=np.float64)
    out[0] = np.eye(4) if initial is None else np.asarray(initial, dtype=np.float64).reshape(4, 4)
    inv_rel = np.linalg.inv(rel) if rel.shape[0] else rel
    for i in range(rel.shape[0]):
        out[i + 1] = out[i] @ inv_rel[i]
    return out


def relative_poses_from_absolute(poses: np.ndarray) -> np.ndarray:
    """Inverse of :func:`chain_relative_poses`: ``(N, 4, 4)`` ``T_world_cam`` -> ``(N-1, 4, 4)`` ``T_{i+1<-i}``.

    ``T_{i+1<-i} = inv(T_world_cam[i+1]) @ T_world_cam[i]``.
    """
    P = _check_poses(poses)
    if P.shape[0] < 1:
        raise ValueError("need at least one pose")
    return np.linalg.inv(P[1:]) @ P[:-1]


def rotation_matrix_to_quaternion(R: np.ndarray) -> np.ndarray:
    """Rotation matrices ``(..., 3, 3)`` -> unit quaternions ``(..., 4)`` ordered ``(qx, qy, qz, qw)``.

    Shepperd's method: the largest of ``(w, x, y, z)`` is computed from the diagonal and the others
    from off-diagonal sums, so it is accurate for every rotation (180 degrees included). The sign is
    chosen so that ``qw >= 0``.
    """
    R = np.asarray(R, dtype=np.float64)
    if R.shape[-2:] != (3, 3):
        raise ValueError(f"R must be (..., 3, 3), got shape {R.shape}")
    batch = R.shape[:-2]
    m = R.reshape(-1, 3, 3)
    tr = m[:, 0, 0] + m[:, 1, 1] + m[:, 2, 2]
    # candidates 4w^2, 4x^2, 4y^2, 4z^2 (times 1) up to the common factor
    cand = np.stack([tr, m[:, 0, 0], m[:, 1, 1], m[:, 2, 2]], axis=1)
    which = np.argmax(cand, axis=1)
    q = np.empty((m.shape[0], 4))  # (w, x, y, z)
    for k in range(m.shape[0]):
        r = m[k]
        c = which[k]
        if c == 0:
            s = 2.0 * np.sqrt(max(1.0 + tr[k], 0.0))
            q[k] = (0.25 * s, (r[2, 1] - r[1, 2]) / s, (r[0, 2] - r[2, 0]) / s, (r[1, 0] - r[0, 1]) / s)
        elif c == 1:
            s = 2.0 * np.sqrt(max(1.0 + r[0, 0] - r[1, 1] - r[2, 2], 0.0))
            q[k] = ((r[2, 1] - r[1, 2]) / s, 0.25 * s, (r[0, 1] + r[1, 0]) / s, (r[0, 2] + r[2, 0]) / s)
        elif c == 2:
            s = 2.0 * np.sqrt(max(1.0 + r[1, 1] - r[0, 0] - r[2, 2], 0.0))
            q[k] = ((r[0, 2] - r[2, 0]) / s, (r[0, 1] + r[1, 0]) / s, 0.25 * s, (r[1, 2] + r[2, 1]) / s)
        else:
            s = 2.0 * np.sqrt(max(1.0 + r[2, 2] - r[0, 0] - r[1, 1], 0.0))
            q[k] = ((r[1, 0] - r[0, 1]) / s, (r[0, 2] + r[2, 0]) / s, (r[1, 2] + r[2, 1]) / s, 0.25 * s)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    q[q[:, 0] < 0] *= -1.0
    xyzw = q[:, [1, 2, 3, 0]]
    return xyzw.reshape(*batch, 4)


def quaternion_to_rotation_matrix(q: np.ndarray) -> np.ndarray:
    """Quaternions ``(..., 4)`` ordered ``(qx, qy, qz, qw)`` (normalised here) -> ``(..., 3, 3)``."""
    q = np.asarray(q, dtype=np.float64)
    if q.shape[-1] != 4:
        raise ValueError(f"q must be (..., 4), got shape {q.shape}")
    norm = np.linalg.norm(q, axis=-1, keepdims=True)
    if np.any(norm == 0):
        raise ValueError("zero quaternion")
    x, y, z, w = np.moveaxis(q / norm, -1, 0)
    R = np.stack(
        [
            1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w),
            2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w),
            2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y),
        ],
        axis=-1,
    )  # fmt: skip
    return R.reshape(*q.shape[:-1], 3, 3)


def write_kitti_trajectory(path: PathLike, poses: np.ndarray) -> Path:
    """Write ``(N, 4, 4)`` (or ``(N, 3, 4)``) ``T_world_cam`` as KITTI 12-column rows (``%.9e``)."""
    P = _check_poses(poses)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = P[:, :3, :].reshape(-1, 12)
    with path.open("w") as fh:
        for row in rows:
            fh.write(" ".join(f"{v:.9e}" for v in row) + "\n")
    return path


def _parse_floats(path: Path, lineno: int, line: str, expected: int, what: str) -> list[float]:
    tokens = line.split()
    if len(tokens) != expected:
        raise ValueError(f"{path}, line {lineno}: expected {expected} numbers ({what}), got {len(tokens)}")
    try:
        values = [float(t) for t in tokens]
    except ValueError as exc:
        raise ValueError(f"{path}, line {lineno}: not a number ({exc})") from exc
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{path}, line {lineno}: non-finite value")
    return values


#: Largest accepted deviation of a rotation block from a rotation, ``max(max|R^T R - I|, |det R - 1|)``
#: (loose enough for 6-digit files and float32 chaining, tight enough for scaled or garbage blocks).
ROTATION_TOLERANCE = 1e-2


def check_rotations(
    poses: np.ndarray, source: str, linenos: Sequence[int] | None = None, tol: float = ROTATION_TOLERANCE
) -> None:
    """Refuse ``(N, 4, 4)`` poses whose ``3 x 3`` blocks are not rotations (orthonormal within ``tol``, det +1).

    Raises:
        ValueError: naming ``source``, the line (or pose index) and the deviation; an all-zero
            trajectory gets a plain message of its own.
    """
    P = np.asarray(poses, dtype=np.float64)
    if P.size and not np.any(P[:, :3, :4]):
        raise ValueError(f"{source}: every pose is all zeros ({P.shape[0]} poses): not a trajectory")
    for i in range(P.shape[0]):
        where = f"line {linenos[i]}" if linenos is not None else f"pose {i}"
        if not np.any(P[i, :3, :4]):
            raise ValueError(f"{source}, {where}: all 12 values are zero (not a pose)")
        R = P[i, :3, :3]
        orth = float(np.max(np.abs(R.T @ R - np.eye(3))))
        det = float(np.linalg.det(R))
        if orth > tol or abs(det - 1.0) > tol:
            raise ValueError(
                f"{source}, {where}: the 3x3 rotation block is not a rotation "
                f"(max |R^T R - I| = {orth:.3g}, det = {det:.4g}; tolerance {tol:g})"
            )


def read_kitti_trajectory(path: PathLike) -> np.ndarray:
    """Read a KITTI trajectory file -> ``(N, 4, 4)`` float64 ``T_world_cam``. Blank lines are skipped.

    Raises:
        FileNotFoundError: missing file. ValueError: a line without exactly 12 numbers, an all-zero
        file, or a rotation block that is not a rotation (see :func:`check_rotations`); the message
        names the file and the line.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"trajectory file not found: {path}")
    rows = []
    linenos = []
    for lineno, line in enumerate(_read_utf8(path).splitlines(), start=1):
        if not line.strip():
            continue
        rows.append(_parse_floats(path, lineno, line, 12, "a row-major 3x4 pose"))
        linenos.append(lineno)
    if not rows:
        raise ValueError(f"{path}: no poses in the file")
    out = np.tile(np.eye(4), (len(rows), 1, 1))
    out[:, :3, :] = np.asarray(rows).reshape(-1, 3, 4)
    check_rotations(out, str(path), linenos)
    return out


def _read_utf8(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not a UTF-8 text trajectory file (byte at offset {exc.start})") from None


def write_tum_trajectory(
    path: PathLike, poses: np.ndarray, timestamps: Sequence[float] | np.ndarray | None = None
) -> Path:
    """Write ``(N, 4, 4)`` ``T_world_cam`` as TUM lines ``timestamp tx ty tz qx qy qz qw``.

    ``timestamps`` (seconds, ``(N,)``) default to the frame index.
    """
    P = _check_poses(poses)
    ts = np.arange(P.shape[0], dtype=np.float64) if timestamps is None else np.asarray(timestamps, dtype=np.float64)
    if ts.shape != (P.shape[0],):
        raise ValueError(f"timestamps must be ({P.shape[0]},), got shape {ts.shape}")
    q = rotation_matrix_to_quaternion(P[:, :3, :3])
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as fh:
        fh.write("# timestamp tx ty tz qx qy qz qw\n")
        for i in range(P.shape[0]):
            vals = [ts[i], *P[i, :3, 3], *q[i]]
            fh.write(" ".join(f"{v:.9f}" if j == 0 else f"{v:.9e}" for j, v in enumerate(vals)) + "\n")
    return path


def read_tum_trajectory(path: PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read a TUM trajectory -> ``(timestamps (N,), T_world_cam (N, 4, 4))``. ``#`` lines are comments.

    Raises:
        FileNotFoundError: missing file. ValueError: a line without 8 numbers, or a zero quaternion
        (names file and line).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"trajectory file not found: {path}")
    ts, poses = [], []
    for lineno, line in enumerate(_read_utf8(path).splitlines(), start=1):
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        v = _parse_floats(path, lineno, s, 8, "timestamp tx ty tz qx qy qz qw")
        norm = float(np.linalg.norm(v[4:]))
        if norm == 0:
            raise ValueError(f"{path}, line {lineno}: zero quaternion")
        if abs(norm - 1.0) > ROTATION_TOLERANCE:
            raise ValueError(
                f"{path}, line {lineno}: quaternion (qx qy qz qw) has norm {norm:.4g}, not 1 "
                f"(tolerance {ROTATION_TOLERANCE:g}): not a rotation"
            )
        T = np.eye(4)
        T[:3, :3] = quaternion_to_rotation_matrix(np.asarray(v[4:]))
        T[:3, 3] = v[1:4]
        ts.append(v[0])
        poses.append(T)
    if not poses:
        raise ValueError(f"{path}: no poses in the file")
    return np.asarray(ts), np.stack(poses)


def detect_trajectory_format(path: PathLike) -> str:
    """``"kitti"`` (12 numbers per line) or ``"tum"`` (8 numbers per line, ``#`` comments), from the first
    data line of ``path``.

    Raises:
        FileNotFoundError: missing file. ValueError: no data line, or a first data line of another
        width (names the file, the line and the count).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"trajectory file not found: {path}")
    for lineno, line in enumerate(_read_utf8(path).splitlines(), start=1):
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        n = len(s.replace(",", " ").split())
        if n == 12:
            return "kitti"
        if n == 8:
            return "tum"
        raise ValueError(
            f"{path}, line {lineno}: {n} numbers; a trajectory file has 12 per line (KITTI: 3x4 T_world_cam) "
            "or 8 (TUM: timestamp tx ty tz qx qy qz qw)"
        )
    raise ValueError(f"{path}: no poses in the file")


def read_trajectory(path: PathLike, fmt: str = "auto") -> tuple[np.ndarray, np.ndarray | None, str]:
    """Read a KITTI or TUM trajectory (what ``featdepth predict trajectory`` writes, and the usual GT files).

    Args:
        path: the file.
        fmt: ``"auto"`` (by the number of values per line, :func:`detect_trajectory_format`), ``"kitti"``
            or ``"tum"``.

    Returns:
        ``(T_world_cam (N, 4, 4), timestamps (N,) or None for KITTI, format)``.
    """
    fmt = detect_trajectory_format(path) if fmt == "auto" else fmt
    if fmt == "kitti":
        return read_kitti_trajectory(path), None, "kitti"
    if fmt == "tum":
        ts, poses = read_tum_trajectory(path)
        return poses, ts, "tum"
    raise ValueError(f"trajectory format must be auto, kitti or tum, got {fmt!r}")


def is_stationary(poses: np.ndarray) -> bool:
    """Whether every camera position of ``(N, 4, 4)`` ``T_world_cam`` is the same (the camera never moves:
    an alignment scale is undefined)."""
    P = _check_poses(poses)
    return P.shape[0] < 2 or not np.any(np.ptp(P[:, :3, 3], axis=0) > 0)
