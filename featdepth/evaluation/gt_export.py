"""KITTI ground-truth depth export: Velodyne projection and the improved-GT PNGs -> ``gt_depths.npz``.

The Velodyne projection reproduces monodepth2's ``generate_depth_map`` (as called by its
``export_gt_depth.py --split eigen``), so the exported file matches the standard ``gt_depths.npz``:

1. ``P_velo2im = P_rect_0{cam} @ R_rect_00 @ T_velo_to_cam`` (``(3, 4)``, float64).
2. Keep points with Velodyne ``x >= 0`` (x points forward: "in front", the standard's approximation;
   the reflectance column is replaced by 1 for homogeneous coordinates).
3. ``(u, v, w) = P_velo2im @ X``; ``u /= w``, ``v /= w``.
4. Depth value: the Velodyne ``x`` (forward distance) by default (``depth_from="velodyne"``, what the
   standard export uses, ``vel_depth=True``), or the rectified camera depth ``w`` (``"camera"``).
5. Pixel: ``col = round(u) - 1``, ``row = round(v) - 1`` with NumPy's round-half-to-even. The ``- 1``
   is the standard's "same value as the KITTI MATLAB code" offset (it treats ``round(u)`` as 1-based),
   so a point projecting exactly at ``u = 10.0`` lands in column 9. We keep it on purpose: published
   numbers are computed on GT made this way.
6. Keep ``0 <= col < W`` and ``0 <= row < H``.
7. Several points on one pixel: the nearest (smallest depth value) wins. ``duplicates="monodepth2"``
   additionally reproduces a quirk of the standard code bit for bit: it finds duplicates through the
   linear index ``row * (W - 1) + col - 1``, which also merges pixel ``(r, W-1)`` with ``(r+1, 0)``;
   when such a pair holds points, the pixel of the first point (in scan order) receives the minimum
   over both pixels and the other keeps its last-written value. ``duplicates="nearest"`` is the clean
   rule (each pixel gets the minimum over its own points). The two differ only on the image's last
   column / first column, and only when both hold returns.
8. Negative depth values are set to 0.

Output maps are ``(H, W)`` float64 from :func:`project_velodyne_to_depth` and float32 in the file.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Iterable, Literal, Sequence

import numpy as np
from featdepth.data.kitti_calib import read_raw_calibration
from featdepth.utils.files import PathLike

__all__ = [
    "read_velodyne_points",
    "velodyne_to_image_matrix",
    "project_velodyne_to_depth",
    "read_benchmark_depth_png",
    "parse_split_line",
    "export_gt_depths",
    "save_gt_depths",
    "main",
]


SIDE_TO_CAM = {"l": 2, "r": 3}


def read_velodyne_points(path: PathLike) -> np.ndarray:
    """Read a KITTI Velodyne scan ``.bin`` (float32 x, y, z, reflectance per point).

    Returns:
        ``(N, 4)`` float32 in the Velodyne frame (x forward, y left, z up; metres).

    Raises:
        FileNotFoundError: the file does not exist. ValueError: its size is not a multiple of 16 bytes.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Velodyne scan not found: {path}")
    raw = np.fromfile(path, dtype=np.float32)
    if raw.size % 4 != 0:
        raise ValueError(f"{path}: {raw.size} float32 values, not a multiple of 4 (x, y, z, reflectance)")
    return raw.reshape(-1, 4)


def velodyne_to_image_matrix(calibration: Any) -> np.ndarray:
    """``(3, 4)`` float64 ``P_rect @ R_rect_00 @ velo_to_cam`` of a calibration object.

    ``calibration`` needs ``P_rect (3,4)``, ``R_rect_00 (4,4)`` and ``velo_to_cam (4,4)`` attributes
    (:class:`featdepth.data.kitti_calib.RawCalibration`), or is already a ``(3, 4)`` matrix.
    """
    if isinstance(calibration, np.ndarray):
        P = np.asarray(calibration, dtype=np.float64)
        if P.shape != (3, 4):
            raise ValueError(f"a matrix calibration must be the (3, 4) Velodyne->image matrix, got shape {P.shape}")
        return P
    try:
        P_rect = np.asarray(calibration.P_rect, dtype=np.float64).reshape(3, 4)
        R_rect = np.asarray(calibration.R_rect_00, dtype=np.float64).reshape(4, 4)
        velo_to_cam = np.asarray(calibration.velo_to_cam, dtype=np.float64).reshape(4, 4)
    except AttributeError as exc:
        raise TypeError(f"calibration needs P_rect, R_rect_00 and velo_to_cam attributes ({exc})") from exc
    return P_rect @ R_rect @ velo_to_cam


