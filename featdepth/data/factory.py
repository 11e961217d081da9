"""Build the training and validation datasets named by a :class:`~featdepth.config.Config`."""

from __future__ import annotations

import dataclasses
import difflib
import random
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from featdepth.config import Config, ConfigError
from featdepth.data import synthetic
from featdepth.data import FolderDataset, KittiOdometryDataset, KittiRawDataset
from featdepth.data.folder import generator_meta
from featdepth.data.splits import read_split_file


def synthetic_sequence_names(cfg: Config) -> tuple[list[str], list[str]]:
    n_train, n_val = cfg.data.synth_sequences, cfg.data.synth_val_sequences
    names = [f"seq_{i:03d}" for i in range(n_train + n_val)]
    return names[:n_train], names[n_train:]


def ensure_synthetic_data(cfg: Config, progress: bool = False) -> Path:
    """Generate the synthetic sequences under ``data.path`` unless they are already there.

    The right camera is rendered only when the config uses stereo pairs (``"s"`` in ``data.frame_ids``);
    a folder rendered without it is rendered again (with it) when a stereo config asks for it.
    """

    root = Path(cfg.data.path)
    train, val = synthetic_sequence_names(cfg)
    wanted = train + val
    need_stereo = cfg.use_stereo

    def ready(name: str) -> bool:
        # meta.json is written last: a generation killed half-way is redone.
        if not (root / name / "meta.json").is_file():
            return False
        return not need_stereo or (root / name / "stereo.txt").is_file()

    options = synth_options(cfg)
    if all(ready(name) for name in wanted):
        _check_existing_options(root, wanted, options)
        return root
    synthetic.generate_dataset(
        root,
        num_sequences=len(wanted),
        seed=cfg.data.synth_seed,
        num_frames=cfg.data.synth_frames,
        height=cfg.data.height,
        width=cfg.data.width,
        stereo=need_stereo,
        progress=progress,
        **options,
    )
    return root


# SynthConfig fields that other data.* keys set (or that must stay per sequence)
_SYNTH_FIXED = {"seed": "data.synth_seed", "num_frames": "data.synth_frames", "height": "data.height",
                "width": "data.width", "stereo": "data.frame_ids (with 's')"}


def synth_options(cfg: Config) -> dict[str, Any]:
    """``data.synth_options`` checked against the generator's options; a bad key or value raises a
    ConfigError naming ``data.synth_options.<key>``."""
    options = dict(cfg.data.synth_options or {})
    known = {f.name for f in dataclasses.fields(synthetic.SynthConfig)}
    for key in options:
        if key in _SYNTH_FIXED:
            raise ConfigError(f"data.synth_options.{key}: set it with {_SYNTH_FIXED[key]} instead")
        if key not in known:
            close = difflib.get_close_matches(str(key), sorted(known - set(_SYNTH_FIXED)), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ConfigError(f"data.synth_options: unknown generator option '{key}'{hint}")
    try:
        synthetic.SynthConfig(seed=0, **options)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"data.synth_options: {exc}") from None
    return options


def _check_existing_options(root: Path, names: list[str], options: dict[str, Any]) -> None:
    """Sequences already under ``root`` must have been generated with the requested options (the first
    sequence is checked: a folder is generated in one go). Only the options asked for are compared, so a
    folder made by ``featdepth data synth`` with other options stays usable without ``data.synth_options``."""
    meta = generator_meta(root / names[0]) if names else None
    if meta is None or not options:
        return
    used, defaults = meta.get("config", {}), dataclasses.asdict(synthetic.SynthConfig())
    for key in sorted(options):
        want, have = options[key], used.get(key, defaults.get(key))
        if isinstance(want, (list, tuple)) or isinstance(have, (list, tuple)):
            same = have is not None and list(map(float, want)) == list(map(float, have))
        else:
            same = want == have
        if not same:
            raise ConfigError(
                f"{root / names[0]} was generated with {key}={have!r}, but data.synth_options asks for {want!r}; "
                f"choose another data.path or delete that folder")


