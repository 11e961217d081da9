"""KITTI raw and KITTI odometry datasets (official release layouts).

KITTI raw::

    <data_path>/<date>/calib_cam_to_cam.txt, calib_velo_to_cam.txt
    <data_path>/<date>/<drive>/image_02/data/%010d.png (or .jpg)    left colour camera
    <data_path>/<date>/<drive>/image_03/data/%010d.png (or .jpg)    right colour camera
    <data_path>/<date>/<drive>/proj_depth/velodyne/image_0X/%010d.npz  optional projected lidar depth

KITTI odometry::

    <data_path>/sequences/NN/image_2/%06d.png, image_3/   colour cameras (image_0/1: grey)
    <data_path>/sequences/NN/calib.txt                    labelled P0: .. P3:, Tr:
    <data_path>/poses/NN.txt                              GT T_world_cam0, 12 columns

Split lines are ``<folder> <frame> <l|r>``; ``'l'`` is the left camera, ``'s'`` loads the other
camera at the same frame, integer offsets load neighbours from the same camera.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
from PIL import Image

from featdepth.data.base import FrameId, MonoDataset
from featdepth.data.io import DataError, DataFileNotFoundError, PathLike, load_image, read_kitti_poses
from featdepth.data.kitti_calib import (
    RawCalibration,
    camera_offset,
    read_odometry_calib,
    read_raw_calibration,
    stereo_baseline_from_projections,
)
from featdepth.data.splits import SplitEntry, parse_split_lines, read_split_file
from featdepth.data.transforms import RandomGenerator
from featdepth.utils.constants import KITTI_NORMALIZED_K

__all__ = ["KittiRawDataset", "KittiOdometryDataset", "KITTI_NORMALISED_K", "resize_depth_nearest"]

#: monodepth2 / FeatDepth normalised KITTI intrinsics ``(fx/W, fy/H, cx/W, cy/H)``.
KITTI_NORMALISED_K = KITTI_NORMALIZED_K  # the spelling this module has always exported

Filenames = Union[PathLike, Sequence[Union[str, SplitEntry]]]


def _entries_from(filenames: Filenames) -> list[SplitEntry]:
    if isinstance(filenames, (str, Path)):
        return read_split_file(filenames)
    return parse_split_lines(list(filenames))


def resize_depth_nearest(depth: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of an ``(H, W)`` sparse depth map to ``size = (H', W')`` (no value mixing)."""
    h0, w0 = depth.shape
    h, w = size
    if (h0, w0) == (h, w):
        return depth
    rows = np.minimum(((np.arange(h) + 0.5) * h0 / h).astype(np.int64), h0 - 1)
    cols = np.minimum(((np.arange(w) + 0.5) * w0 / w).astype(np.int64), w0 - 1)
    return depth[rows[:, None], cols[None, :]]