def project_velodyne_to_depth(
    points: np.ndarray,
    calibration: Any,
    image_size: tuple[int, int] | None = None,
    *,
    depth_from: Literal["velodyne", "camera"] = "velodyne",
    duplicates: Literal["monodepth2", "nearest"] = "monodepth2",
) -> np.ndarray:
    """Project a Velodyne scan to a sparse depth map (the standard KITTI GT; see the module docstring).

    Args:
        points: ``(N, 4)`` (x, y, z, reflectance; reflectance is ignored) or ``(N, 3)``, Velodyne frame.
        calibration: a ``RawCalibration`` (``featdepth.data.kitti_calib.read_raw_calibration``) or the
            ``(3, 4)`` Velodyne->image matrix.
        image_size: ``(H, W)``; defaults to ``calibration.image_size``.
        depth_from: ``"velodyne"`` (forward distance x, the standard export) or ``"camera"``
            (rectified camera depth).
        duplicates: ``"monodepth2"`` (bit-exact standard, see module docstring) or ``"nearest"``.

    Returns:
        ``(H, W)`` float64 depth in metres, 0 where no point landed.
    """
    pts = np.asarray(points)
    if pts.ndim != 2 or pts.shape[1] not in (3, 4):
        raise ValueError(f"points must be (N, 3) or (N, 4), got shape {pts.shape}")
    if image_size is None:
        if not hasattr(calibration, "image_size"):
            raise ValueError("image_size is required when the calibration has no image_size")
        image_size = calibration.image_size
    H, W = int(image_size[0]), int(image_size[1])
    if H <= 0 or W <= 0:
        raise ValueError(f"image_size must be positive (H, W), got {image_size}")
    if depth_from not in ("velodyne", "camera"):
        raise ValueError(f"depth_from must be 'velodyne' or 'camera', got {depth_from!r}")
    if duplicates not in ("monodepth2", "nearest"):
        raise ValueError(f"duplicates must be 'monodepth2' or 'nearest', got {duplicates!r}")
    P = velodyne_to_image_matrix(calibration)

    # Homogeneous float32 points (reflectance replaced by 1), as the standard loader does.
    velo = np.ones((pts.shape[0], 4), dtype=np.float32)
    velo[:, :3] = pts[:, :3]
    velo = velo[velo[:, 0] >= 0]

    proj = (P @ velo.T).T  # float64 (M, 3)
    uv = proj[:, :2] / proj[:, 2:3]
    depth_vals = velo[:, 0].astype(np.float64) if depth_from == "velodyne" else proj[:, 2]
    cols = np.round(uv[:, 0]) - 1
    rows = np.round(uv[:, 1]) - 1
    valid = (cols >= 0) & (rows >= 0) & (cols < W) & (rows < H)
    cols = cols[valid].astype(np.int64)
    rows = rows[valid].astype(np.int64)
    depth_vals = depth_vals[valid]

    depth = np.zeros((H, W), dtype=np.float64)
    flat = depth.reshape(-1)
    lin = rows * W + cols
    if lin.size:
        if duplicates == "nearest":
            best = np.full(H * W, np.inf)
            np.minimum.at(best, lin, depth_vals)
            hit = np.isfinite(best)
            flat[hit] = best[hit]
        else:
            # 1) Plain assignment: the last point (in scan order) on a pixel is written.
            rev = lin[::-1]
            uniq, first_in_rev = np.unique(rev, return_index=True)
            flat[uniq] = depth_vals[::-1][first_in_rev]
            # 2) Duplicates found through the quirky linear index row*(W-1)+col-1: the pixel of the
            #    group's first point gets the group's minimum.
            key = rows * (W - 1) + cols - 1
            ukey, first_idx, inverse, counts = np.unique(
                key, return_index=True, return_inverse=True, return_counts=True
            )
            group_min = np.full(ukey.shape[0], np.inf)
            np.minimum.at(group_min, inverse.reshape(-1), depth_vals)
            dup = counts > 1
            flat[lin[first_idx[dup]]] = group_min[dup]
    depth[depth < 0] = 0
    return depth


