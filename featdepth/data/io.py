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
    "as_pixel_intrinsics",
    "scale_intrinsics",
    "KITTI_CAMERAS",
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


#: Names accepted for the camera of a KITTI calibration file (``camera=`` of :func:`read_intrinsics_file`).
KITTI_CAMERAS = ("P0", "P1", "P2", "P3")


def _camera_index(camera: str | int | None, path: Path) -> int:
    if camera is None:
        return 2
    text = str(camera).strip().upper().replace("P_RECT_0", "P")
    if text.startswith("P"):
        text = text[1:]
    if text in ("0", "1", "2", "3"):
        return int(text)
    raise DataError(f"{path}: unknown camera {camera!r}; pick one of P0, P1, P2 (left colour, default), P3")


def _K_from_projection(values: list[float], path: Path, where: str) -> np.ndarray:
    P = np.asarray(values, dtype=np.float64).reshape(3, 4)
    K = P[:, :3].copy()
    if not np.allclose(K[2], [0.0, 0.0, 1.0]) or K[1, 0] != 0.0 or K[2, 0] != 0.0:
        raise DataError(f"{path}, {where}: the left 3x3 block of the projection matrix is not a camera matrix "
                        f"(upper triangular, last row '0 0 1'), got {K.tolist()}")
    return K


def _kitti_labelled(rows: list[tuple[int, str]], path: Path, camera: str | int | None) -> np.ndarray:
    index = _camera_index(camera, path)
    entries: dict[str, tuple[int, list[str]]] = {}
    for lineno, line in rows:
        key, _, value = line.partition(":")
        entries[key.strip()] = (lineno, value.replace(",", " ").split())
    for key in (f"P_rect_0{index}", f"P{index}"):  # calib_cam_to_cam.txt (raw), calib.txt (odometry / object)
        if key in entries:
            lineno, tokens = entries[key]
            if len(tokens) != 12:
                raise DataError(f"{path}, line {lineno}: {key} needs 12 numbers (a 3x4 projection), got {len(tokens)}")
            return _K_from_projection(_parse_floats(tokens, path, lineno), path, f"line {lineno} ({key})")
    found = sorted(k for k in entries if k.startswith("P"))
    raise DataError(f"{path}: no projection matrix P{index} (or P_rect_0{index}) in this KITTI calibration file; "
                    f"it holds {', '.join(found) or 'no P entries'} (pick another camera, e.g. P0)")


def read_intrinsics_file(path: PathLike, camera: str | int | None = None) -> np.ndarray:
    """Read pixel intrinsics of the stored images from any of the usual text forms.

    Accepted (blank lines and ``#`` comments are ignored; commas count as spaces):

    - three lines of three numbers: the 3x3 matrix ``K`` (last row must be ``0 0 1``);
    - ``fx fy cx cy`` in pixels: on one line (1x4) or one number per line (4x1);
    - a 3x4 projection matrix ``P = K [I | t]`` (three lines of four numbers, or one line of 12);
    - a KITTI calibration file: odometry ``calib.txt`` with ``P0: ... P3:`` labels, or the same
      without labels (one line of 12 numbers per camera, P0 first), and KITTI raw
      ``calib_cam_to_cam.txt`` (``P_rect_0N``). The camera is P2 (left colour) unless ``camera``
      names another (``"P0"``..``"P3"`` or ``0``..``3``); ``K`` is the left 3x3 block of its ``P``.

    Args:
        path: the text file.
        camera: KITTI files only: which camera's projection to use (default ``"P2"``).

    Returns:
        ``K``: ``(3, 3)`` float64 pixel intrinsics.

    Raises:
        DataError: wrong number of lines or values, a non-numeric value, ``fx <= 0`` or ``fy <= 0``,
            a last row other than ``0 0 1``, or a missing camera in a KITTI file; the message names
            the file and the line.
    """
    path = Path(path)
    text = _read_text(path, "intrinsics file")
    raw: list[tuple[int, str]] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if line:
            raw.append((lineno, line))
    if any(":" in line for _, line in raw):
        K = _kitti_labelled([(n, line) for n, line in raw if ":" in line], path, camera)
        fx_line = fy_line = raw[0][0]
    else:
        rows = [(lineno, line.replace(",", " ").split()) for lineno, line in raw]
        counts = [len(tokens) for _, tokens in rows]
        fx_line = fy_line = rows[0][0] if rows else 0
        if counts == [4] or counts == [1, 1, 1, 1]:
            tokens = [t for _, toks in rows for t in toks]
            fx, fy, cx, cy = _parse_floats(tokens, path, rows[0][0])
            K = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
            if counts == [1, 1, 1, 1]:
                fx_line, fy_line = rows[0][0], rows[1][0]
        elif counts == [4, 4, 4]:
            values = [v for lineno, toks in rows for v in _parse_floats(toks, path, lineno)]
            K = _K_from_projection(values, path, f"lines {rows[0][0]}-{rows[2][0]} (3x4 projection)")
        elif counts and all(c == 12 for c in counts):
            index = _camera_index(camera, path) if (camera is not None or len(rows) > 1) else 0
            if index >= len(rows):
                raise DataError(
                    f"{path}: unlabelled KITTI calibration with {len(rows)} projection line(s) (P0..P{len(rows) - 1}) "
                    f"has no P{index}; pick a camera that exists, e.g. P0"
                )
            lineno, toks = rows[index]
            K = _K_from_projection(_parse_floats(toks, path, lineno), path, f"line {lineno} (P{index})")
        elif len(rows) == 1:
            lineno, tokens = rows[0]
            raise DataError(
                f"{path}, line {lineno}: expected 4 numbers 'fx fy cx cy' (or 3 lines of 3), got {len(tokens)}"
            )
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
                f"{path}: expected 3 lines of 3 numbers (K), 'fx fy cx cy' (one line or four), a 3x4 projection or a "
                f"KITTI calibration file, got {len(rows)} non-empty lines"
            )
    if K[0, 0] <= 0:
        raise DataError(f"{path}, line {fx_line}: fx must be > 0, got {K[0, 0]}")
    if K[1, 1] <= 0:
        raise DataError(f"{path}, line {fy_line}: fy must be > 0, got {K[1, 1]}")
    return K