def _folder_sequences(cfg: Config) -> tuple[list[str] | None, list[str] | None]:
    d = cfg.data
    if d.dataset == "synthetic":
        train, val = synthetic_sequence_names(cfg)
        return d.train_sequences or train, d.val_sequences or val
    root = Path(d.path)
    if not root.is_dir():
        raise ConfigError(f"data.path does not exist: {root}")
    all_seqs = sorted(p.name for p in root.iterdir() if (p / "images").is_dir())
    if (root / "images").is_dir():  # a single sequence folder
        return None, None
    val = d.val_sequences or []
    unknown = [s for s in list(val) + list(d.train_sequences or []) if s not in all_seqs]
    if unknown:
        raise ConfigError(f"data.train_sequences/val_sequences name sequences not found under {root}: {unknown}")
    train = d.train_sequences or [s for s in all_seqs if s not in val]
    return train, (val or None)


def build_datasets(cfg: Config, stage: str | None = None, *, height: int | None = None, width: int | None = None) -> tuple[Dataset, Dataset | None]:
    """Training dataset (augmented, ``frame_ids`` of the stage) and validation dataset (frame 0, GT depth).

    Returns ``(train, val)``; ``val`` is ``None`` where there is nothing to validate on.
    """

    d = cfg.data
    stage = stage or cfg.train.stage
    h, w = height or d.height, width or d.width
    frame_ids: list[Any] = [0] if stage == "featurenet" else list(d.frame_ids)
    if d.synth_options and d.dataset != "synthetic":
        raise ConfigError(
            f"data.synth_options ({', '.join(sorted(map(str, d.synth_options)))}) only applies to data.dataset=synthetic, "
            f"but data.dataset is {d.dataset!r}; remove data.synth_options")
    if d.dataset == "synthetic":
        ensure_synthetic_data(cfg)
    if d.dataset in ("synthetic", "folder"):
        train_seqs, val_seqs = _folder_sequences(cfg)
        train = FolderDataset(
            d.path, frame_ids, h, w, is_train=True, sequences=train_seqs, stereo_baseline=d.stereo_baseline,
            allow_mixed_extensions=d.allow_mixed_extensions,
        )
        val = None
        if val_seqs:
            has_depth = all((Path(d.path) / s / "depth").is_dir() for s in val_seqs)
            val = FolderDataset(
                d.path, [0], h, w, is_train=False, sequences=val_seqs, load_depth=has_depth,
                allow_mixed_extensions=d.allow_mixed_extensions,
            )
        return train, val
    if d.dataset in ("kitti_raw", "kitti_odom"):
        if not d.split_dir or not d.split:
            raise ConfigError(f"data.dataset={d.dataset} needs data.split_dir and data.split (split files are not shipped)")
        split_root = Path(d.split_dir) / d.split
        train_file = split_root / "train_files.txt"
        val_file = split_root / "val_files.txt"
        if not train_file.is_file():
            raise ConfigError(f"split file not found: {train_file}")
        cls = KittiRawDataset if d.dataset == "kitti_raw" else KittiOdometryDataset
        kwargs: dict[str, Any] = {}
        if d.dataset == "kitti_raw":
            kwargs = {"use_calibration_K": d.use_calibration_K, "stereo_baseline": d.stereo_baseline}
            if d.img_ext:
                kwargs["img_ext"] = d.img_ext
        else:
            kwargs = {"stereo_baseline": d.stereo_baseline} if d.stereo_baseline is not None else {}
        train = cls(d.path, read_split_file(train_file), frame_ids, h, w, is_train=True, **kwargs)
        val = None
        if val_file.is_file():
            val_kwargs = dict(kwargs)
            val_entries = read_split_file(val_file)
            if d.dataset == "kitti_raw" and val_entries:
                # Projected depth (proj_depth/velodyne) is not part of the official KITTI raw release:
                # validate with depth metrics only where it exists (export-gt writes gt_depths.npz instead).
                date_drive = val_entries[0][0]
                val_kwargs["load_depth"] = (Path(d.path) / date_drive / "proj_depth" / "velodyne").is_dir()
            val = cls(d.path, val_entries, [0], h, w, is_train=False, **val_kwargs)
        return train, val
    raise ConfigError(f"unknown data.dataset {d.dataset!r}")