def read_benchmark_depth_png(path: PathLike) -> np.ndarray:
    """Read a KITTI depth-annotation PNG (uint16, depth = value / 256, 0 = invalid) -> ``(H, W)`` float32 metres."""
    from PIL import Image

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ground-truth depth PNG not found: {path}")
    with Image.open(path) as img:
        arr = np.array(img)
    if arr.ndim != 2:
        raise ValueError(f"{path}: expected a single-channel 16-bit PNG, got array shape {arr.shape}")
    if arr.dtype not in (np.uint16, np.int32, np.uint32, np.int64):
        raise ValueError(f"{path}: expected a 16-bit depth PNG, got dtype {arr.dtype}")
    return arr.astype(np.float32) / 256.0


def parse_split_line(line: str) -> tuple[str, int, str]:
    """Parse a split line ``"<date>/<drive> <frame> [l|r]"`` -> ``(folder, frame, side)`` (side defaults to ``"l"``)."""
    parts = line.split()
    if len(parts) not in (2, 3):
        raise ValueError(f"split line must be '<date>/<drive> <frame> [l|r]', got {line!r}")
    folder = parts[0]
    try:
        frame = int(parts[1])
    except ValueError as exc:
        raise ValueError(f"split line {line!r}: frame {parts[1]!r} is not an integer") from exc
    side = parts[2] if len(parts) == 3 else "l"
    if side not in SIDE_TO_CAM:
        raise ValueError(f"split line {line!r}: side must be 'l' or 'r', got {side!r}")
    return folder, frame, side


def _read_split_lines(split_lines: Sequence[str] | PathLike) -> list[str]:
    if isinstance(split_lines, (str, Path)):
        p = Path(split_lines)
        if not p.is_file():
            raise FileNotFoundError(f"split file not found: {p}")
        return [ln for ln in p.read_text().splitlines() if ln.strip()]
    return [ln for ln in split_lines if ln.strip()]


def _benchmark_candidates(data_path: Path, gt_path: Path | None, folder: str, cam: int, frame: int) -> list[Path]:
    rel = Path("proj_depth") / "groundtruth" / f"image_0{cam}" / f"{frame:010d}.png"
    drive = Path(folder).name
    cands = [data_path / folder / rel]
    if gt_path is not None:
        cands += [gt_path / sub / drive / rel for sub in ("train", "val")]
        cands += [gt_path / drive / rel, gt_path / folder / rel]
    return cands


def save_gt_depths(out_path: PathLike, depths: Iterable[np.ndarray]) -> Path:
    """Write ``depths`` in monodepth2's format: ``np.savez_compressed(out, data=<object array of float32 maps>)``."""
    items = [np.asarray(d, dtype=np.float32) for d in depths]
    data = np.empty(len(items), dtype=object)
    for i, d in enumerate(items):
        if d.ndim != 2:
            raise ValueError(f"depth map {i} must be (H, W), got shape {d.shape}")
        data[i] = d
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out_path, data=data)
    # np.savez_compressed appends .npz when the name lacks it
    return out_path if out_path.suffix == ".npz" else out_path.with_name(out_path.name + ".npz")