def as_pixel_intrinsics(value: object, camera: str | int | None = None) -> np.ndarray:
    """Pixel intrinsics from what a user may hand over: a ``(3, 3)`` matrix, four numbers
    ``(fx, fy, cx, cy)``, the text ``"fx fy cx cy"``, or a file path (any form of :func:`read_intrinsics_file`).

    Returns:
        ``(3, 3)`` float64 ``K``.

    Raises:
        DataError: a missing or malformed file, a value of another shape, or ``fx``/``fy`` not ``> 0``;
            the message names the file or shows the value.
    """
    if isinstance(value, (str, os.PathLike)):
        text = str(value)
        if Path(text).is_file():
            return read_intrinsics_file(text, camera=camera)
        tokens = text.replace(",", " ").split()
        try:
            value = [float(t) for t in tokens]
        except ValueError:
            value = None
        if value is None or len(tokens) != 4:
            if Path(text).exists() or len(tokens) <= 1:
                raise DataFileNotFoundError(f"intrinsics file not found or not a file: {text}")
            raise DataError(f"intrinsics {text!r} are neither a file nor four numbers 'fx fy cx cy' (pixels)")
    arr = np.asarray(value, dtype=np.float64)
    if arr.shape in ((4,), (4, 1), (1, 4)):
        fx, fy, cx, cy = arr.reshape(4)
        arr = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
    if arr.shape != (3, 3):
        raise DataError(f"intrinsics must be a 3x3 matrix or four numbers (fx, fy, cx, cy) in pixels, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise DataError(f"intrinsics hold a non-finite value: {arr.tolist()}")
    if arr[0, 0] <= 0 or arr[1, 1] <= 0:
        raise DataError(f"intrinsics: fx and fy must be > 0, got fx={arr[0, 0]:g}, fy={arr[1, 1]:g}")
    return arr


def scale_intrinsics(K: np.ndarray, from_size: tuple[int, int], to_size: tuple[int, int]) -> np.ndarray:
    """Pixel ``K`` of an image of ``from_size = (H, W)`` -> ``K`` of the same view resized to ``to_size``.

    ``fx, cx`` scale by ``W'/W`` and ``fy, cy`` by ``H'/H``: the field's convention, the same as scaling
    normalised intrinsics ``(fx/W, fy/H, cx/W, cy/H)`` to another size (what the datasets and the model do).
    """
    (h, w), (h2, w2) = from_size, to_size
    out = np.asarray(K, dtype=np.float64).copy()
    out[0] *= w2 / w
    out[1] *= h2 / h
    return out


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