class SeededItems(Dataset):
    """Makes augmentation a pure function of (seed, epoch, index).

    Each item is loaded with the global Python/NumPy/torch generators seeded from (seed, epoch, index),
    and the caller's generator states are restored afterwards. A run resumed in the middle of an epoch
    therefore sees exactly the samples an uninterrupted run would, whatever the number of workers.
    """

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset = dataset
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getattr__(self, name: str) -> Any:
        if name == "dataset":
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def __getitem__(self, key: int | tuple[int, int]) -> Any:
        """``key`` is an index, or ``(epoch, index)`` as yielded by :class:`EpochSampler`."""
        epoch, index = key if isinstance(key, tuple) else (self.epoch, key)
        item_seed = (self.seed * 1_000_003 + int(epoch) * 10_007 + int(index)) % (2**31 - 1)
        py_state, np_state = random.getstate(), np.random.get_state()
        with torch.random.fork_rng(devices=[]):
            random.seed(item_seed)
            np.random.seed(item_seed)
            torch.manual_seed(item_seed)
            try:
                return self.dataset[index]
            finally:
                random.setstate(py_state)
                np.random.set_state(np_state)


class EpochSampler(torch.utils.data.Sampler):
    """Deterministic per-epoch shuffling, sharded over ranks, resumable mid-epoch.

    Yields ``(epoch, index)`` pairs for :class:`SeededItems`. The permutation of an epoch depends only on
    ``(seed, epoch)``; every rank gets the same number of full batches (the global batch is
    ``batch_size × world_size``; a remainder smaller than one global batch is dropped, and a dataset
    smaller than one global batch is repeated to fill it).
    """

    def __init__(self, size: int, batch_size: int, seed: int, *, shuffle: bool = True, rank: int = 0, world_size: int = 1) -> None:
        if size <= 0:
            raise ValueError("cannot sample from an empty dataset")
        self.size, self.batch_size, self.seed = size, batch_size, seed
        self.shuffle, self.rank, self.world_size = shuffle, rank, world_size
        self.epoch, self.start_batch = 0, 0

    @property
    def batches_per_epoch(self) -> int:
        global_batch = self.batch_size * self.world_size
        return max(1, self.size // global_batch)

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch, self.start_batch = epoch, start_batch

    def _order(self) -> list[int]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 7919 + self.epoch)
            order = torch.randperm(self.size, generator=g).tolist()
        else:
            order = list(range(self.size))
        needed = self.batches_per_epoch * self.batch_size * self.world_size
        while len(order) < needed:
            order = order + order
        return order[:needed]

    def __iter__(self):
        mine = self._order()[self.rank :: self.world_size]
        for idx in mine[self.start_batch * self.batch_size :]:
            yield (self.epoch, idx)

    def __len__(self) -> int:
        return (self.batches_per_epoch - self.start_batch) * self.batch_size


def build_eval_dataset(
    cfg: Config,
    dataset: str,
    data_path: str | Path,
    *,
    split_file: str | Path | None = None,
    sequences: Sequence[str] | None = None,
    frame_ids: Sequence[Any] = (0,),
    load_depth: bool = False,
    is_train: bool = False,
):
    """A test dataset at the model's training size with the model's data settings.

    Args:
        cfg: the model's config (size, K convention, stereo baseline, image extension).
        dataset: ``"kitti_raw"`` (needs ``split_file``) or ``"folder"`` (``sequences`` optional).
        frame_ids: ``(0,)`` for prediction; the model's ``frame_ids`` for online refinement.
    """

    h, w = cfg.data.height, cfg.data.width
    if dataset == "kitti_raw":
        if split_file is None:
            raise ValueError("--dataset kitti_raw needs --split-file (e.g. <splits>/eigen/test_files.txt)")
        entries = read_split_file(split_file)
        kwargs: dict[str, Any] = {"use_calibration_K": cfg.data.use_calibration_K, "stereo_baseline": cfg.data.stereo_baseline}
        if cfg.data.img_ext:
            kwargs["img_ext"] = cfg.data.img_ext
        return KittiRawDataset(data_path, entries, list(frame_ids), h, w, is_train=is_train, load_depth=load_depth, **kwargs)
    if dataset == "folder":
        return FolderDataset(data_path, list(frame_ids), h, w, is_train=is_train, sequences=list(sequences) if sequences else None,
                             load_depth=load_depth, stereo_baseline=cfg.data.stereo_baseline)
    raise ValueError(f"dataset must be 'kitti_raw' or 'folder', got {dataset!r}")
