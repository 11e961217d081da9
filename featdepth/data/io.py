"""File readers and writers for the datasets, with errors that name the offending file.

Everything here raises :class:`DataError` (a ``ValueError`` and an ``OSError``) when a file is
missing, unreadable or malformed; the message always contains the path, and where it applies the
line number and the offending value. Missing files raise :class:`DataFileNotFoundError`, which is
also a ``FileNotFoundError``.

Conventions (see ``docs/design.md``):

- images are returned as RGB :class:`PIL.Image.Image` (greyscale is replicated to three channels);
- intrinsics are ``(3, 3)`` pixel matrices of the stored image;
- KITTI pose files hold one 12-column row per frame, the 3x4 top of ``T_world_cam`` (camera-to-world);
- depth maps are float32 metres, ``0`` = invalid.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, UnidentifiedImageError

__all__ = [
    "DataError",
    "DataFileNotFoundError",
    "PathLike",
    "load_image",
    "read_intrinsics_file",
    "read_kitti_poses",
    "write_kitti_poses",
    "read_baseline",
    "load_depth_npy",
    "load_regions_png",
]

PathLike = Union[str, os.PathLike]


class DataError(ValueError, OSError):
    """A data file is missing, unreadable or malformed. The message names the file."""

    def __str__(self) -> str:  # OSError's __str__ would format (errno, strerror) pairs
        return str(self.args[0]) if self.args else ""


class DataFileNotFoundError(DataError, FileNotFoundError):
    """A required data file or folder does not exist. The message names the path."""


def _require_file(path: Path, what: str) -> None:
    if not path.exists():
        raise DataFileNotFoundError(f"{what} not found: {path}")
    if not path.is_file():
        raise DataError(f"{what} is not a regular file: {path}")


def load_image(path: PathLike) -> Image.Image:
    """Load an image file as an RGB PIL image (greyscale and palette images become RGB).

    Args:
        path: the image file (any format Pillow reads; KITTI uses PNG or JPEG).

    Returns:
        A fully decoded ``PIL.Image.Image`` in mode ``"RGB"``.

    Raises:
        DataFileNotFoundError: the file does not exist.
        DataError: the file cannot be read or decoded (truncated or corrupt data); the message
            names the file.
    """
    path = Path(path)
    _require_file(path, "image file")
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode == "RGB":
                return img.copy()
            if img.mode in ("I;16", "I;16B", "I;16L", "I"):
                # 16-bit greyscale: rescale to 8 bits before replicating
                arr = np.asarray(img, dtype=np.float64)
                peak = 65535.0 if arr.max() > 255 else 255.0
                arr8 = np.clip(arr / peak * 255.0 + 0.5, 0, 255).astype(np.uint8)
                return Image.fromarray(arr8, mode="L").convert("RGB")
            return img.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"cannot read image file {path}: {exc}") from exc


def _parse_floats(tokens: list[str], path: Path, lineno: int) -> list[float]:
    values = []
    for tok in tokens:
        try:
            values.append(float(tok))
        except ValueError:
            raise DataError(f"{path}, line {lineno}: {tok!r} is not a number") from None
    if not np.all(np.isfinite(values)):
        raise DataError(f"{path}, line {lineno}: non-finite value in {' '.join(tokens)!r}")
    return values


def _read_text(path: Path, what: str) -> str:
    _require_file(path, what)
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read {what} {path}: {exc}") from exc


def read_intrinsics_file(path: PathLike) -> np.ndarray:
    """Read pixel intrinsics of the stored images.

    Two formats are accepted (blank lines and ``#`` comments are ignored):

    - three lines of three numbers: the 3x3 matrix ``K`` (last row must be ``0 0 1``);
    - one line ``fx fy cx cy`` in pixels.

    Returns:
        ``K``: ``(3, 3)`` float64 pixel intrinsics.

    Raises:
        DataError: wrong number of lines or values, a non-numeric value, ``fx <= 0`` or ``fy <= 0``,
            or a last row other than ``0 0 1``; the message names the file and the line.
    """
    path = Path(path)
    text = _read_text(path, "intrinsics file")
    rows: list[tuple[int, list[str]]] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if line:
            rows.append((lineno, line.replace(",", " ").split()))
    if len(rows) == 1:
        lineno, tokens = rows[0]
        if len(tokens) != 4:
            raise DataError(
                f"{path}, line {lineno}: expected 4 numbers 'fx fy cx cy' (or 3 lines of 3), got {len(tokens)}"
            )
        fx, fy, cx, cy = _parse_floats(tokens, path, lineno)
        K = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
        fx_line = fy_line = lineno
    elif len(rows) == 3:
        mat = []
        for lineno, tokens in rows:
            if len(tokens) != 3:
                raise DataError(f"{path}, line {lineno}: expected 3 numbers per row of K, got {len(tokens)}")
            mat.append(_parse_floats(tokens, path, lineno))
        K = np.array(mat, dtype=np.float64)
        if not np.allclose(K[2], [0.0, 0.0, 1.0]) or K[1, 0] != 0.0:
            raise DataError(f"{path}, line {rows[2][0]}: K must be upper triangular with last row '0 0 1', got {K.tolist()}")
        fx_line, fy_line = rows[0][0], rows[1][0]
    else:
        raise DataError(
            f"{path}: expected 3 lines of 3 numbers (K) or one line 'fx fy cx cy', got {len(rows)} non-empty lines"
        )
    if K[0, 0] <= 0:
        raise DataError(f"{path}, line {fx_line}: fx must be > 0, got {K[0, 0]}")
    if K[1, 1] <= 0:
        raise DataError(f"{path}, line {fy_line}: fy must be > 0, got {K[1, 1]}")
    return K


#: Largest accepted deviation of a pose's rotation block from a rotation, ``max(max|R^T R - I|, |det R - 1|)``.
#: Loose enough for poses printed with 6 digits or chained in float32, tight enough to catch scaled,
#: sheared, reflected or garbage blocks.
ROTATION_TOLERANCE = 1e-2


def rotation_deviation(R: np.ndarray) -> tuple[float, float]:
    """``(max |R^T R - I|, det R)`` of a ``(3, 3)`` block: how far it is from a rotation."""
    R = np.asarray(R, dtype=np.float64)
    return float(np.max(np.abs(R.T @ R - np.eye(3)))), float(np.linalg.det(R))


def check_pose_rotations(poses: np.ndarray, source: str, linenos: list[int] | None = None, tol: float = ROTATION_TOLERANCE) -> None:
    """Refuse pose blocks that are not rotations (orthonormal within ``tol``, ``det = +1``).

    Raises:
        DataError: naming ``source``, the line (or pose index) and the deviation; an all-zero file
            gets a plain message of its own.
    """
    poses = np.asarray(poses, dtype=np.float64)
    if poses.size and not np.any(poses[:, :3, :4]):
        raise DataError(f"{source}: every pose is all zeros ({len(poses)} lines): not a trajectory")
    for i, T in enumerate(poses):
        where = f"line {linenos[i]}" if linenos is not None else f"pose {i}"
        if not np.any(T[:3, :4]):
            raise DataError(f"{source}, {where}: all 12 values are zero (not a pose)")
        orth, det = rotation_deviation(T[:3, :3])
        if orth > tol or abs(det - 1.0) > tol:
            raise DataError(
                f"{source}, {where}: the 3x3 rotation block is not a rotation "
                f"(max |R^T R - I| = {orth:.3g}, det = {det:.4g}; tolerance {tol:g})"
            )


def read_kitti_poses(path: PathLike) -> np.ndarray:
    """Read a KITTI trajectory file: one 12-column row per frame, the 3x4 top of ``T_world_cam``.

    Returns:
        ``(N, 4, 4)`` float64 homogeneous camera-to-world poses.

    Raises:
        DataError: a row without exactly 12 numbers, a non-numeric value, an empty or all-zero file,
            or a rotation block that is not a rotation (see :func:`check_pose_rotations`); the
            message names the file and the line number.
    """
    path = Path(path)
    text = _read_text(path, "pose file")
    poses = []
    linenos = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        tokens = line.split()
        if not tokens:
            continue
        if len(tokens) != 12:
            raise DataError(f"{path}, line {lineno}: expected 12 numbers (3x4 pose row), got {len(tokens)}")
        values = _parse_floats(tokens, path, lineno)
        T = np.eye(4)
        T[:3, :] = np.asarray(values).reshape(3, 4)
        poses.append(T)
        linenos.append(lineno)
    if not poses:
        raise DataError(f"{path}: pose file is empty")
    out = np.stack(poses)
    check_pose_rotations(out, str(path), linenos)
    return out


def write_kitti_poses(path: PathLike, poses: np.ndarray) -> None:
    """Write ``(N, 4, 4)`` or ``(N, 3, 4)`` poses as KITTI 12-column rows (full float precision)."""
    poses = np.asarray(poses, dtype=np.float64)
    if poses.ndim != 3 or poses.shape[1:] not in ((4, 4), (3, 4)):
        raise ValueError(f"poses must have shape (N, 4, 4) or (N, 3, 4), got {poses.shape}")
    path = Path(path)
    lines = [" ".join(f"{v:.12e}" for v in T[:3, :].reshape(-1)) for T in poses]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def read_baseline(path: PathLike) -> float:
    """Read a stereo baseline file: one positive number, metres (the right camera sits at +x).

    Raises:
        DataError: not exactly one number, non-numeric or ``<= 0``; the message names the file.
    """
    path = Path(path)
    text = _read_text(path, "stereo baseline file")
    tokens = text.split("#", 1)[0].split()
    if len(tokens) != 1:
        raise DataError(f"{path}: expected one number (the stereo baseline in metres), got {len(tokens)} values")
    (value,) = _parse_floats(tokens, path, 1)
    if value <= 0:
        raise DataError(f"{path}: the stereo baseline must be > 0 metres, got {value}")
    return float(value)


def load_depth_npy(path: PathLike) -> np.ndarray:
    """Load a ``.npy`` depth map: float32 metres, ``0`` = invalid.

    Accepts ``(H, W)``, ``(1, H, W)`` or ``(H, W, 1)`` arrays.

    Returns:
        ``(H, W)`` float32.

    Raises:
        DataError: missing or unreadable file, wrong shape, or negative / non-finite values.
    """
    path = Path(path)
    _require_file(path, "depth file")
    try:
        depth = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(f"cannot read depth file {path}: {exc}") from exc
    depth = np.asarray(depth)
    if depth.ndim == 3 and 1 in (depth.shape[0], depth.shape[-1]):
        depth = depth.reshape(depth.shape[1:] if depth.shape[0] == 1 else depth.shape[:-1])
    if depth.ndim != 2:
        raise DataError(f"depth file {path}: expected an (H, W) array, got shape {depth.shape}")
    depth = depth.astype(np.float32, copy=False)
    if not np.all(np.isfinite(depth)) or (depth < 0).any():
        raise DataError(f"depth file {path}: depth must be finite and >= 0 (0 = invalid)")
    return depth


def load_regions_png(path: PathLike) -> np.ndarray:
    """Load a uint8 region-label PNG (single channel) as an ``(H, W)`` int64 array."""
    path = Path(path)
    _require_file(path, "region label file")
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode not in ("L", "P", "I", "I;16"):
                raise DataError(f"region label file {path}: expected a single-channel image, got mode {img.mode}")
            return np.asarray(img).astype(np.int64)
    except DataError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"cannot read region label file {path}: {exc}") from exc
