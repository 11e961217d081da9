"""Base class of every dataset: builds the sample structure of ``docs/design.md``.

A concrete dataset supplies a list of candidate *items* (opaque keys, one per target frame) and a
handful of hooks (:meth:`MonoDataset.has_frame`, :meth:`MonoDataset.get_color`,
:meth:`MonoDataset.get_intrinsics`, ...). The base class

- drops, **at index time**, every candidate whose requested neighbours do not exist (the official
  code silently reused the target frame instead); the dropped items are kept in ``skipped`` and
  counted by ``num_skipped``;
- loads all frames, resizes them to ``(height, width)`` with Lanczos, and scales ``K`` to that size;
- in training draws one horizontal flip (p = 0.5) applied to **all** frames, depth, regions,
  intrinsics, GT poses and the stereo transform, and one set of colour-jitter parameters applied to
  every ``color_aug`` frame (``color`` stays un-augmented);
- builds ``stereo_T`` for ``'s'``: identity with ``t_x = side_sign * flip_sign * baseline``,
  ``side_sign = -1`` for a left target, ``flip_sign = -1`` when flipped; the baseline is the
  dataset's calibrated one (``stereo_baseline=None``) or a configured value (FeatDepth: 0.015).

Flip and intrinsics: with integer pixel centres a flip maps ``u -> W - 1 - u``; the flipped image
is the image of the x-mirrored scene taken with ``cx' = W - 1 - cx`` (exact for any ``cx``; the
official code keeps ``K``, exact only for ``cx = (W - 1) / 2``). In the mirrored scene the right
camera lies at ``-x``, hence the stereo sign flip, and GT poses become ``M T M`` with
``M = diag(-1, 1, 1, 1)``.
"""

from __future__ import annotations

import abc
import logging
from pathlib import Path
from typing import Any, Hashable, Iterable, Optional, Sequence, Union

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from featdepth.data.io import DataError
from featdepth.data.transforms import (
    ColorJitterParams,
    RandomGenerator,
    hflip_array,
    hflip_image,
    hflip_intrinsics,
    hflip_pose,
    image_to_tensor,
    invert_intrinsics,
    random_uniform,
    resize_image,
    scale_intrinsics,
)

__all__ = ["FrameId", "MonoDataset", "validate_frame_ids", "check_image_size", "SKIP_REASONS"]

FrameId = Union[int, str]

logger = logging.getLogger("featdepth.data")

#: Reasons a candidate target is dropped at index time (keys of ``index_report["skipped_by_reason"]``).
SKIP_REASONS = (
    "missing target frame",  # the target image itself does not exist (e.g. a split line naming a missing file)
    "missing neighbour frame",  # a temporal neighbour is outside the sequence or its file is missing
    "missing stereo frame",  # the other camera's image does not exist
    "missing depth file",  # load_depth=True but the target's ground-truth depth file does not exist
)


def validate_frame_ids(frame_ids: Sequence[FrameId]) -> list[FrameId]:
    """Check ``frame_ids``: target ``0`` first, then distinct integer offsets and at most one ``'s'``."""
    ids = list(frame_ids)
    if not ids or ids[0] != 0 or isinstance(ids[0], bool):
        raise ValueError(f"frame_ids must start with the target 0, got {ids}")
    for f in ids:
        if isinstance(f, bool) or not (isinstance(f, (int, np.integer)) or f == "s"):
            raise ValueError(f"frame_ids entries must be integers or 's', got {f!r} in {ids}")
    if len(set(ids)) != len(ids):
        raise ValueError(f"frame_ids must be distinct, got {ids}")
    return [int(f) if not isinstance(f, str) else f for f in ids]