def export_gt_depths(
    data_path: PathLike,
    split_lines: Sequence[str] | PathLike,
    out_path: PathLike,
    mode: Literal["velodyne", "benchmark"] = "velodyne",
    *,
    gt_path: PathLike | None = None,
    duplicates: Literal["monodepth2", "nearest"] = "monodepth2",
) -> Path:
    """Export the GT depth of a split to ``gt_depths.npz`` (monodepth2 format, key ``"data"``).

    Args:
        data_path: KITTI raw root (``<data_path>/<date>/<drive>/...`` and ``<data_path>/<date>/calib_*.txt``).
        split_lines: the split's lines ``"<date>/<drive> <frame> <l|r>"``, or the path of a split file.
        out_path: output ``.npz`` path.
        mode: ``"velodyne"`` (Eigen: project ``velodyne_points/data/%010d.bin`` with
            :func:`project_velodyne_to_depth`, depth = Velodyne x) or ``"benchmark"`` (eigen_benchmark:
            ``proj_depth/groundtruth/image_0{2,3}/%010d.png`` / 256).
        gt_path: optional root of the KITTI depth annotated tree (``<gt_path>/{train,val}/<drive>/proj_depth/
            groundtruth/...``), searched after ``<data_path>/<date>/<drive>``, benchmark mode only.
        duplicates: see :func:`project_velodyne_to_depth`.

    The camera follows the side column (``l`` -> 2, ``r`` -> 3; the standard split files are all ``l``,
    where this is identical to monodepth2, which always uses camera 2).

    Returns:
        the path written.

    Raises:
        FileNotFoundError: a missing scan, calibration or PNG (the message names the paths tried).
    """
    data_path = Path(data_path)
    gt_root = Path(gt_path) if gt_path is not None else None
    if mode not in ("velodyne", "benchmark"):
        raise ValueError(f"mode must be 'velodyne' or 'benchmark', got {mode!r}")
    lines = _read_split_lines(split_lines)
    if not lines:
        raise ValueError("the split has no lines")
    calib_cache: dict[tuple[str, int], Any] = {}
    depths: list[np.ndarray] = []
    for lineno, line in enumerate(lines, start=1):
        folder, frame, side = parse_split_line(line)
        cam = SIDE_TO_CAM[side]
        if mode == "velodyne":
            date = Path(folder).parts[0]
            key = (date, cam)
            if key not in calib_cache:

                calib_dir = data_path / date
                try:
                    calib_cache[key] = read_raw_calibration(calib_dir, cam=cam)
                except FileNotFoundError as exc:
                    raise FileNotFoundError(
                        f"split line {lineno} ({line.strip()!r}): calibration missing in {calib_dir}: {exc}"
                    ) from exc
            velo_file = data_path / folder / "velodyne_points" / "data" / f"{frame:010d}.bin"
            if not velo_file.is_file():
                raise FileNotFoundError(f"split line {lineno} ({line.strip()!r}): Velodyne scan not found: {velo_file}")
            depth = project_velodyne_to_depth(read_velodyne_points(velo_file), calib_cache[key], duplicates=duplicates)
        else:
            cands = _benchmark_candidates(data_path, gt_root, folder, cam, frame)
            found = next((c for c in cands if c.is_file()), None)
            if found is None:
                tried = ", ".join(str(c) for c in cands)
                raise FileNotFoundError(
                    f"split line {lineno} ({line.strip()!r}): ground-truth PNG not found; tried {tried}"
                )
            depth = read_benchmark_depth_png(found)
        depths.append(depth.astype(np.float32))
    return save_gt_depths(out_path, depths)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: ``python -m featdepth.evaluation.gt_export --data-path RAW --split-file F --out gt_depths.npz``."""
    parser = argparse.ArgumentParser(description="Export KITTI ground-truth depth to gt_depths.npz (monodepth2 format)")
    parser.add_argument("--data-path", required=True, help="KITTI raw root")
    parser.add_argument("--split-file", required=True, help="split file, lines '<date>/<drive> <frame> <l|r>'")
    parser.add_argument("--out", required=True, help="output .npz")
    parser.add_argument("--mode", choices=["velodyne", "benchmark"], default="velodyne")
    parser.add_argument("--gt-path", default=None, help="root of the KITTI depth annotated tree (benchmark mode)")
    parser.add_argument("--duplicates", choices=["monodepth2", "nearest"], default="monodepth2")
    args = parser.parse_args(argv)
    out = export_gt_depths(
        args.data_path, args.split_file, args.out, args.mode, gt_path=args.gt_path, duplicates=args.duplicates
    )
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
