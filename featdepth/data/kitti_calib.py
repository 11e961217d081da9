"""KITTI calibration files (raw and odometry releases).

Conventions of the KITTI rectified projection matrices: ``P_rect_0i = K_i [I | t_i]`` maps points
in the *rectified camera 0* frame to pixels of camera ``i``, so ``X_cam_i = X_rect_0 + t_i`` with
``t_i = K_i^{-1} P_rect_0i[:, 3]``. The right camera of a stereo pair sits at ``+x``, so its
``t_x`` is smaller; the baseline (metres) is ``t_x(left) - t_x(right)`` (about 0.54 m on KITTI).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from featdepth.data.io import DataError, PathLike, _read_text

__all__ = [
    "read_calib_file",
    "RawCalibration",
    "read_raw_calibration",
    "read_odometry_calib",
    "camera_offset",
    "stereo_baseline_from_projections",
]


def read_calib_file(path: PathLike) -> dict[str, np.ndarray]:
    """Read a KITTI ``key: numbers`` calibration file.

    Lines whose values contain no number at all (``calib_time: 09-Jan-2012 13:57:47``) are skipped;
    blank lines are ignored.

    Returns:
        ``{key: 1-D float64 array}`` (reshape as needed; see :func:`read_raw_calibration`).

    Raises:
        DataError: a line without ``key:``, or a value mixing numbers and text; the message names
            the file, the line number and the key.
    """
    path = Path(path)
    text = _read_text(path, "calibration file")
    out: dict[str, np.ndarray] = {}
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        if ":" not in line:
            raise DataError(f"{path}, line {lineno}: expected 'key: numbers', got {line.strip()[:60]!r}")
        key, value = line.split(":", 1)
        key = key.strip()
        tokens = value.split()
        numbers: list[float] = []
        bad: list[str] = []
        for tok in tokens:
            try:
                numbers.append(float(tok))
            except ValueError:
                bad.append(tok)
        if not numbers:
            continue  # a text entry such as calib_time
        if bad:
            raise DataError(f"{path}, line {lineno}: key {key!r} has non-numeric value {bad[0]!r}")
        if not np.all(np.isfinite(numbers)):
            raise DataError(f"{path}, line {lineno}: key {key!r} has a non-finite value")
        out[key] = np.asarray(numbers, dtype=np.float64)
    return out


def _get(calib: dict[str, np.ndarray], key: str, shape: tuple[int, ...], path: Path) -> np.ndarray:
    if key not in calib:
        raise DataError(f"{path}: missing key {key!r}")
    value = calib[key]
    if value.size != int(np.prod(shape)):
        raise DataError(f"{path}: key {key!r} has {value.size} values, expected {int(np.prod(shape))} for shape {shape}")
    return value.reshape(shape)


def camera_offset(P: np.ndarray) -> np.ndarray:
    """Translation ``t`` (metres, ``(3,)``) of ``P = K [I | t]``: ``X_cam = X_ref + t``."""
    P = np.asarray(P, dtype=np.float64)
    return np.linalg.solve(P[:, :3], P[:, 3])


def stereo_baseline_from_projections(P_left: np.ndarray, P_right: np.ndarray) -> float:
    """Stereo baseline in metres from two rectified projection matrices (right camera at ``+x``)."""
    return float(camera_offset(P_left)[0] - camera_offset(P_right)[0])


@dataclass(frozen=True)
class RawCalibration:
    """Calibration of one KITTI raw recording day for one camera.

    Attributes:
        cam: camera number (0, 1 grey; 2, 3 colour).
        K: ``(3, 3)`` pixel intrinsics of the rectified image, ``P_rect[:, :3]``.
        P_rect: ``(3, 4)`` rectified projection ``P_rect_0{cam}`` (rectified cam-0 frame -> pixels).
        R_rect_00: ``(4, 4)`` rectifying rotation of camera 0, zero-padded with a 1.
        velo_to_cam: ``(4, 4)`` Velodyne -> (unrectified) camera-0 transform from ``calib_velo_to_cam.txt``.
        image_size: ``(height, width)`` of the rectified images, from ``S_rect_0{cam}``.
        baseline: stereo baseline in metres of the pair the camera belongs to (2-3 for colour,
            0-1 for grey), from the ``P_rect`` translations.
    """

    cam: int
    K: np.ndarray
    P_rect: np.ndarray
    R_rect_00: np.ndarray
    velo_to_cam: np.ndarray
    image_size: tuple[int, int]
    baseline: float


def read_raw_calibration(calib_dir: PathLike, cam: int = 2) -> RawCalibration:
    """Read ``calib_cam_to_cam.txt`` and ``calib_velo_to_cam.txt`` of a KITTI raw date folder.

    Args:
        calib_dir: the date folder, e.g. ``<raw>/2011_09_26``.
        cam: camera number 0..3 (2 = left colour, 3 = right colour).

    Raises:
        DataError: a missing file or key, or a key with the wrong number of values.
    """
    if cam not in (0, 1, 2, 3):
        raise ValueError(f"cam must be 0, 1, 2 or 3, got {cam}")
    calib_dir = Path(calib_dir)
    c2c_path = calib_dir / "calib_cam_to_cam.txt"
    v2c_path = calib_dir / "calib_velo_to_cam.txt"
    c2c = read_calib_file(c2c_path)
    v2c = read_calib_file(v2c_path)

    P_rect = _get(c2c, f"P_rect_0{cam}", (3, 4), c2c_path)
    R_rect = np.eye(4)
    R_rect[:3, :3] = _get(c2c, "R_rect_00", (3, 3), c2c_path)
    velo_to_cam = np.eye(4)
    velo_to_cam[:3, :3] = _get(v2c, "R", (3, 3), v2c_path)
    velo_to_cam[:3, 3] = _get(v2c, "T", (3,), v2c_path)
    w, h = _get(c2c, f"S_rect_0{cam}", (2,), c2c_path)
    left, right = (2, 3) if cam in (2, 3) else (0, 1)
    baseline = stereo_baseline_from_projections(
        _get(c2c, f"P_rect_0{left}", (3, 4), c2c_path), _get(c2c, f"P_rect_0{right}", (3, 4), c2c_path)
    )
    K = P_rect[:, :3].copy()
    if K[0, 0] <= 0 or K[1, 1] <= 0:
        raise DataError(f"{c2c_path}: key 'P_rect_0{cam}' has a non-positive focal length")
    return RawCalibration(
        cam=cam,
        K=K,
        P_rect=P_rect,
        R_rect_00=R_rect,
        velo_to_cam=velo_to_cam,
        image_size=(int(round(h)), int(round(w))),
        baseline=baseline,
    )


def read_odometry_calib(path: PathLike) -> dict[str, np.ndarray]:
    """Read the official labelled KITTI odometry ``calib.txt`` (``P0: ...`` to ``P3: ...``, ``Tr: ...``).

    Returns:
        ``{"P0": (3,4), "P1": (3,4), "P2": (3,4), "P3": (3,4)}`` plus ``"Tr"`` ``(4, 4)`` (Velodyne ->
        camera 0) when present.

    Raises:
        DataError: a missing ``P0``..``P3`` key or a key with the wrong number of values; the message
            names the file and the key.
    """
    path = Path(path)
    raw = read_calib_file(path)
    out = {f"P{i}": _get(raw, f"P{i}", (3, 4), path) for i in range(4)}
    if "Tr" in raw:
        Tr = np.eye(4)
        Tr[:3, :] = _get(raw, "Tr", (3, 4), path)
        out["Tr"] = Tr
    return out