class KittiRawDataset(MonoDataset):
    """KITTI raw (monodepth2 / FeatDepth ``kitti`` dataset) returning the sample structure of ``docs/design.md``.

    Args:
        data_path: the KITTI raw root (holding the ``<date>`` folders).
        filenames: a split file path, or split lines / ``(folder, frame, side)`` tuples.
        frame_ids, height, width, is_train, stereo_baseline, flip_prob, color_jitter_prob, generator:
            see :class:`~featdepth.data.base.MonoDataset`. ``stereo_baseline=None`` uses the real
            baseline from ``calib_cam_to_cam.txt`` (about 0.54 m); FeatDepth trains with 0.015.
        img_ext: ``".png"``, ``".jpg"`` or ``None`` to detect it from the first existing target.
        use_calibration_K: ``True``: ``K = P_rect_02[:, :3]`` (``P_rect_03`` for right targets) scaled to
            the training size; ``False``: monodepth2's normalised K (fx 0.58, fy 1.92, cx = cy = 0.5).
        load_depth: add ``depth_gt`` from ``proj_depth/velodyne/image_0X/%010d.npz`` (key
            ``velodyne_depth``), at the stored image size or at ``depth_gt_size``.
        depth_gt_size: optional ``(H, W)`` to nearest-resize ``depth_gt`` to (KITTI drives differ slightly
            in size; monodepth2 uses ``(375, 1242)``), so samples of different drives can be batched.

    Split entries whose target, requested neighbours or (with ``load_depth``) depth file do not exist
    are skipped and counted per reason in ``index_report`` (see :meth:`MonoDataset.index_summary`).
    """

    def __init__(
        self,
        data_path: PathLike,
        filenames: Filenames,
        frame_ids: Sequence[FrameId],
        height: int,
        width: int,
        is_train: bool = False,
        img_ext: Optional[str] = None,
        use_calibration_K: bool = True,
        stereo_baseline: Optional[float] = None,
        load_depth: bool = False,
        depth_gt_size: Optional[tuple[int, int]] = None,
        flip_prob: float = 0.5,
        color_jitter_prob: float = 0.5,
        generator: RandomGenerator = None,
    ) -> None:
        super().__init__(
            frame_ids,
            height,
            width,
            is_train=is_train,
            load_depth=load_depth,
            stereo_baseline=stereo_baseline,
            flip_prob=flip_prob,
            color_jitter_prob=color_jitter_prob,
            generator=generator,
        )
        self.data_path = Path(data_path)
        if not self.data_path.is_dir():
            raise DataFileNotFoundError(f"KITTI raw folder not found: {self.data_path}")
        entries = _entries_from(filenames)
        if not entries:
            raise DataError(f"{self.describe()}: the split is empty")
        if img_ext is not None and img_ext.lower() not in (".png", ".jpg", ".jpeg"):
            raise ValueError(f"img_ext must be '.png', '.jpg' or None (auto), got {img_ext!r}")
        self.img_ext = img_ext if img_ext is not None else self._detect_ext(entries)
        self.use_calibration_K = bool(use_calibration_K)
        self.depth_gt_size = None if depth_gt_size is None else (int(depth_gt_size[0]), int(depth_gt_size[1]))
        self._calib: dict[tuple[str, int], RawCalibration] = {}
        self.build_index(entries)
        if self.use_calibration_K or ("s" in self.frame_ids and self.stereo_baseline is None):
            for folder, _, side in self.items:  # read every date's calibration now: errors surface early
                self._calibration(folder, side)

    def describe(self) -> str:
        return f"KittiRawDataset({self.data_path})"

    def _detect_ext(self, entries: list[SplitEntry]) -> str:
        for folder, frame, side in entries[:1000]:
            for ext in (".png", ".jpg"):
                if self._image_path(folder, frame, side, ext).is_file():
                    return ext
        raise DataFileNotFoundError(
            f"{self.describe()}: no png or jpg image found for the split entries, e.g. "
            f"{self._image_path(*entries[0], '.png')}"
        )

    @staticmethod
    def _cam(side: str) -> int:
        return 2 if side == "l" else 3

    def _image_path(self, folder: str, frame: int, side: str, ext: Optional[str] = None) -> Path:
        ext = self.img_ext if ext is None else ext
        return self.data_path / folder / f"image_0{self._cam(side)}" / "data" / f"{frame:010d}{ext}"

    def _calibration(self, folder: str, side: str) -> RawCalibration:
        date = Path(folder).parts[0]
        key = (date, self._cam(side))
        if key not in self._calib:
            self._calib[key] = read_raw_calibration(self.data_path / date, cam=self._cam(side))
        return self._calib[key]

    @staticmethod
    def _other(side: str) -> str:
        return "r" if side == "l" else "l"

    def _frame(self, item: SplitEntry, frame_id: FrameId) -> tuple[str, int, str]:
        folder, frame, side = item
        if frame_id == "s":
            return folder, frame, self._other(side)
        return folder, frame + int(frame_id), side

    # hooks ------------------------------------------------------------------
    def has_frame(self, item: SplitEntry, frame_id: FrameId) -> bool:
        folder, frame, side = self._frame(item, frame_id)
        return frame >= 0 and self._image_path(folder, frame, side).is_file()

    def describe_item(self, item: SplitEntry) -> str:
        return f"split line '{item[0]} {item[1]} {item[2]}' ({self._image_path(*item)})"

    def frame_path(self, item: SplitEntry, frame_id: FrameId) -> Optional[Path]:
        folder, frame, side = self._frame(item, frame_id)
        return self._image_path(folder, frame, side) if frame >= 0 else None

    def skip_reason(self, item: SplitEntry) -> Optional[str]:
        reason = super().skip_reason(item)
        if reason is None and self.load_depth and not self.depth_path(item).is_file():
            return "missing depth file"
        return reason

    def get_color(self, item: SplitEntry, frame_id: FrameId) -> Image.Image:
        return load_image(self._image_path(*self._frame(item, frame_id)))

    def get_intrinsics(self, item: SplitEntry, image_size: tuple[int, int]) -> np.ndarray:
        h0, w0 = image_size
        if not self.use_calibration_K:
            fx, fy, cx, cy = KITTI_NORMALISED_K
            return np.array([[fx * w0, 0.0, cx * w0], [0.0, fy * h0, cy * h0], [0.0, 0.0, 1.0]])
        calib = self._calibration(item[0], item[2])
        K = calib.K.copy()
        hc, wc = calib.image_size
        K[0] *= w0 / wc
        K[1] *= h0 / hc
        return K

    def is_left(self, item: SplitEntry) -> bool:
        return item[2] == "l"

    def get_baseline(self, item: SplitEntry) -> float:
        return self._calibration(item[0], item[2]).baseline

    def depth_path(self, item: SplitEntry) -> Path:
        folder, frame, side = item
        return self.data_path / folder / "proj_depth" / "velodyne" / f"image_0{self._cam(side)}" / f"{frame:010d}.npz"

    def get_depth(self, item: SplitEntry) -> np.ndarray:
        path = self.depth_path(item)
        if not path.is_file():
            raise DataFileNotFoundError(f"depth file not found: {path}")
        try:
            with np.load(path, allow_pickle=False) as npz:
                if "velodyne_depth" not in npz.files:
                    raise DataError(f"depth file {path}: no key 'velodyne_depth' (keys: {npz.files})")
                depth = np.asarray(npz["velodyne_depth"], dtype=np.float32)
        except DataError:
            raise
        except (OSError, ValueError, EOFError) as exc:
            raise DataError(f"cannot read depth file {path}: {exc}") from exc
        if depth.ndim != 2:
            raise DataError(f"depth file {path}: expected an (H, W) array, got shape {depth.shape}")
        if self.depth_gt_size is not None:
            depth = resize_depth_nearest(depth, self.depth_gt_size)
        return depth


