"""Dataset for the folder format of ``docs/design.md`` (user video and the synthetic data).

::

    <root>/                      a sequence folder, or a folder of sequence folders
      <sequence>/
        images/000000.png ...    frames sorted by name (png or jpg, one format and one size per
                                 sequence); the main (left) camera
        images_right/...         optional stereo right camera, same names
        intrinsics.txt           pixel K of the stored images (3x3, or one line "fx fy cx cy")
        stereo.txt               optional baseline in metres (right camera at +x)
        camera_height.txt        optional height of the camera above the ground in metres (one number), for
                                 metric scale from the camera height (``--scaling camera-height``)
        depth/000000.npy         optional GT depth, float32 metres, 0 = invalid (same size as the image)
        poses.txt                optional KITTI 12-column T_world_cam, one line per frame
        regions/000000.png       optional uint8 region labels
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
from PIL import Image

from featdepth.data.base import FrameId, MonoDataset
from featdepth.data.io import (
    DataError,
    DataFileNotFoundError,
    PathLike,
    load_depth_npy,
    load_image,
    load_regions_png,
    read_baseline,
    read_intrinsics_file,
    read_kitti_poses,
)
from featdepth.data.transforms import RandomGenerator

__all__ = ["FolderDataset", "list_sequences", "split_sequences", "read_camera_height", "generator_meta",
           "IMAGE_EXTENSIONS"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")


def _is_sequence(path: Path) -> bool:
    return (path / "images").is_dir()


def list_sequences(root: PathLike) -> list[Path]:
    """Sequence folders under ``root``: ``[root]`` if it is a sequence, else its sorted sub-folders with ``images/``.

    Raises:
        DataFileNotFoundError: ``root`` does not exist.
        DataError: ``root`` holds no sequence.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataFileNotFoundError(f"dataset folder not found: {root}")
    if _is_sequence(root):
        return [root]
    seqs = sorted(p for p in root.iterdir() if p.is_dir() and _is_sequence(p))
    if not seqs:
        raise DataError(f"{root}: not a sequence folder (no images/) and contains no sequence folders")
    return seqs


def split_sequences(
    root: PathLike, val_fraction: float = 0.1, val_names: Optional[Sequence[str]] = None
) -> tuple[list[str], list[str]]:
    """Split the sequences under ``root`` into training and validation names.

    Args:
        root: a folder of sequence folders.
        val_fraction: fraction of sequences (sorted by name, taken from the end, at least one when
            there are two or more) used for validation; ignored when ``val_names`` is given.
        val_names: explicit validation sequence names.

    Returns:
        ``(train_names, val_names)``, both sorted.
    """
    names = [p.name for p in list_sequences(root)]
    if val_names is not None:
        unknown = sorted(set(val_names) - set(names))
        if unknown:
            raise DataError(f"{root}: unknown sequence names {unknown}; available: {names}")
        val = sorted(set(val_names))
    else:
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
        n_val = math.ceil(val_fraction * len(names)) if val_fraction > 0 else 0
        if len(names) < 2:
            n_val = 0
        n_val = min(n_val, len(names) - 1) if names else 0
        val = names[len(names) - n_val :] if n_val else []
    train = [n for n in names if n not in set(val)]
    return train, val


@dataclass
class _Sequence:
    name: str
    path: Path
    frames: list[str]
    K: np.ndarray
    baseline: Optional[float] = None
    poses: Optional[np.ndarray] = None
    right_names: set[str] = field(default_factory=set)
    size: Optional[tuple[int, int]] = None  # (H, W) of every stored frame
    camera_height: Optional[float] = None  # metres, from camera_height.txt (or the generator's meta.json)


def read_camera_height(sequence: PathLike) -> Optional[float]:
    """The camera's height above the ground (metres) of a folder-format sequence, or None if not recorded.

    Read from ``<sequence>/camera_height.txt`` (one positive number, metres; ``#`` starts a comment), else from
    the ``camera_height`` of a ``meta.json`` written by the synthetic generator (sequences generated before
    ``camera_height.txt`` existed).

    Raises:
        DataError: a ``camera_height.txt`` that is not exactly one positive finite number (the message names
            the file and the value).
    """
    seq = Path(sequence)
    path = seq / "camera_height.txt"
    if path.is_file():
        try:
            tokens = path.read_text().split("#", 1)[0].split()
        except (OSError, UnicodeDecodeError) as exc:
            raise DataError(f"cannot read camera height file {path}: {exc}") from exc
        if len(tokens) != 1:
            raise DataError(f"{path}: expected one number (the camera height above the ground in metres), "
                            f"got {len(tokens)} values")
        try:
            value = float(tokens[0])
        except ValueError:
            raise DataError(f"{path}: the camera height must be a number of metres, got {tokens[0]!r}") from None
        if not (math.isfinite(value) and value > 0):
            raise DataError(f"{path}: the camera height must be > 0 metres, got {tokens[0]}")
        return value
    data = generator_meta(seq)
    value = None if data is None else data.get("camera_height")
    if isinstance(value, (int, float)) and math.isfinite(value) and value > 0:
        return float(value)
    return None