def check_image_size(height: int, width: int) -> tuple[int, int]:
    """Check that the training size is positive and a multiple of 32 (the encoder's total stride)."""
    for name, value in (("height", height), ("width", width)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if value % 32 != 0:
            raise ValueError(f"{name}={value} is not a multiple of 32 (required by the depth network)")
    return int(height), int(width)


class MonoDataset(Dataset, abc.ABC):
    """Abstract dataset returning the sample structure of ``docs/design.md``.

    Args:
        frame_ids: target first: ``[0, -1, 1]`` (M), ``[0, 's']`` (S), ``[0, -1, 1, 's']`` (MS).
        height, width: training size in pixels, multiples of 32.
        is_train: enables the random flip and colour jitter; ``False`` gives ``color_aug == color``.
        load_depth: add ``depth_gt`` ``(1, Hg, Wg)`` float32 metres (0 = invalid) at the stored size.
        load_poses: add ``pose_gt`` ``{f: (4, 4)}``, ``T_src_tgt`` for every temporal source ``f != 0``.
        load_regions: add ``regions`` ``(1, Hg, Wg)`` int64 labels.
        stereo_baseline: ``None`` = the dataset's real baseline in metres; a number = that baseline
            (FeatDepth's convention: 0.015, whence the x36 evaluation factor).
        flip_prob: probability of the horizontal flip in training (0.5).
        color_jitter_prob: probability of the colour jitter in training (0.5).
        generator: ``torch.Generator`` / ``numpy.random.Generator`` for the random draws. Leave ``None``
            (torch's global RNG, seeded per DataLoader worker) when using DataLoader workers.

    Attributes:
        items: the kept candidate items, one per sample.
        skipped: candidates dropped because a requested frame (or file) does not exist.
        num_skipped: ``len(skipped)``.
        index_report: what :meth:`build_index` did, for the trainer / CLI to print::

            {"dataset": "FolderDataset(/data)", "candidates": 120, "indexed": 116, "skipped": 4,
             "skipped_by_reason": {"missing neighbour frame": 4},   # keys from SKIP_REASONS
             "examples": {"missing neighbour frame": ["seq_000 frame 0", ...]}}  # up to 3 per reason

        :meth:`index_summary` gives it as one line (also logged at INFO on ``featdepth.data``).
    """

    def __init__(
        self,
        frame_ids: Sequence[FrameId],
        height: int,
        width: int,
        is_train: bool = False,
        load_depth: bool = False,
        load_poses: bool = False,
        load_regions: bool = False,
        stereo_baseline: Optional[float] = None,
        flip_prob: float = 0.5,
        color_jitter_prob: float = 0.5,
        generator: RandomGenerator = None,
    ) -> None:
        super().__init__()
        self.frame_ids = validate_frame_ids(frame_ids)
        self.height, self.width = check_image_size(height, width)
        self.is_train = bool(is_train)
        self.load_depth = bool(load_depth)
        self.load_poses = bool(load_poses)
        self.load_regions = bool(load_regions)
        if stereo_baseline is not None and not (np.isfinite(stereo_baseline) and stereo_baseline > 0):
            raise ValueError(f"stereo_baseline must be a positive number of metres or None, got {stereo_baseline!r}")
        self.stereo_baseline = None if stereo_baseline is None else float(stereo_baseline)
        for name, p in (("flip_prob", flip_prob), ("color_jitter_prob", color_jitter_prob)):
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {p}")
        self.flip_prob = float(flip_prob)
        self.color_jitter_prob = float(color_jitter_prob)
        self.generator = generator
        self.items: list[Hashable] = []
        self.skipped: list[Hashable] = []
        self.skip_reasons: list[str] = []
        self.index_report: dict[str, Any] = {}

    # ------------------------------------------------------------------ hooks
    @abc.abstractmethod
    def has_frame(self, item: Any, frame_id: FrameId) -> bool:
        """Whether frame ``frame_id`` (temporal offset or ``'s'``) of ``item`` exists (cheap check)."""

    @abc.abstractmethod
    def get_color(self, item: Any, frame_id: FrameId) -> Image.Image:
        """Load frame ``frame_id`` of ``item`` as an RGB PIL image at its stored size."""

    @abc.abstractmethod
    def get_intrinsics(self, item: Any, image_size: tuple[int, int]) -> np.ndarray:
        """``(3, 3)`` pixel ``K`` of the target image of ``item``, whose stored size is ``image_size = (H0, W0)``."""

    @abc.abstractmethod
    def is_left(self, item: Any) -> bool:
        """Whether the target of ``item`` is the left (main) camera."""

    def get_baseline(self, item: Any) -> float:
        """Real stereo baseline in metres for ``item`` (needed for ``'s'`` with ``stereo_baseline=None``)."""
        raise NotImplementedError(f"{type(self).__name__} has no calibrated stereo baseline; pass stereo_baseline=")

    def get_depth(self, item: Any) -> np.ndarray:
        """``(Hg, Wg)`` float32 GT depth in metres (0 = invalid) of the target of ``item``."""
        raise NotImplementedError(f"{type(self).__name__} has no ground-truth depth")

    def get_pose(self, item: Any, frame_id: int) -> np.ndarray:
        """``(4, 4)`` GT ``T_src_tgt`` from the target of ``item`` to its temporal neighbour ``frame_id``."""
        raise NotImplementedError(f"{type(self).__name__} has no ground-truth poses")

    def get_regions(self, item: Any) -> np.ndarray:
        """``(Hg, Wg)`` integer region labels of the target of ``item``."""
        raise NotImplementedError(f"{type(self).__name__} has no region labels")

    def describe(self) -> str:
        """Short description used in error messages (override to name the data root)."""
        return type(self).__name__

    def frame_path(self, item: Any, frame_id: FrameId) -> Optional[Path]:
        """Path of the image of frame ``frame_id`` of ``item`` (for messages); ``None`` if unknown."""
        return None

    def describe_item(self, item: Any) -> str:
        """Human-readable name of a candidate item (for the index report and error messages)."""
        return str(item)

    def skip_reason(self, item: Any) -> Optional[str]:
        """Why ``item`` cannot be used (one of :data:`SKIP_REASONS`), or ``None`` when it can.

        Subclasses may extend it (call ``super()`` first) to check further files.
        """
        if not self.has_frame(item, 0):
            return "missing target frame"
        for f in self.frame_ids[1:]:
            if not self.has_frame(item, f):
                return "missing stereo frame" if f == "s" else "missing neighbour frame"
        return None

    # ------------------------------------------------------------------ index
    def build_index(self, candidates: Iterable[Hashable]) -> None:
        """Keep the candidates that :meth:`skip_reason` accepts; record the others in ``skipped``.

        Fills :attr:`index_report` and logs :meth:`index_summary` (INFO; WARNING when split entries
        name target frames that do not exist).

        Raises:
            DataError: no candidate survives (the message gives the counts per reason and examples).
        """
        self.items, self.skipped, self.skip_reasons = [], [], []
        counts: dict[str, int] = {}
        examples: dict[str, list[str]] = {}
        n_candidates = 0
        for item in candidates:
            n_candidates += 1
            reason = self.skip_reason(item)
            if reason is None:
                self.items.append(item)
                continue
            self.skipped.append(item)
            self.skip_reasons.append(reason)
            counts[reason] = counts.get(reason, 0) + 1
            if len(examples.setdefault(reason, [])) < 3:
                example = self.describe_item(item)
                depth_path = getattr(self, "depth_path", None)
                if reason == "missing depth file" and callable(depth_path):
                    example += f": no {depth_path(item)}"
                examples[reason].append(example)
        self.index_report = {
            "dataset": self.describe(),
            "candidates": n_candidates,
            "indexed": len(self.items),
            "skipped": len(self.skipped),
            "skipped_by_reason": counts,
            "examples": examples,
        }
        if not self.items:
            raise DataError(
                f"{self.describe()}: no usable samples for frame_ids={self.frame_ids} "
                f"({n_candidates} candidates, all skipped: {self._reasons_text()})"
            )
        level = logging.WARNING if counts.get("missing target frame") else logging.INFO
        logger.log(level, "%s", self.index_summary())

    def _reasons_text(self, with_examples: bool = True) -> str:
        report = self.index_report
        parts = []
        for reason, count in report.get("skipped_by_reason", {}).items():
            text = f"{count} {reason}"
            ex = report.get("examples", {}).get(reason)
            if with_examples and ex:
                text += f", e.g. {'; '.join(ex)}"
            parts.append(text)
        return "; ".join(parts) if parts else "none"

    def index_summary(self) -> str:
        """One line: how many samples were indexed and how many skipped, per reason, with examples."""
        report = self.index_report
        if not report:
            return f"{self.describe()}: not indexed yet"
        line = f"{report['dataset']}: {report['indexed']} samples indexed, {report['skipped']} skipped"
        if report["skipped"]:
            line += f" ({self._reasons_text()})"
        return line

    @property
    def num_skipped(self) -> int:
        """Number of candidate targets dropped at index time because a requested frame is missing."""
        return len(self.skipped)

    def __len__(self) -> int:
        return len(self.items)

    # ------------------------------------------------------------------ sample
    def __getitem__(self, index: int) -> dict[str, Any]:
        if not -len(self.items) <= index < len(self.items):
            raise IndexError(f"index {index} out of range for {self.describe()} with {len(self.items)} samples")
        index = int(index) % len(self.items)
        item = self.items[index]
        size = (self.height, self.width)

        do_flip = self.is_train and self.flip_prob > 0 and random_uniform(self.generator) < self.flip_prob
        if self.is_train and self.color_jitter_prob > 0:
            jitter = ColorJitterParams.sample(self.generator, p=self.color_jitter_prob)
        else:
            jitter = ColorJitterParams.identity()

        color: dict[FrameId, torch.Tensor] = {}
        color_aug: dict[FrameId, torch.Tensor] = {}
        stored_size: Optional[tuple[int, int]] = None
        for f in self.frame_ids:
            img = self.get_color(item, f)
            if f == 0:
                stored_size = (img.height, img.width)
            elif stored_size is not None and (img.height, img.width) != stored_size:
                path = self.frame_path(item, f)
                raise DataError(
                    f"{self.describe()}: frame {path or f'{f!r} of {self.describe_item(item)}'} is "
                    f"{img.width}x{img.height} but its target frame {self.frame_path(item, 0) or ''} is "
                    f"{stored_size[1]}x{stored_size[0]} (WxH); all frames of a sample must have one size"
                )
            img = resize_image(img, size)
            if do_flip:
                img = hflip_image(img)
            color[f] = image_to_tensor(img)
            color_aug[f] = image_to_tensor(jitter.apply(img)) if jitter.applied else color[f].clone()
        assert stored_size is not None

        K = np.asarray(self.get_intrinsics(item, stored_size), dtype=np.float64)
        if K.shape != (3, 3):
            raise DataError(f"{self.describe()}: intrinsics must be (3, 3), got {K.shape}")
        K = scale_intrinsics(K, stored_size, size)
        if do_flip:
            K = hflip_intrinsics(K, self.width)

        sample: dict[str, Any] = {
            "color": color,
            "color_aug": color_aug,
            "K": torch.from_numpy(K.astype(np.float32)),
            "inv_K": torch.from_numpy(invert_intrinsics(K).astype(np.float32)),
        }

        if "s" in self.frame_ids:
            baseline = self.stereo_baseline if self.stereo_baseline is not None else float(self.get_baseline(item))
            side_sign = -1.0 if self.is_left(item) else 1.0
            flip_sign = -1.0 if do_flip else 1.0
            stereo_T = torch.eye(4, dtype=torch.float32)
            stereo_T[0, 3] = side_sign * flip_sign * baseline
            sample["stereo_T"] = stereo_T

        if self.load_depth:
            depth = np.asarray(self.get_depth(item), dtype=np.float32)
            expected = getattr(self, "depth_gt_size", None) or stored_size
            if depth.shape != tuple(expected):
                where = getattr(self, "depth_path", None)
                name = where(item) if callable(where) else self.describe_item(item)
                raise DataError(
                    f"{self.describe()}: ground-truth depth {name} is {depth.shape[-1]}x{depth.shape[0]} but its "
                    f"image is {expected[1]}x{expected[0]} (WxH)"
                )
            if do_flip:
                depth = hflip_array(depth)
            sample["depth_gt"] = torch.from_numpy(np.ascontiguousarray(depth)).unsqueeze(0)

        if self.load_poses:
            poses = {}
            for f in self.frame_ids:
                if f == "s" or f == 0:
                    continue
                T = np.asarray(self.get_pose(item, f), dtype=np.float64)
                if do_flip:
                    T = hflip_pose(T)
                poses[f] = torch.from_numpy(T.astype(np.float32))
            sample["pose_gt"] = poses

        if self.load_regions:
            regions = np.asarray(self.get_regions(item)).astype(np.int64)
            if do_flip:
                regions = hflip_array(regions)
            sample["regions"] = torch.from_numpy(np.ascontiguousarray(regions)).unsqueeze(0)

        sample["flipped"] = torch.tensor(do_flip)
        sample["index"] = index
        return sample
