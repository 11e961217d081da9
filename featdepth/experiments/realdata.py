"""Baseline vs FeatDepth on the tiny real KITTI clips beside the checkout (``../shared/data``).

Sources (read in place, never copied; only small split files, symlinks and an ``intrinsics.txt`` are
written, into the experiment's own folder):

- ``raw``: ``kitti_raw_tiny`` (drive 2011_09_26_0023, frames 0-6) with the KITTI raw loader
  (:class:`~featdepth.data.KittiRawDataset`): a split folder ``<work>/splits/kitti_tiny/train_files.txt``
  with the lines ``2011_09_26/2011_09_26_drive_0023_sync <i> l`` for frames 1-5 (targets; 0 and 6 are
  only sources), ``data.dataset=kitti_raw``.
- ``odom``: ``kitti_odom_06_tiny`` (odometry sequence 06, frames 0-50, greyscale; the loader replicates
  grey to three channels) as a folder-format sequence ``<work>/odom06/odom06`` with ``images/``
  symlinked to ``image_l/*.png``, ``intrinsics.txt`` from ``calib.txt``'s P0 and ``poses.txt``.

Depth is always evaluated on the 7 frames of ``kitti_raw_tiny`` against the projected lidar
(``proj_depth/velodyne/image_02/*.npz``, key ``velodyne_depth``) with the Eigen protocol (Garg crop,
``1e-3 < gt < 80``, per-image median scaling, predictions clamped to ``[1e-3, 80]``, means over images);
models trained on the greyscale odometry clip see greyscale versions of the raw frames. Frames 1-5
of ``raw`` are training targets: this measures whether the pipeline learns real geometry at a given
budget, not generalisation. Where a model has a PoseNet, the 5-frame ATE on the odometry clip is
reported too.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from featdepth.config import load_config
from featdepth.data import KittiRawDataset
from featdepth.evaluation.loop import CameraHeightInfo, evaluate_depth_batches, evaluate_pose, load_folder_sequence
from featdepth.experiments.presets import FEATURENET_SETTINGS, VARIANTS, ExperimentPreset, featurenet_seed_for
from featdepth.experiments.runs import common_overrides, featurenet_curve, log, train_featurenet, train_variant
from featdepth.inference.loading import load
from featdepth.inference.model import Model
from featdepth.models.stage import StageNetworks
from featdepth.utils.files import write_json
from featdepth.utils.constants import KITTI_CAMERA_HEIGHT
from featdepth.utils.runtime import resolve_device, seed_everything

__all__ = [
    "RealDataMissing",
    "RAW_DRIVE",
    "MONODEPTH2_REFERENCE",
    "find_shared_data",
    "write_raw_split",
    "read_odom_intrinsics",
    "build_odom_folder",
    "REAL_RECIPES",
    "real_overrides",
    "load_raw_eval",
    "evaluate_raw_depth",
    "odometry_ate",
    "run_real",
]

RAW_DRIVE = "2011_09_26/2011_09_26_drive_0023_sync"
RAW_FRAMES = 7
#: monodepth2 (mono, ResNet-18 from scratch, 640x192, batch 4, 400 steps, frames 1-5 as targets) on the
#: same 7 frames and protocol: reference figures of monodepth2's own code measured for this project (two seeds).
MONODEPTH2_REFERENCE = {
    "setting": "monodepth2, mono, ResNet-18 from scratch, 640x192, batch 4, lr 1e-4",
    "rows": [
        {"steps": 0, "seed": 0, "abs_rel": 0.450, "sq_rel": 4.73, "rmse": 12.24, "a1": 0.261},
        {"steps": 400, "seed": 0, "abs_rel": 0.119, "sq_rel": 0.82, "rmse": 5.38, "a1": 0.843},
        {"steps": 400, "seed": 1, "abs_rel": 0.129, "sq_rel": 0.81, "rmse": 5.16, "a1": 0.848},
    ],
}


class RealDataMissing(RuntimeError):
    """The real KITTI samples are not available; the message says where they were looked for."""


def find_shared_data(path: str | Path | None = None) -> Path:
    """The folder holding ``kitti_raw_tiny`` (and ``kitti_odom_06_tiny``).

    Looks at ``path``, ``$FEATDEPTH_SHARED_DATA``, then ``../shared/data`` beside the checkout.
    """
    candidates = []
    if path is not None:
        candidates.append(Path(path))
    if os.environ.get("FEATDEPTH_SHARED_DATA"):
        candidates.append(Path(os.environ["FEATDEPTH_SHARED_DATA"]))
    repo = Path(__file__).resolve().parents[2]
    candidates += [repo.parent / "shared" / "data", Path.cwd().parent / "shared" / "data"]
    for c in candidates:
        if (c / "kitti_raw_tiny" / RAW_DRIVE).is_dir():
            return c
    raise RealDataMissing(f"kitti_raw_tiny not found (looked in {', '.join(str(c) for c in candidates)})")


def write_raw_split(work: str | Path, frames: Sequence[int] = range(1, 6), side: str = "l",
                    split: str = "kitti_tiny", repeat: int = 1) -> tuple[Path, str]:
    """Write ``<work>/splits/<split>/train_files.txt``; returns ``(split_dir, split)`` for the config.

    ``repeat`` writes the list that many times: an "epoch" of the trainer then covers ``repeat`` passes
    over the clip, so it does not validate and write a checkpoint after every single batch.
    """
    split_dir = Path(work) / "splits"
    (split_dir / split).mkdir(parents=True, exist_ok=True)
    lines = "".join(f"{RAW_DRIVE} {i} {side}\n" for i in frames)
    (split_dir / split / "train_files.txt").write_text(lines * max(1, int(repeat)))
    return split_dir, split


def read_odom_intrinsics(calib: str | Path) -> np.ndarray:
    """3x3 ``K`` of camera 0 from an odometry ``calib.txt`` (first line P0, labelled ``P0:`` or not)."""
    for line in Path(calib).read_text().splitlines():
        tokens = line.split()
        if not tokens:
            continue
        if tokens[0].endswith(":"):
            if tokens[0] != "P0:":
                continue
            tokens = tokens[1:]
        values = np.array([float(t) for t in tokens], dtype=np.float64)
        if values.size != 12:
            raise ValueError(f"{calib}: P0 must have 12 numbers, got {values.size}")
        return values.reshape(3, 4)[:, :3].copy()
    raise ValueError(f"{calib}: no P0 line")


def build_odom_folder(work: str | Path, odom_src: str | Path, name: str = "odom06") -> Path:
    """A folder-format root ``<work>/odom06`` with one sequence ``odom06`` made of symlinks; returns the root."""
    src = Path(odom_src)
    root = Path(work) / name
    seq = root / name
    (seq / "images").mkdir(parents=True, exist_ok=True)
    for img in sorted((src / "image_l").glob("*.png")):
        link = seq / "images" / img.name
        if not link.exists():
            link.symlink_to(img.resolve())
    K = read_odom_intrinsics(src / "calib.txt")
    (seq / "intrinsics.txt").write_text("".join(" ".join(f"{v:.10g}" for v in row) + "\n" for row in K))
    poses = seq / "poses.txt"
    if (src / "poses.txt").is_file() and not poses.exists():
        poses.symlink_to((src / "poses.txt").resolve())
    return root


#: Config overrides of each real-data recipe (``RealPreset.recipe``) on top of ``synthetic_small``: ``paper`` pins
#: the paper's values, ``robust`` keeps synthetic_small's.
REAL_RECIPES: dict[str, list[str]] = {
    "paper": ["model.pose_output_scale=0.01", "loss.automask_start_step=0", "model.disp_grad_floor=0"],
    "robust": [],
}


def real_overrides(source: str, shared: Path, work: Path, preset: ExperimentPreset, seed: int) -> list[str]:
    """Config overrides of a real-data run (data source, budget, seed)."""
    r = preset.real
    assert r is not None
    samples = max(r.depth_steps, r.feature_steps, 1) * r.batch_size
    if source == "raw":
        split_dir, split = write_raw_split(work, repeat=math.ceil(samples / 5))
        data = ["data.dataset=kitti_raw", f"data.path={shared / 'kitti_raw_tiny'}", f"data.split_dir={split_dir}",
                f"data.split={split}", "data.use_calibration_K=true"]
    elif source == "odom":
        root = build_odom_folder(work, shared / "kitti_odom_06_tiny")
        n = max(1, len(list((root / "odom06" / "images").glob("*.png"))) - 2)
        names = ",".join(["odom06"] * math.ceil(samples / n))  # one long "epoch" (see write_raw_split)
        data = ["data.dataset=folder", f"data.path={root}", f"data.train_sequences=[{names}]", "data.val_sequences=null"]
    else:
        raise ValueError(f"unknown real-data source {source!r} (raw | odom)")
    # Recipe "paper" (the default): the paper's pose output scale (0.01), auto-masking from the first step and the
    # plain sigmoid backward, the recipe the earlier real-clip results were measured with. "robust": keep
    # synthetic_small's 0.1, automask_start_step 200 and disp_grad_floor 1e-4 (the fixes of the synthetic stuck
    # state, docs/experiments.md), as `own_video` does.
    if r.recipe not in REAL_RECIPES:
        raise ValueError(f"unknown real-data recipe {r.recipe!r}; choose {' or '.join(REAL_RECIPES)}")
    return data + ["data.frame_ids=[0,-1,1]"] + REAL_RECIPES[r.recipe] + common_overrides(
        height=r.height, width=r.width, batch_size=r.batch_size, depth_steps=r.depth_steps,
        feature_steps=r.feature_steps, seed=seed, lr=1e-4, warmup_iters=0, layers=preset.layers,
        num_workers=r.num_workers, device=preset.device, val_max_images=preset.val_max_images)


def load_raw_eval(raw_root: str | Path, height: int, width: int, *,
                  with_intrinsics: bool = False) -> tuple[torch.Tensor, list[np.ndarray]] | tuple[torch.Tensor, list[np.ndarray], torch.Tensor]:
    """The 7 left frames of ``kitti_raw_tiny`` at the network size and their lidar depth at full size (and,
    with ``with_intrinsics``, their ``(7,3,3)`` pixel intrinsics at the network size)."""

    lines = [f"{RAW_DRIVE} {i} l" for i in range(RAW_FRAMES)]
    ds = KittiRawDataset(raw_root, lines, [0], height, width, is_train=False, load_depth=True)
    images, gts, Ks = [], [], []
    for i in range(len(ds)):
        s = ds[i]
        images.append(s["color"][0])
        gts.append(s["depth_gt"][0].numpy())
        Ks.append(s["K"])
    if with_intrinsics:
        return torch.stack(images), gts, torch.stack(Ks)
    return torch.stack(images), gts


def evaluate_raw_camera_height(model: Model, images: torch.Tensor, gts: Sequence[np.ndarray], K: torch.Tensor,
                               camera_height: float = KITTI_CAMERA_HEIGHT) -> dict[str, Any]:
    """The same frames and protocol as :func:`evaluate_raw_depth`, scaled by the camera height instead of the
    ground truth (:mod:`featdepth.geometry.scale_recovery`; KITTI's camera is 1.65 m above the road and level, so
    ``height_from="level"``, as ``featdepth evaluate`` chooses for KITTI): the metrics
    with the clip's median recovered scale (one sequence; ``metrics_per_frame``: each frame's own scale), the
    median-scaled metrics of the same predictions, and
    ``recovered scale / median-scaling ratio`` (mean, sd) with the number of frames whose ground plane was found;
    ``{"error": ..., "frames_with_plane": 0}`` where no frame has one."""
    info = CameraHeightInfo(K=K, camera_height=[camera_height] * len(images), sequence=["0023"] * len(images))
    try:
        res, _ = evaluate_depth_batches(model, [(images, list(gts), info)], protocol="eigen", scaling="camera-height",
                                        min_depth=1e-3, max_depth=80.0, height_from="level")
    except ValueError as exc:  # no frame with a ground plane (e.g. a barely trained model): recorded, not fatal
        return {"error": str(exc).split(" (")[0], "frames_with_plane": 0, "camera_height": camera_height}
    rep = res.scale_recovery or {}
    ratio = rep.get("scale_over_median_ratio", {})
    return {"metrics": dict(res.metrics), "metrics_per_frame": rep.get("metrics_per_frame", {}),
            "scale_mode": rep.get("scale_mode"), "median_metrics": rep.get("median_scaling", {}).get("metrics", {}),
            "scale_over_median_ratio_mean": ratio.get("mean"), "scale_over_median_ratio_std": ratio.get("std"),
            "frames_with_plane": int(sum(r is not None for r in rep.get("recovered", []))),
            "camera_height": camera_height}


def to_grey(images: torch.Tensor) -> torch.Tensor:
    """``(N,3,H,W)`` RGB -> luma (ITU-R 601) replicated to three channels."""
    w = torch.tensor([0.299, 0.587, 0.114], dtype=images.dtype).view(1, 3, 1, 1)
    return (images * w).sum(1, keepdim=True).expand_as(images).contiguous()


def evaluate_raw_depth(model: Model, images: torch.Tensor, gts: Sequence[np.ndarray]) -> dict[str, Any]:
    """Eigen protocol (Garg crop, 1e-3 < gt < 80, per-image median scaling) on the given frames, through the
    one evaluation loop."""
    res, _ = evaluate_depth_batches(model, [(images, list(gts))], protocol="eigen", scaling="median",
                                    min_depth=1e-3, max_depth=80.0)
    return {"metrics": dict(res.metrics), "ratio_median": res.ratio_median, "ratio_std": res.ratio_std,
            "num_images": res.num_images, "per_image_abs_rel": [p["abs_rel"] for p in res.per_image]}


def odometry_ate(model: Model, odom_root: Path, height: int, width: int, *, name: str = "odom06") -> dict[str, Any]:
    """5-frame ATE of the model's PoseNet on the odometry clip built by :func:`build_odom_folder`
    (and of predicting no motion)."""
    seq = load_folder_sequence(odom_root, name, height, width)
    pose = evaluate_pose(model, seq.images, seq.poses)
    return {k: pose[k] for k in ("ate5", "ate5_std", "zero_motion_ate5", "t_err", "r_err")}


def run_real(preset: ExperimentPreset, out_dir: str | Path, *, shared_data: str | Path | None = None,
             device: str = "auto", slim: bool = True, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Train the real-data variants of ``preset.real`` on each source and evaluate them.

    ``overrides``: config ``key=value`` overrides applied to every real-data run (FeatureNets included),
    after the recipe of :func:`real_overrides`, so they win over it.

    Layout: ``out_dir/work`` (split files, symlinked odometry folder), ``out_dir/<source>/featurenets/...``,
    ``out_dir/<source>/runs/<variant>/seed<k>/`` (config.yaml, log.jsonl, result.json).

    Raises:
        RealDataMissing: the samples are not available.
    """

    r = preset.real
    if r is None:
        return {"skipped": "this preset has no real-data part"}
    shared = find_shared_data(shared_data)
    out = Path(out_dir)
    work = out / "work"
    work.mkdir(parents=True, exist_ok=True)
    dev = resolve_device(device)
    images, gts, raw_K = load_raw_eval(shared / "kitti_raw_tiny", r.height, r.width, with_intrinsics=True)
    odom_root = build_odom_folder(work, shared / "kitti_odom_06_tiny") if (shared / "kitti_odom_06_tiny").is_dir() else None
    extra = list(overrides)
    results: dict[str, Any] = {"preset": {k: getattr(r, k) for k in r.__dataclass_fields__}, "shared_data": str(shared),
                               "overrides": extra, "runs": [], "monodepth2_reference": MONODEPTH2_REFERENCE}

    # untrained reference (a random network: close to a constant prediction after median scaling)
    seed_everything(r.seeds[0])
    cfg0 = load_config("synthetic_small", real_overrides("raw", shared, work, preset, r.seeds[0]) + extra
                      + ["train.stage=baseline"])
    nets0 = StageNetworks(cfg0, stage="baseline").to(dev).eval()
    results["untrained"] = evaluate_raw_depth(Model.from_networks(nets0.depth_net, nets0.pose_net, cfg0, stage="baseline",
                                                                  source="untrained"), images, gts)

    for source in r.sources:
        if source == "odom" and odom_root is None:
            results.setdefault("notes", []).append("kitti_odom_06_tiny not found: odometry source skipped")
            continue
        eval_images = to_grey(images) if source == "odom" else images
        variants = [VARIANTS[v] for v in r.variants]
        settings = sorted({v.featurenet for v in variants if v.featurenet}, key=list(FEATURENET_SETTINGS).index)
        fn_ckpt: dict[tuple[str, int], str] = {}
        for seed in r.seeds:
            base = real_overrides(source, shared, work, preset, seed) + extra
            fn_seed = featurenet_seed_for(r.seeds, r.featurenet_seeds, seed)
            for setting in settings:
                if (setting, fn_seed) in fn_ckpt:
                    continue
                d = out / source / "featurenets" / setting / f"seed{fn_seed}"
                log(f"real[{source}] FeatureNet '{setting}' seed {fn_seed} -> {d}")
                fn_base = real_overrides(source, shared, work, preset, fn_seed) + extra
                fn_ckpt[(setting, fn_seed)] = train_featurenet(fn_base, setting, d, slim=slim)["checkpoint"]
                results.setdefault("featurenets", {}).setdefault(source, {}).setdefault(setting, {})[str(fn_seed)] = {
                    "checkpoint": fn_ckpt[(setting, fn_seed)], "curve": featurenet_curve(d / "log.jsonl")}
            for v in variants:
                d = out / source / "runs" / v.name / f"seed{seed}"
                log(f"real[{source}] {v.name} seed {seed} -> {d}")
                t0 = time.perf_counter()
                cfg, s = train_variant(base, v, d, feature_checkpoint=fn_ckpt.get((v.featurenet, fn_seed)) if v.featurenet else None,
                                       slim=slim)
                system = load(s["checkpoint"], device=dev, backend="eager")
                ev = evaluate_raw_depth(system, eval_images, gts)
                ev["camera_height"] = evaluate_raw_camera_height(system, eval_images, gts, raw_K)
                run = {"source": source, "variant": v.name, "seed": seed, "out_dir": str(d), "steps": s.get("steps"),
                       "wall_seconds": s.get("wall_seconds", time.perf_counter() - t0), "eval": ev}
                if odom_root is not None and system.has_pose:
                    run["odometry"] = odometry_ate(system, odom_root, r.height, r.width)
                del system
                write_json(d / "result.json", run)
                results["runs"].append(run)
                log(f"    abs_rel {ev['metrics']['abs_rel']:.4f} sq_rel {ev['metrics']['sq_rel']:.4f} "
                     f"a1 {ev['metrics']['a1']:.4f}")
    return results