def generator_meta(sequence: PathLike) -> Optional[dict]:
    """The ``meta.json`` of a sequence written by the synthetic generator (:mod:`featdepth.data.synthetic`), or
    None for any other sequence (no ``meta.json``, an unreadable one, or another ``generator``)."""
    meta = Path(sequence) / "meta.json"
    if not meta.is_file():
        return None
    try:
        data = json.loads(meta.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("generator") != "featdepth.data.synthetic":
        return None
    return data


def _list_images(folder: Path, allow_mixed_extensions: bool = False) -> list[str]:
    """Image names in ``folder``, sorted.

    Raises:
        DataError: two files for one frame (``000002.png`` and ``000002.jpg``), or png and jpg frames
            mixed in one folder unless ``allow_mixed_extensions``; the message names the folder and
            example files.
    """
    names = sorted(p.name for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    by_stem: dict[str, list[str]] = {}
    for name in names:
        by_stem.setdefault(Path(name).stem, []).append(name)
    duplicates = [group for group in by_stem.values() if len(group) > 1]
    if duplicates:
        examples = "; ".join(" and ".join(g) for g in duplicates[:3])
        raise DataError(
            f"{folder}: {len(duplicates)} frame(s) stored twice with different extensions ({examples}); "
            "keep one file per frame"
        )
    formats: dict[str, list[str]] = {}
    for name in names:
        fmt = "jpg" if Path(name).suffix.lower() in (".jpg", ".jpeg") else "png"
        formats.setdefault(fmt, []).append(name)
    if len(formats) > 1 and not allow_mixed_extensions:
        counts = ", ".join(f"{len(v)} {k} (e.g. {', '.join(v[:2])})" for k, v in sorted(formats.items()))
        raise DataError(
            f"{folder}: mixes image formats: {counts}; convert the frames to one format, or pass "
            "allow_mixed_extensions=True (config: data.allow_mixed_extensions=true)"
        )
    return names


def _image_size(path: Path) -> tuple[int, int]:
    """``(H, W)`` of an image from its header (no decoding)."""
    try:
        with Image.open(path) as img:
            w, h = img.size
    except (OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"cannot read image file {path}: {exc}") from exc
    return int(h), int(w)


def _check_frame_sizes(folder: Path, names: Sequence[str], what: str) -> tuple[int, int]:
    """The common ``(H, W)`` of the frames ``names`` in ``folder``; a frame of another size is an error."""
    sizes = [_image_size(folder / n) for n in names]
    values, counts = np.unique(np.asarray(sizes), axis=0, return_counts=True)
    ref = tuple(int(v) for v in values[int(np.argmax(counts))])
    for name, size in zip(names, sizes):
        if size != ref:
            n_other = sum(1 for sz in sizes if sz != ref)
            raise DataError(
                f"{folder / name} is {size[1]}x{size[0]} but the other frames of {what} are {ref[1]}x{ref[0]} "
                f"(WxH; {n_other} of {len(names)} frames differ); all frames of a sequence must have one size "
                "(intrinsics.txt describes one image size)"
            )
    return ref  # type: ignore[return-value]


def _npy_shape(path: Path) -> tuple[int, ...]:
    """Shape stored in a ``.npy`` header (without reading the data)."""
    try:
        with open(path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            if version == (1, 0):
                shape, _, _ = np.lib.format.read_array_header_1_0(fh)
            else:
                shape, _, _ = np.lib.format.read_array_header_2_0(fh)
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read depth file {path}: {exc}") from exc
    return tuple(int(v) for v in shape)


class FolderDataset(MonoDataset):
    """Sequences in the folder format, returning the sample structure of ``docs/design.md``.

    Args:
        root: one sequence folder or a folder of sequence folders.
        frame_ids, height, width, is_train, load_depth, load_poses, load_regions, stereo_baseline,
        flip_prob, color_jitter_prob, generator: see :class:`~featdepth.data.base.MonoDataset`.
            ``stereo_baseline=None`` reads each sequence's ``stereo.txt``.
        sequences: names of the sequences to use (default: all).
        frame_stride: temporal offset ``f`` loads frame ``i + f * frame_stride``.
        allow_mixed_extensions: accept sequences whose frames mix png and jpg (default: an error).

    Targets whose neighbours fall outside the sequence (or whose right image or, with
    ``load_depth``, depth file is missing) are skipped at index time and reported in
    ``index_report``; negative indices never wrap.

    Raises:
        DataError: a missing or malformed file (``intrinsics.txt``, ``stereo.txt``, ``poses.txt``),
            ``'s'`` requested for a sequence without ``images_right/``, ``poses.txt`` whose row count
            differs from the number of frames, an unknown sequence name, mixed image formats, frames
            of different sizes in one sequence, or a depth map whose size differs from its image.
    """

    def __init__(
        self,
        root: PathLike,
        frame_ids: Sequence[FrameId],
        height: int,
        width: int,
        is_train: bool = False,
        sequences: Optional[Sequence[str]] = None,
        load_depth: bool = False,
        load_poses: bool = False,
        load_regions: bool = False,
        stereo_baseline: Optional[float] = None,
        frame_stride: int = 1,
        flip_prob: float = 0.5,
        color_jitter_prob: float = 0.5,
        generator: RandomGenerator = None,
        allow_mixed_extensions: bool = False,
    ) -> None:
        super().__init__(
            frame_ids,
            height,
            width,
            is_train=is_train,
            load_depth=load_depth,
            load_poses=load_poses,
            load_regions=load_regions,
            stereo_baseline=stereo_baseline,
            flip_prob=flip_prob,
            color_jitter_prob=color_jitter_prob,
            generator=generator,
        )
        if isinstance(frame_stride, bool) or not isinstance(frame_stride, int) or frame_stride < 1:
            raise ValueError(f"frame_stride must be a positive integer, got {frame_stride!r}")
        self.root = Path(root)
        self.frame_stride = frame_stride
        self.allow_mixed_extensions = bool(allow_mixed_extensions)
        seq_paths = list_sequences(self.root)
        if sequences is not None:
            by_name = {p.name: p for p in seq_paths}
            unknown = [s for s in sequences if s not in by_name]
            if unknown:
                raise DataError(f"{self.root}: unknown sequence names {unknown}; available: {sorted(by_name)}")
            seq_paths = [by_name[s] for s in sequences]
        self.sequences = [self._load_sequence(p) for p in seq_paths]
        self.build_index((si, i) for si, seq in enumerate(self.sequences) for i in range(len(seq.frames)))

    def describe(self) -> str:
        return f"FolderDataset({self.root})"

    def _load_sequence(self, path: Path) -> _Sequence:
        frames = _list_images(path / "images", self.allow_mixed_extensions)
        if not frames:
            raise DataError(f"sequence {path.name!r} ({path}): no png/jpg frames in images/")
        seq = _Sequence(name=path.name, path=path, frames=frames, K=read_intrinsics_file(path / "intrinsics.txt"))
        seq.size = _check_frame_sizes(path / "images", frames, f"sequence {path.name!r}")
        seq.camera_height = read_camera_height(path)
        if "s" in self.frame_ids:
            right = path / "images_right"
            if not right.is_dir():
                raise DataError(f"sequence {path.name!r}: stereo frame 's' requested but {right} does not exist")
            right_names = _list_images(right, self.allow_mixed_extensions)
            if right_names:
                right_size = _check_frame_sizes(right, right_names, f"sequence {path.name!r} (right camera)")
                if right_size != seq.size:
                    raise DataError(
                        f"{right}: right frames are {right_size[1]}x{right_size[0]} but the left frames in "
                        f"{path / 'images'} are {seq.size[1]}x{seq.size[0]} (WxH)"
                    )
            seq.right_names = set(right_names)
            if self.stereo_baseline is None:
                stereo_file = path / "stereo.txt"
                if not stereo_file.is_file():
                    raise DataError(
                        f"sequence {path.name!r}: stereo frame 's' requested but {stereo_file} does not exist "
                        "(or pass stereo_baseline=)"
                    )
                seq.baseline = read_baseline(stereo_file)
        if self.load_poses:
            poses = read_kitti_poses(path / "poses.txt")
            if len(poses) != len(frames):
                raise DataError(
                    f"{path / 'poses.txt'}: {len(poses)} poses but {len(frames)} frames in {path / 'images'}"
                )
            seq.poses = poses
        if self.load_depth and not (path / "depth").is_dir():
            raise DataError(f"sequence {path.name!r}: load_depth=True but {path / 'depth'} does not exist")
        if self.load_depth:
            for name in frames:
                depth_file = path / "depth" / f"{Path(name).stem}.npy"
                if not depth_file.is_file():
                    continue  # the target is skipped (reason "missing depth file")
                shape = _npy_shape(depth_file)
                hw = shape[1:] if len(shape) == 3 and shape[0] == 1 else shape[:-1] if len(shape) == 3 and shape[-1] == 1 else shape
                if hw != seq.size:
                    raise DataError(
                        f"depth file {depth_file} has shape {shape} but its image {path / 'images' / name} is "
                        f"{seq.size[1]}x{seq.size[0]} (WxH, depth must be ({seq.size[0]}, {seq.size[1]}))"
                    )
        if self.load_regions and not (path / "regions").is_dir():
            raise DataError(f"sequence {path.name!r}: load_regions=True but {path / 'regions'} does not exist")
        return seq

    # hooks ------------------------------------------------------------------
    def _neighbour(self, item: tuple[int, int], frame_id: int) -> int:
        return item[1] + frame_id * self.frame_stride

    def describe_item(self, item: tuple[int, int]) -> str:
        seq = self.sequences[item[0]]
        return f"{seq.name}/images/{seq.frames[item[1]]}"

    def frame_path(self, item: tuple[int, int], frame_id: FrameId) -> Optional[Path]:
        seq = self.sequences[item[0]]
        if frame_id == "s":
            return seq.path / "images_right" / seq.frames[item[1]]
        j = self._neighbour(item, frame_id)
        return seq.path / "images" / seq.frames[j] if 0 <= j < len(seq.frames) else None

    def depth_path(self, item: tuple[int, int]) -> Path:
        return self.sequences[item[0]].path / "depth" / f"{self._stem(item)}.npy"

    def skip_reason(self, item: tuple[int, int]) -> Optional[str]:
        reason = super().skip_reason(item)
        if reason is None and self.load_depth and not self.depth_path(item).is_file():
            return "missing depth file"
        return reason

    def has_frame(self, item: tuple[int, int], frame_id: FrameId) -> bool:
        seq = self.sequences[item[0]]
        if frame_id == "s":
            return seq.frames[item[1]] in seq.right_names
        return 0 <= self._neighbour(item, frame_id) < len(seq.frames)

    def get_color(self, item: tuple[int, int], frame_id: FrameId) -> Image.Image:
        seq = self.sequences[item[0]]
        if frame_id == "s":
            return load_image(seq.path / "images_right" / seq.frames[item[1]])
        return load_image(seq.path / "images" / seq.frames[self._neighbour(item, frame_id)])

    def get_intrinsics(self, item: tuple[int, int], image_size: tuple[int, int]) -> np.ndarray:
        return self.sequences[item[0]].K

    def is_left(self, item: Any) -> bool:
        return True

    def sequence_name(self, item: tuple[int, int]) -> str:
        """Name of the sequence folder of an item."""
        return self.sequences[item[0]].name

    def camera_height(self, item: tuple[int, int]) -> Optional[float]:
        """The camera's height above the ground (metres) of an item's sequence (``camera_height.txt``), or None."""
        return self.sequences[item[0]].camera_height

    def get_baseline(self, item: tuple[int, int]) -> float:
        baseline = self.sequences[item[0]].baseline
        assert baseline is not None
        return baseline

    def _stem(self, item: tuple[int, int]) -> str:
        return Path(self.sequences[item[0]].frames[item[1]]).stem

    def get_depth(self, item: tuple[int, int]) -> np.ndarray:
        return load_depth_npy(self.depth_path(item))

    def get_pose(self, item: tuple[int, int], frame_id: int) -> np.ndarray:
        poses = self.sequences[item[0]].poses
        assert poses is not None
        T_world_tgt = poses[item[1]]
        T_world_src = poses[self._neighbour(item, frame_id)]
        return np.linalg.inv(T_world_src) @ T_world_tgt

    def get_regions(self, item: tuple[int, int]) -> np.ndarray:
        seq = self.sequences[item[0]]
        return load_regions_png(seq.path / "regions" / f"{self._stem(item)}.png")