def _seq_name(folder: Union[str, int]) -> str:
    text = str(folder)
    return f"{int(text):02d}" if text.isdigit() else text


class KittiOdometryDataset(MonoDataset):
    """KITTI odometry (official layout) returning the sample structure of ``docs/design.md``.

    Args:
        data_path: the odometry root holding ``sequences/`` and (for GT poses) ``poses/``.
        filenames: a split file path, split lines (``"9 0 l"``) / tuples, or sequence ids
            (``[9, 10]`` or ``["09"]``: every frame of those sequences, left camera).
        frame_ids, height, width, is_train, stereo_baseline, flip_prob, color_jitter_prob, generator:
            see :class:`~featdepth.data.base.MonoDataset`; ``stereo_baseline=None`` uses the baseline
            from the ``P`` matrices of ``calib.txt`` (about 0.54 m).
        cameras: ``"color"`` (``image_2``/``image_3``, ``K`` from ``P2``/``P3``; the default, as in
            monodepth2) or ``"grey"`` (``image_0``/``image_1``, ``P0``/``P1``; what the official FeatDepth
            code reads, replicated to three channels).
        load_poses: add ``pose_gt`` from ``poses/NN.txt`` (camera-0 trajectory, moved to the loaded
            camera with its ``P`` offset).
        sequences: alternative to ``filenames``: sequence ids to use in full.
        img_ext: image extension (``".png"``).
    """

    def __init__(
        self,
        data_path: PathLike,
        filenames: Optional[Union[Filenames, Sequence[int]]],
        frame_ids: Sequence[FrameId],
        height: int,
        width: int,
        is_train: bool = False,
        cameras: str = "color",
        load_poses: bool = False,
        stereo_baseline: Optional[float] = None,
        sequences: Optional[Sequence[Union[int, str]]] = None,
        img_ext: str = ".png",
        flip_prob: float = 0.5,
        color_jitter_prob: float = 0.5,
        generator: RandomGenerator = None,
    ) -> None:
        super().__init__(
            frame_ids,
            height,
            width,
            is_train=is_train,
            load_poses=load_poses,
            stereo_baseline=stereo_baseline,
            flip_prob=flip_prob,
            color_jitter_prob=color_jitter_prob,
            generator=generator,
        )
        if cameras not in ("color", "grey"):
            raise ValueError(f"cameras must be 'color' or 'grey', got {cameras!r}")
        self.cameras = cameras
        self.img_ext = img_ext
        self.data_path = Path(data_path)
        if not (self.data_path / "sequences").is_dir():
            raise DataFileNotFoundError(f"KITTI odometry folder not found: {self.data_path / 'sequences'}")
        if filenames is not None and not isinstance(filenames, (str, Path)):
            filenames = list(filenames)
            if filenames and all(
                isinstance(f, (int, np.integer)) or (isinstance(f, str) and f.strip().isdigit()) for f in filenames
            ):
                if sequences is not None:
                    raise ValueError("give sequence ids either as filenames or as sequences=, not both")
                sequences, filenames = filenames, None
        if (filenames is None) == (sequences is None):
            raise ValueError("give exactly one of filenames (split) or sequences (ids)")
        if filenames is not None:
            entries = [(_seq_name(f), i, s) for f, i, s in _entries_from(filenames)]
        else:
            entries = []
            for seq in sequences:  # type: ignore[union-attr]
                name = _seq_name(seq)
                folder = self.data_path / "sequences" / name / self._image_dir("l")
                if not folder.is_dir():
                    raise DataFileNotFoundError(f"sequence {name}: image folder not found: {folder}")
                frames = sorted(int(p.stem) for p in folder.glob(f"*{img_ext}") if p.stem.isdigit())
                entries.extend((name, i, "l") for i in frames)
        if not entries:
            raise DataError(f"{self.describe()}: no split entries / frames")
        self._calib: dict[str, dict[str, np.ndarray]] = {}
        self._poses: dict[str, np.ndarray] = {}
        self.build_index(entries)
        for name in sorted({item[0] for item in self.items}):  # read calibration (and poses) up front
            self._calibration(name)
            if self.load_poses:
                self._sequence_poses(name)

    def describe(self) -> str:
        return f"KittiOdometryDataset({self.data_path})"

    def _cam(self, side: str) -> int:
        base = 2 if self.cameras == "color" else 0
        return base if side == "l" else base + 1

    def _image_dir(self, side: str) -> str:
        return f"image_{self._cam(side)}"

    def _image_path(self, seq: str, frame: int, side: str) -> Path:
        return self.data_path / "sequences" / seq / self._image_dir(side) / f"{frame:06d}{self.img_ext}"

    def _calibration(self, seq: str) -> dict[str, np.ndarray]:
        if seq not in self._calib:
            self._calib[seq] = read_odometry_calib(self.data_path / "sequences" / seq / "calib.txt")
        return self._calib[seq]

    def _sequence_poses(self, seq: str) -> np.ndarray:
        if seq not in self._poses:
            self._poses[seq] = read_kitti_poses(self.data_path / "poses" / f"{seq}.txt")
        return self._poses[seq]

    def _frame(self, item: SplitEntry, frame_id: FrameId) -> tuple[str, int, str]:
        seq, frame, side = item
        if frame_id == "s":
            return seq, frame, "r" if side == "l" else "l"
        return seq, frame + int(frame_id), side

    def projection(self, item: SplitEntry) -> np.ndarray:
        """``(3, 4)`` rectified projection matrix of the target camera of ``item``."""
        return self._calibration(item[0])[f"P{self._cam(item[2])}"]

    # hooks ------------------------------------------------------------------
    def has_frame(self, item: SplitEntry, frame_id: FrameId) -> bool:
        seq, frame, side = self._frame(item, frame_id)
        return frame >= 0 and self._image_path(seq, frame, side).is_file()

    def describe_item(self, item: SplitEntry) -> str:
        return f"split line '{item[0]} {item[1]} {item[2]}' ({self._image_path(*item)})"

    def frame_path(self, item: SplitEntry, frame_id: FrameId) -> Optional[Path]:
        seq, frame, side = self._frame(item, frame_id)
        return self._image_path(seq, frame, side) if frame >= 0 else None

    def get_color(self, item: SplitEntry, frame_id: FrameId) -> Image.Image:
        return load_image(self._image_path(*self._frame(item, frame_id)))

    def get_intrinsics(self, item: SplitEntry, image_size: tuple[int, int]) -> np.ndarray:
        return self.projection(item)[:, :3].copy()

    def is_left(self, item: SplitEntry) -> bool:
        return item[2] == "l"

    def get_baseline(self, item: SplitEntry) -> float:
        calib = self._calibration(item[0])
        left, right = self._cam("l"), self._cam("r")
        return stereo_baseline_from_projections(calib[f"P{left}"], calib[f"P{right}"])

    def get_pose(self, item: SplitEntry, frame_id: int) -> np.ndarray:
        seq, frame, _ = item
        poses = self._sequence_poses(seq)
        src = frame + int(frame_id)
        if max(frame, src) >= len(poses):
            raise DataError(
                f"{self.data_path / 'poses' / f'{seq}.txt'}: {len(poses)} poses, frame {max(frame, src)} requested"
            )
        T0 = np.linalg.inv(poses[src]) @ poses[frame]  # T_src_tgt of camera 0
        A = np.eye(4)  # T_cam_cam0: X_cam = X_cam0 + t
        A[:3, 3] = camera_offset(self.projection(item))
        return A @ T0 @ np.linalg.inv(A)
