"""The ablation runner: same data, budget and seeds for every variant; evaluation per region; a report.

Variants (:data:`VARIANTS`):

==============  =================================================================================
``baseline``    photometric loss only (+ smoothness): ``train.stage=baseline``
``fm_rec``      two-stage, feature-metric loss with a FeatureNet trained with reconstruction only
                (``loss.discriminative_weight=0``, ``loss.convergent_weight=0``)
``fm_dis``      two-stage, FeatureNet trained with reconstruction + discriminative
``fm_dis_cvt``  two-stage, FeatureNet trained with reconstruction + discriminative + convergent (the paper)
``joint``       single stage: FeatureNet (all three losses) trained together with depth and pose
==============  =================================================================================

Every depth run gets the same number of depth/pose steps (``depth_steps``); the two-stage variants
additionally need a FeatureNet stage (``feature_steps``), which is trained **once** per (FeatureNet
setting, seed) under ``DIR/featurenets/<setting>/seed<k>`` and shared by the depth runs that use it.
Each run keeps its resolved ``config.yaml`` and ``log.jsonl`` in ``DIR/runs/<variant>/seed<k>`` (the
trainer writes them) plus ``result.json`` (the evaluation). A finished run (``result.json`` present)
is not trained again when the command is repeated with the same ``--out``: an interrupted experiment
resumes where it stopped.

Evaluation on held-out synthetic sequences (:func:`evaluate_synthetic_system`): per image, the
prediction is resized to the GT size, valid pixels are ``1e-3 < gt < 80`` (the synthetic far background
sits at exactly ``max_depth = 80`` and is therefore excluded), the median ratio is computed on **all**
valid pixels of the image and applied to the whole prediction, the prediction is clamped to
``[1e-3, 80]``, and the standard metrics are computed on all valid pixels and separately on each region
(:data:`REGION_NAMES`). Region means are over the images that hold at least ``min_region_pixels`` valid
pixels of that region. Pose: the 5-frame ATE (:mod:`featdepth.evaluation.pose_metrics`) on every
consecutive pair of the held-out sequences, and the ATE of predicting no motion as a reference.
"""

from __future__ import annotations

import copy
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from featdepth.config import Config, load_config

__all__ = [
    "REGION_NAMES",
    "EVAL_REGIONS",
    "Variant",
    "VARIANTS",
    "FEATURENET_SETTINGS",
    "RealPreset",
    "ExperimentPreset",
    "PRESETS",
    "get_preset",
    "region_masks",
    "region_depth_errors",
    "evaluate_region_depth",
    "evaluate_synthetic_system",
    "estimate_seconds",
    "format_duration",
    "synthetic_overrides",
    "load_system",
    "load_feature_net",
    "configure_preset",
    "run_experiment",
]

#: Region labels of the synthetic generator (``featdepth.data.synthetic``).
REGION_NAMES: dict[int, str] = {0: "sky", 1: "road", 2: "textureless", 3: "textured", 4: "object"}
#: Regions reported separately (textureless first: the paper's claim is about them).
EVAL_REGIONS: tuple[int, ...] = (2, 3, 1, 4)

# --------------------------------------------------------------------------------------------------
# per-region depth metrics
# --------------------------------------------------------------------------------------------------


def region_masks(regions: np.ndarray, valid: np.ndarray, region_ids: Sequence[int] = EVAL_REGIONS) -> dict[str, np.ndarray]:
    """Boolean masks ``{"all": valid, "<region name>": valid & (regions == id), ...}``.

    Args:
        regions: ``(H, W)`` integer region labels (0 sky, 1 road, 2 textureless, 3 textured, 4 object).
        valid: ``(H, W)`` boolean mask of the evaluated pixels.
        region_ids: labels to make masks for (names from :data:`REGION_NAMES`).
    """
    regions = np.asarray(regions)
    valid = np.asarray(valid, dtype=bool)
    if regions.shape != valid.shape:
        raise ValueError(f"regions {regions.shape} and valid {valid.shape} must have the same shape")
    out = {"all": valid}
    for r in region_ids:
        out[REGION_NAMES.get(int(r), f"region{int(r)}")] = valid & (regions == int(r))
    return out


def region_depth_errors(
    gt: np.ndarray,
    pred: np.ndarray,
    regions: np.ndarray,
    *,
    region_ids: Sequence[int] = EVAL_REGIONS,
    min_depth: float = 1e-3,
    max_depth: float = 80.0,
    min_region_pixels: int = 20,
) -> tuple[dict[str, dict[str, float] | None], float, dict[str, int]]:
    """Depth metrics of one image, overall and per region, with one median scale for the whole image.

    Args:
        gt: ``(H, W)`` GT depth in metres (0 or ``>= max_depth`` = not evaluated).
        pred: ``(h, w)`` predicted depth (any scale); resized bilinearly to ``(H, W)``.
        regions: ``(H, W)`` region labels aligned with ``gt``.
        region_ids, min_depth, max_depth: see the module docstring.
        min_region_pixels: a region with fewer valid pixels in this image gets ``None``.

    Returns:
        ``(metrics, ratio, counts)``: ``metrics[name]`` is the dict of
        :func:`~featdepth.evaluation.depth_metrics.compute_depth_errors` (or ``None``) for ``"all"`` and
        each region name; ``ratio = median(gt) / median(pred)`` over all valid pixels (applied to every
        subset); ``counts[name]`` the number of valid pixels.
    """
    from featdepth.evaluation.depth_metrics import compute_depth_errors, resize_bilinear

    gt = np.asarray(gt, dtype=np.float64)
    pred = np.asarray(pred, dtype=np.float64)
    if pred.ndim == 3 and pred.shape[0] == 1:
        pred = pred[0]
    if gt.ndim != 2 or pred.ndim != 2:
        raise ValueError(f"gt and pred must be 2-D, got {gt.shape} and {pred.shape}")
    if pred.shape != gt.shape:
        pred = resize_bilinear(pred, gt.shape)
    valid = np.isfinite(gt) & (gt > min_depth) & (gt < max_depth)
    if not valid.any():
        raise ValueError("no valid ground-truth pixel in this image")
    masks = region_masks(regions, valid, region_ids)
    ratio = float(np.median(gt[valid]) / np.median(pred[valid]))
    scaled = np.clip(np.nan_to_num(pred * ratio, nan=min_depth, posinf=max_depth, neginf=min_depth), min_depth, max_depth)
    metrics: dict[str, dict[str, float] | None] = {}
    counts: dict[str, int] = {}
    for name, m in masks.items():
        n = int(m.sum())
        counts[name] = n
        metrics[name] = compute_depth_errors(gt[m], scaled[m]) if n >= (1 if name == "all" else min_region_pixels) else None
    return metrics, ratio, counts


def evaluate_region_depth(
    gts: Sequence[np.ndarray],
    preds: Sequence[np.ndarray],
    regions: Sequence[np.ndarray],
    **kwargs: Any,
) -> dict[str, dict[str, Any]]:
    """:func:`region_depth_errors` over images; the mean of each metric over the images that have it.

    Returns:
        ``{name: {"metrics": {metric: mean}, "images": n_images, "pixels": n_pixels}}`` for ``"all"``
        and each region (``metrics`` is empty where no image had enough pixels of the region).
    """
    if not (len(gts) == len(preds) == len(regions)):
        raise ValueError(f"{len(gts)} GT maps, {len(preds)} predictions, {len(regions)} region maps")
    per_name: dict[str, list[dict[str, float]]] = {}
    pixels: dict[str, int] = {}
    for i, (g, p, r) in enumerate(zip(gts, preds, regions)):
        try:
            metrics, _, counts = region_depth_errors(g, p, r, **kwargs)
        except ValueError as exc:
            raise ValueError(f"image {i}: {exc}") from exc
        for name, m in metrics.items():
            per_name.setdefault(name, [])
            if m is not None:
                per_name[name].append(m)
                pixels[name] = pixels.get(name, 0) + counts[name]
    out: dict[str, dict[str, Any]] = {}
    for name, items in per_name.items():
        mean = {k: float(np.mean([m[k] for m in items])) for k in items[0]} if items else {}
        out[name] = {"metrics": mean, "images": len(items), "pixels": pixels.get(name, 0)}
    return out


# --------------------------------------------------------------------------------------------------
# variants and presets
# --------------------------------------------------------------------------------------------------

#: FeatureNet settings of the ablation: name -> (discriminative_weight, convergent_weight).
FEATURENET_SETTINGS: dict[str, tuple[float, float]] = {
    "rec": (0.0, 0.0),
    "rec_dis": (1e-3, 0.0),
    "rec_dis_cvt": (1e-3, 1e-3),
}


@dataclass(frozen=True)
class Variant:
    """One trained configuration of the ablation."""

    name: str
    stage: str  # baseline | depth | joint
    featurenet: str | None = None  # key of FEATURENET_SETTINGS for stage "depth"
    description: str = ""

    def loss_overrides(self) -> list[str]:
        if self.featurenet is not None:
            dis, cvt = FEATURENET_SETTINGS[self.featurenet]
        else:
            dis, cvt = FEATURENET_SETTINGS["rec_dis_cvt"]
        return [f"loss.discriminative_weight={dis}", f"loss.convergent_weight={cvt}"]


VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant("baseline", "baseline", None, "photometric only (monodepth2-style)"),
        Variant("fm_rec", "depth", "rec", "+ feature-metric, FeatureNet: reconstruction only"),
        Variant("fm_dis", "depth", "rec_dis", "+ feature-metric, FeatureNet: rec + discriminative"),
        Variant("fm_dis_cvt", "depth", "rec_dis_cvt", "+ feature-metric, FeatureNet: rec + dis + convergent (paper, two-stage)"),
        Variant("joint", "joint", None, "single stage: FeatureNet (rec + dis + cvt) trained jointly"),
    )
}


@dataclass
class RealPreset:
    """The real-data part (:mod:`featdepth.experiments.realdata`)."""

    height: int = 96
    width: int = 320
    batch_size: int = 4
    depth_steps: int = 150
    feature_steps: int = 100
    seeds: list[int] = field(default_factory=lambda: [0])
    variants: list[str] = field(default_factory=lambda: ["baseline", "fm_dis_cvt"])
    sources: list[str] = field(default_factory=lambda: ["raw"])  # raw (kitti_raw_tiny) | odom (kitti_odom_06_tiny)
    num_workers: int = 1


@dataclass
class ExperimentPreset:
    """Everything that sets the budget of an experiment."""

    name: str
    height: int
    width: int
    batch_size: int
    depth_steps: int
    feature_steps: int
    seeds: list[int]
    variants: list[str]
    synth_sequences: int
    synth_val_sequences: int
    synth_frames: int
    lr: float = 2e-4
    warmup_iters: int = 50
    layers: int = 18
    num_workers: int = 0
    val_max_images: int = 8
    landscape_points: int = 31
    landscape_pairs: int = 3
    tz_range: float = 0.5  # metres
    ry_range_deg: float = 3.0
    stats_images: int = 8
    eval_depth_stride: int = 1  # depth metrics on every k-th held-out frame (poses always use every frame)
    real: RealPreset | None = None
    device: str = "auto"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


PRESETS: dict[str, ExperimentPreset] = {
    # seconds: for tests and a smoke check of the whole pipeline (numbers mean nothing)
    "tiny": ExperimentPreset(
        name="tiny", height=64, width=192, batch_size=2, depth_steps=2, feature_steps=2, seeds=[0],
        variants=["baseline", "fm_dis_cvt"], synth_sequences=2, synth_val_sequences=1, synth_frames=6,
        warmup_iters=1, val_max_images=2, landscape_points=9, landscape_pairs=1, stats_images=2,
        real=RealPreset(height=64, width=192, batch_size=2, depth_steps=1, feature_steps=1,
                        variants=["baseline"], sources=["raw"], num_workers=0),
    ),
    # about 30 minutes on 2 quiet CPU cores (see docs/experiments.md for the measured time)
    "cpu": ExperimentPreset(
        name="cpu", height=64, width=192, batch_size=4, depth_steps=200, feature_steps=150, seeds=[0, 1],
        variants=["baseline", "fm_rec", "fm_dis", "fm_dis_cvt", "joint"], synth_sequences=4,
        synth_val_sequences=2, synth_frames=210, warmup_iters=20, landscape_points=31, landscape_pairs=4,
        eval_depth_stride=3,
        real=RealPreset(height=96, width=320, batch_size=4, depth_steps=100, feature_steps=50, seeds=[0],
                        variants=["baseline", "fm_dis_cvt"], sources=["raw", "odom"], num_workers=1),
    ),
    # a larger run for one GPU (hours on a CPU)
    "gpu": ExperimentPreset(
        name="gpu", height=128, width=416, batch_size=8, depth_steps=4000, feature_steps=2000, seeds=[0, 1, 2],
        variants=["baseline", "fm_rec", "fm_dis", "fm_dis_cvt", "joint"], synth_sequences=12,
        synth_val_sequences=3, synth_frames=300, warmup_iters=200, num_workers=4, val_max_images=32,
        landscape_points=31, landscape_pairs=8, stats_images=16,
        real=RealPreset(height=192, width=640, batch_size=4, depth_steps=1200, feature_steps=600, seeds=[0, 1, 2],
                        variants=["baseline", "fm_dis_cvt"], sources=["raw", "odom"], num_workers=4),
    ),
}


def get_preset(name: str) -> ExperimentPreset:
    """A deep copy of a named preset (``tiny``, ``cpu``, ``gpu``)."""
    if name not in PRESETS:
        raise ValueError(f"unknown experiment preset {name!r}; choose one of {', '.join(PRESETS)}")
    return copy.deepcopy(PRESETS[name])


# --------------------------------------------------------------------------------------------------
# budget estimate
# --------------------------------------------------------------------------------------------------

#: Measured seconds per training step (forward + backward + step; median of the logged steps of the
#: `cpu` preset run of docs/experiments.md), ResNet-18 everywhere, 64x192, batch 4, float32, 2 CPU
#: threads on a quiet 2-core Xeon. Scaled linearly by pixels x batch.
CPU_SECONDS_PER_STEP: dict[str, float] = {"featurenet": 0.13, "baseline": 0.29, "depth": 0.30, "joint": 0.46}
_REF_PIXELS = 64 * 192 * 4
#: Extra seconds per real KITTI sample (3 frames of 1242x375 PNG, resize, jitter) not hidden by the
#: loader worker (measured: 96x320 steps took 0.63-0.69 s in all).
REAL_DATA_SECONDS_PER_SAMPLE = 0.01


def _step_seconds(stage: str, height: int, width: int, batch: int, device: str) -> float:
    s = CPU_SECONDS_PER_STEP[stage] * (height * width * batch) / _REF_PIXELS
    if device.startswith("cuda"):
        s = max(s / 25.0, 0.03)
    return s


def _device_name(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def estimate_seconds(preset: ExperimentPreset, *, real: bool = True, landscape: bool = True,
                     synthetic: bool = True) -> dict[str, float]:
    """Rough wall-clock estimate of :func:`run_experiment` for ``preset`` (a quiet machine).

    Returns ``{"synthetic": s, "featurenets": s, "real": s, "analysis": s, "total": s}``.
    """
    dev = _device_name(preset.device)
    p = preset
    variants = [VARIANTS[v] for v in p.variants]
    synth = sum(_step_seconds(v.stage, p.height, p.width, p.batch_size, dev) * p.depth_steps for v in variants) * len(p.seeds)
    settings = {v.featurenet for v in variants if v.featurenet}
    fns = len(settings) * len(p.seeds) * p.feature_steps * _step_seconds("featurenet", p.height, p.width, p.batch_size, dev)
    n_runs = len(variants) * len(p.seeds)
    val_frames = p.synth_val_sequences * p.synth_frames
    evaluation = n_runs * (3.0 + val_frames * (0.01 + 0.03 / max(1, p.eval_depth_stride)) * (p.height * p.width) / (64 * 192))
    data = (p.synth_sequences + p.synth_val_sequences) * p.synth_frames * 0.05 * (p.height * p.width) / (64 * 192)
    analysis = (15.0 + 0.3 * p.landscape_pairs * p.landscape_points) if landscape else 0.0
    real_s = 0.0
    if real and p.real is not None:
        r = p.real
        rv = [VARIANTS[v] for v in r.variants]
        per_source = 0.0
        for v in rv:
            per_source += (_step_seconds(v.stage, r.height, r.width, r.batch_size, dev)
                           + REAL_DATA_SECONDS_PER_SAMPLE * r.batch_size) * r.depth_steps
        rsettings = {v.featurenet for v in rv if v.featurenet}
        per_source += len(rsettings) * r.feature_steps * (
            _step_seconds("featurenet", r.height, r.width, r.batch_size, dev) + 0.02 * r.batch_size)
        real_s = per_source * len(r.seeds) * len(r.sources) + 10.0 * len(rv) * len(r.seeds) * len(r.sources)
    if not synthetic:
        synth = fns = evaluation = data = analysis = 0.0
    total = synth + fns + evaluation + data + analysis + real_s
    return {"synthetic": synth + evaluation + data, "featurenets": fns, "real": real_s, "analysis": analysis, "total": total}


def format_duration(seconds: float) -> str:
    seconds = float(seconds)
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


# --------------------------------------------------------------------------------------------------
# configs, checkpoints, systems
# --------------------------------------------------------------------------------------------------


def _log(msg: str) -> None:
    print(f"[experiment] {msg}", file=sys.stderr, flush=True)


def common_overrides(*, height: int, width: int, batch_size: int, depth_steps: int, feature_steps: int, seed: int,
                     lr: float, warmup_iters: int, layers: int, num_workers: int, device: str,
                     val_max_images: int) -> list[str]:
    """Overrides shared by every run of an experiment (synthetic or real)."""
    return [
        f"data.height={height}", f"data.width={width}", f"data.num_workers={num_workers}",
        f"model.depth_layers={layers}", f"model.pose_layers={layers}", f"model.feature_layers={layers}",
        "model.pose_input_size=null",
        f"optim.batch_size={batch_size}", f"optim.lr={lr}", "optim.epochs=1000000", f"optim.max_steps={depth_steps}",
        "optim.milestones=[]", f"optim.warmup_iters={warmup_iters}",
        f"feature_stage.max_steps={feature_steps}", "feature_stage.epochs=1000000", "feature_stage.milestones=[]",
        f"train.seed={seed}", f"train.device={device}", "train.progress=false", "train.image_every=0",
        "train.keep_checkpoints=1", "train.log_every=10", "train.val_every=1000000",
        f"train.val_max_images={val_max_images}", "train.run_feature_stage=false",
    ]


def synthetic_overrides(preset: ExperimentPreset, data_dir: str | Path, seed: int) -> list[str]:
    """Overrides of every synthetic run of ``preset`` (data, budget, seed)."""
    p = preset
    return [
        "data.dataset=synthetic", f"data.path={Path(data_dir)}", f"data.synth_sequences={p.synth_sequences}",
        f"data.synth_val_sequences={p.synth_val_sequences}", f"data.synth_frames={p.synth_frames}",
        "data.train_sequences=null", "data.val_sequences=null", "data.frame_ids=[0,-1,1]",
    ] + common_overrides(height=p.height, width=p.width, batch_size=p.batch_size, depth_steps=p.depth_steps,
                         feature_steps=p.feature_steps, seed=seed, lr=p.lr, warmup_iters=p.warmup_iters,
                         layers=p.layers, num_workers=p.num_workers, device=p.device, val_max_images=p.val_max_images)


def load_system(cfg: Config, stage: str, checkpoint: str | Path, device: torch.device | str = "cpu"):
    """A :class:`~featdepth.models.system.FeatDepthSystem` of ``stage`` with the checkpoint's weights, in eval mode."""
    from featdepth.engine.checkpoints import load_checkpoint
    from featdepth.models.system import FeatDepthSystem

    state = load_checkpoint(checkpoint)
    system = FeatDepthSystem(cfg, stage=stage)
    system.load_state_dict(state["model"])
    return system.to(device).eval()


def load_feature_net(checkpoint: str | Path, layers: int, device: torch.device | str = "cpu"):
    """The FeatureNet (encoder; decoder too when present) of a featurenet/joint/depth checkpoint, eval mode."""
    from featdepth.engine.checkpoints import load_checkpoint
    from featdepth.models.feature_net import FeatureNet

    state = load_checkpoint(checkpoint)
    model_state = state.get("model", state)
    prefix = "feature_net."
    fn_state = {k[len(prefix):]: v for k, v in model_state.items() if k.startswith(prefix)}
    if not fn_state:
        raise ValueError(f"{checkpoint} holds no FeatureNet weights")
    net = FeatureNet(num_layers=layers)
    missing, _ = net.load_state_dict(fn_state, strict=False)
    missing_enc = [k for k in missing if k.startswith("encoder.")]
    if missing_enc:
        raise ValueError(f"{checkpoint} lacks FeatureNet encoder weights: {missing_enc[:3]}")
    return net.to(device).eval()


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=_json_default) + "\n")


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o)}")


def slim_checkpoint(path: str | Path) -> Path:
    """Replace a finished run's checkpoints by ``model.pt`` holding only the weights and the config.

    The trainer's checkpoints also hold the optimiser state (about 3x the weights: ~440 MB for three
    ResNet-18 networks) and a duplicate ``best.pt``; a finished ablation run needs neither. Returns the
    path of ``model.pt`` (readable with :func:`~featdepth.engine.checkpoints.load_checkpoint`).
    """
    from featdepth.engine.checkpoints import MANIFEST, atomic_save, load_checkpoint

    path = Path(path)
    target = path.parent / "model.pt"
    if path == target:
        return target
    state = load_checkpoint(path)
    atomic_save({k: state[k] for k in ("model", "config", "stage", "step", "epoch", "versions") if k in state}, target)
    for p in path.parent.glob("*.pt"):
        if p != target:
            p.unlink()
    (path.parent / MANIFEST).unlink(missing_ok=True)
    return target


def train_featurenet(base_overrides: Sequence[str], setting: str, out_dir: Path, *, preset_name: str = "synthetic_small",
                     extra: Sequence[str] = (), slim: bool = True) -> dict[str, Any]:
    """Train (or reuse) the FeatureNet stage of ``setting`` in ``out_dir``; returns its summary."""
    from featdepth.engine.trainer import run_training

    summary_path = out_dir / "summary.json"
    if summary_path.is_file():
        summary = _read_json(summary_path)
        if summary.get("checkpoint") and Path(summary["checkpoint"]).is_file():
            summary["reused"] = True
            return summary
    dis, cvt = FEATURENET_SETTINGS[setting]
    cfg = load_config(preset_name, list(base_overrides) + ["train.stage=featurenet", f"loss.discriminative_weight={dis}",
                                                          f"loss.convergent_weight={cvt}"] + list(extra))
    t0 = time.perf_counter()
    summary = run_training(cfg, out_dir=out_dir)
    summary["wall_seconds"] = time.perf_counter() - t0
    summary["setting"] = setting
    if slim and summary.get("checkpoint"):
        summary["checkpoint"] = str(slim_checkpoint(summary["checkpoint"]))
    _write_json(summary_path, summary)
    return summary


def train_variant(base_overrides: Sequence[str], variant: Variant, out_dir: Path, *, feature_checkpoint: str | None,
                  preset_name: str = "synthetic_small", extra: Sequence[str] = (), slim: bool = True) -> tuple[Config, dict[str, Any]]:
    """Train one depth/pose run of ``variant`` in ``out_dir`` (reusing a finished one); returns (cfg, summary)."""
    from featdepth.engine.trainer import run_training

    overrides = list(base_overrides) + [f"train.stage={variant.stage}"] + variant.loss_overrides()
    if variant.stage == "depth":
        if not feature_checkpoint:
            raise ValueError(f"variant {variant.name} needs a FeatureNet checkpoint")
        overrides.append(f"train.feature_checkpoint={feature_checkpoint}")
    cfg = load_config(preset_name, overrides + list(extra))
    summary_path = out_dir / "summary.json"
    if summary_path.is_file():
        summary = _read_json(summary_path)
        if summary.get("checkpoint") and Path(summary["checkpoint"]).is_file():
            summary["reused"] = True
            return cfg, summary
    t0 = time.perf_counter()
    summary = run_training(cfg, out_dir=out_dir)
    summary["wall_seconds"] = time.perf_counter() - t0
    summary["variant"] = variant.name
    if slim and summary.get("checkpoint"):
        summary["checkpoint"] = str(slim_checkpoint(summary["checkpoint"]))
    _write_json(summary_path, summary)
    return cfg, summary


# --------------------------------------------------------------------------------------------------
# evaluation on the synthetic held-out sequences
# --------------------------------------------------------------------------------------------------


def evaluate_synthetic_system(system: Any, sequences: Sequence[Any], *, device: torch.device | str = "cpu",
                              region_ids: Sequence[int] = EVAL_REGIONS, max_depth: float = 80.0,
                              depth_stride: int = 1) -> dict[str, Any]:
    """Depth overall and per region, and the 5-frame ATE, on loaded held-out sequences.

    Args:
        system: a FeatDepthSystem (any stage but ``featurenet``).
        sequences: :class:`~featdepth.evaluation.inference.SequenceData` with depths, regions and poses.
        depth_stride: evaluate depth on every ``depth_stride``-th frame (the ATE uses every frame).

    Returns:
        ``{"depth": evaluate_region_depth(...), "ate5", "ate5_std", "zero_motion_ate5", "images"}``.
    """
    from featdepth.evaluation.inference import predict_disparity, predict_relative_poses
    from featdepth.evaluation.pose_metrics import snippets_from_relative_poses
    from featdepth.evaluation.trajectory import relative_poses_from_absolute
    from featdepth.models.layers import disp_to_depth

    m = system.cfg.model
    gts, preds, regs, ates, zero = [], [], [], [], []
    for seq in sequences:
        if not seq.depths or not seq.regions:
            raise ValueError(f"sequence {seq.name} has no GT depth or region labels")
        idx = list(range(0, len(seq.images), max(1, int(depth_stride))))
        disp = predict_disparity(system, seq.images[idx], device=device)
        _, depth = disp_to_depth(disp, m.min_depth, m.max_depth)
        gts.extend(seq.depths[i] for i in idx)
        regs.extend(seq.regions[i] for i in idx)
        preds.extend(d[0].numpy() for d in depth)
        if seq.poses is not None and system.pose_net is not None and len(seq.poses) > 1:
            rel_gt = relative_poses_from_absolute(seq.poses)
            rel_pred = predict_relative_poses(system, seq.images, device=device)
            ates.extend(snippets_from_relative_poses(rel_gt, rel_pred))
            zero.extend(snippets_from_relative_poses(rel_gt, np.broadcast_to(np.eye(4), rel_gt.shape).copy()))
    out: dict[str, Any] = {
        "depth": evaluate_region_depth(gts, preds, regs, region_ids=region_ids, max_depth=max_depth),
        "images": len(gts),
    }
    if ates:
        out["ate5"] = float(np.mean(ates))
        out["ate5_std"] = float(np.std(ates))
        out["zero_motion_ate5"] = float(np.mean(zero))
    return out


# --------------------------------------------------------------------------------------------------
# the experiment
# --------------------------------------------------------------------------------------------------


@dataclass
class _Job:
    kind: str  # featurenet | variant
    name: str
    seed: int


def _plan(variants: Sequence[Variant], seeds: Sequence[int]) -> list[_Job]:
    jobs: list[_Job] = []
    for seed in seeds:
        for setting in sorted({v.featurenet for v in variants if v.featurenet}, key=list(FEATURENET_SETTINGS).index):
            jobs.append(_Job("featurenet", setting, seed))
        for v in variants:
            jobs.append(_Job("variant", v.name, seed))
    return jobs


def configure_preset(
    preset: str | ExperimentPreset,
    *,
    seeds: Sequence[int] | None = None,
    variants: Sequence[str] | None = None,
    steps: int | None = None,
    feature_steps: int | None = None,
    real_steps: int | None = None,
    real_feature_steps: int | None = None,
    real_sources: Sequence[str] | None = None,
    real_seeds: Sequence[int] | None = None,
    real_size: Sequence[int] | None = None,
    device: str | None = None,
) -> ExperimentPreset:
    """A copy of ``preset`` with the given budget overrides (``None`` keeps the preset's value).

    Without ``real_seeds`` the real-data part uses the first seeds of ``seeds`` (as many as the preset's
    real part has). ``real_size`` is ``(H, W)`` of the real-data runs, multiples of 32.

    Raises:
        ValueError: unknown variants or real-data sources, a bad size, or nothing to run.
    """
    p = get_preset(preset) if isinstance(preset, str) else copy.deepcopy(preset)
    if seeds is not None:
        p.seeds = [int(s) for s in seeds]
    if variants is not None:
        unknown = [v for v in variants if v not in VARIANTS]
        if unknown:
            raise ValueError(f"unknown variants {unknown}; choose from {', '.join(VARIANTS)}")
        p.variants = list(dict.fromkeys(variants))
    if steps is not None:
        p.depth_steps = int(steps)
    if feature_steps is not None:
        p.feature_steps = int(feature_steps)
    if device is not None:
        p.device = device
    if p.real is not None:
        p.real.seeds = list(p.real.seeds) if seeds is None else [int(s) for s in seeds][: max(1, len(p.real.seeds))]
        if real_steps is not None:
            p.real.depth_steps = int(real_steps)
        if real_feature_steps is not None:
            p.real.feature_steps = int(real_feature_steps)
        if real_seeds is not None:
            p.real.seeds = [int(x) for x in real_seeds]
        if real_size is not None:
            h, w = (int(x) for x in real_size)
            if h < 32 or w < 32 or h % 32 or w % 32:
                raise ValueError(f"real_size must be multiples of 32 (H, W), got {real_size}")
            p.real.height, p.real.width = h, w
        if real_sources is not None:
            bad = [x for x in real_sources if x not in ("raw", "odom")]
            if bad:
                raise ValueError(f"unknown real-data sources {bad}; choose raw and/or odom")
            p.real.sources = list(dict.fromkeys(real_sources))
    if not p.variants or not p.seeds:
        raise ValueError("nothing to run: no variants or no seeds")
    return p


def run_experiment(
    out_dir: str | Path,
    preset: str | ExperimentPreset = "cpu",
    *,
    seeds: Sequence[int] | None = None,
    variants: Sequence[str] | None = None,
    steps: int | None = None,
    feature_steps: int | None = None,
    real_steps: int | None = None,
    real_feature_steps: int | None = None,
    real_sources: Sequence[str] | None = None,
    real_seeds: Sequence[int] | None = None,
    real_size: Sequence[int] | None = None,
    device: str | None = None,
    overrides: Sequence[str] = (),
    real: bool = True,
    synthetic: bool = True,
    landscape: bool = True,
    shared_data: str | Path | None = None,
    command: str | None = None,
    keep_full_checkpoints: bool = False,
) -> dict[str, Any]:
    """Train, evaluate and analyse every variant; write ``results.json`` and ``report.md`` in ``out_dir``.

    Args:
        out_dir: output folder (created). Layout: ``data/`` (generated synthetic scenes),
            ``featurenets/<setting>/seed<k>/``, ``runs/<variant>/seed<k>/``, ``real/<source>/...``,
            ``figures/``, ``results.json``, ``report.md``.
        preset: a name of :data:`PRESETS` or an :class:`ExperimentPreset`.
        seeds, variants, steps (depth/pose steps), feature_steps, real_steps, real_feature_steps, real_sources
            (``raw``, ``odom``), real_seeds, real_size (``(H, W)``), device: override the preset (see
            :func:`configure_preset`).
        overrides: config ``key=value`` overrides applied to every synthetic run.
        real: also run the real-data part (skipped with a note when the data is absent).
        synthetic: run the synthetic part (training, evaluation, landscape, statistics); ``False`` with
            ``real=True`` runs the real-data part alone.
        landscape: also compute the loss landscape and the FeatureNet statistics.
        shared_data: folder holding ``kitti_raw_tiny`` and ``kitti_odom_06_tiny`` (default: found beside
            the checkout, or ``$FEATDEPTH_SHARED_DATA``).
        command: the command line, recorded in the report.
        keep_full_checkpoints: keep the trainer's checkpoints (with optimiser state, resumable) instead of
            replacing them by ``model.pt`` (weights and config only) once a run is finished.

    Returns:
        The content of ``results.json``.
    """
    from featdepth.engine.trainer import resolve_device
    from featdepth.data.factory import ensure_synthetic_data, synthetic_sequence_names
    from featdepth.evaluation.inference import load_folder_sequence
    from featdepth.experiments import report as report_mod

    t_start = time.perf_counter()
    p = configure_preset(preset, seeds=seeds, variants=variants, steps=steps, feature_steps=feature_steps,
                         real_steps=real_steps, real_feature_steps=real_feature_steps, real_sources=real_sources,
                         real_seeds=real_seeds, real_size=real_size, device=device)
    if not p.variants or not p.seeds:
        raise ValueError("nothing to run: no variants or no seeds")

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    est = estimate_seconds(p, real=real, landscape=landscape and synthetic, synthetic=synthetic)
    if synthetic:
        _log(f"preset {p.name}: {len(p.variants)} variants x {len(p.seeds)} seeds, {p.depth_steps} depth steps "
             f"(+{p.feature_steps} FeatureNet steps per shared FeatureNet), {p.height}x{p.width}, batch {p.batch_size}")
    if real and p.real is not None:
        r = p.real
        _log(f"real data ({', '.join(r.sources)}): {', '.join(r.variants)} x seeds {r.seeds}, {r.depth_steps} depth steps "
             f"(+{r.feature_steps} FeatureNet steps), {r.height}x{r.width}, batch {r.batch_size}")
    _log(f"estimated time on a quiet machine: {format_duration(est['total'])} (synthetic {format_duration(est['synthetic'])}, "
         f"FeatureNets {format_duration(est['featurenets'])}, real {format_duration(est['real'])}, "
         f"analysis {format_duration(est['analysis'])})")

    dev = resolve_device(p.device)
    data_dir = out / "data"
    variant_objs = [VARIANTS[v] for v in p.variants]
    results: dict[str, Any] = {
        "preset": p.as_dict(),
        "command": command,
        "estimate_seconds": est,
        "overrides": list(overrides),
        "device": str(dev),
        "torch": torch.__version__,
        "variants": {v.name: asdict(v) for v in variant_objs},
        "featurenets": {},
        "runs": [],
    }

    if synthetic:
        # data --------------------------------------------------------------------------------
        cfg0 = load_config("synthetic_small", synthetic_overrides(p, data_dir, p.seeds[0]) + list(overrides))
        _log(f"synthetic data in {data_dir}")
        ensure_synthetic_data(cfg0)
        _, val_names = synthetic_sequence_names(cfg0)
        val_seqs = [load_folder_sequence(data_dir, n, p.height, p.width) for n in val_names]
        results["val_sequences"] = val_names

        # training + evaluation ---------------------------------------------------------------
        jobs = _plan(variant_objs, p.seeds)
        fn_ckpt: dict[tuple[str, int], str] = {}
        for i, job in enumerate(jobs, 1):
            base = synthetic_overrides(p, data_dir, job.seed) + list(overrides)
            if job.kind == "featurenet":
                d = out / "featurenets" / job.name / f"seed{job.seed}"
                _log(f"({i}/{len(jobs)}) FeatureNet '{job.name}' seed {job.seed} -> {d}")
                s = train_featurenet(base, job.name, d, slim=not keep_full_checkpoints)
                fn_ckpt[(job.name, job.seed)] = s["checkpoint"]
                results["featurenets"].setdefault(job.name, {})[str(job.seed)] = {
                    "checkpoint": s["checkpoint"], "steps": s.get("steps"), "wall_seconds": s.get("wall_seconds"),
                    "val": s.get("val", {}), "out_dir": str(d)}
                continue
            v = VARIANTS[job.name]
            d = out / "runs" / v.name / f"seed{job.seed}"
            _log(f"({i}/{len(jobs)}) {v.name} seed {job.seed} -> {d}")
            cfg, s = train_variant(base, v, d, feature_checkpoint=fn_ckpt.get((v.featurenet, job.seed)) if v.featurenet else None,
                                   slim=not keep_full_checkpoints)
            result_path = d / "result.json"
            if result_path.is_file() and s.get("reused"):
                ev = _read_json(result_path)["eval"]
            else:
                system = load_system(cfg, v.stage, s["checkpoint"], dev)
                ev = evaluate_synthetic_system(system, val_seqs, device=dev, depth_stride=p.eval_depth_stride)
                del system
            run = {"variant": v.name, "seed": job.seed, "out_dir": str(d), "checkpoint": s["checkpoint"],
                   "steps": s.get("steps"), "wall_seconds": s.get("wall_seconds"),
                   "featurenet_checkpoint": fn_ckpt.get((v.featurenet, job.seed)) if v.featurenet else None, "eval": ev}
            _write_json(result_path, run)
            results["runs"].append(run)
            _write_json(out / "results.json", results)  # partial results survive an interruption
            a = ev["depth"]["all"]["metrics"]
            tl = ev["depth"].get("textureless", {}).get("metrics", {})
            _log(f"    abs_rel {a.get('abs_rel', float('nan')):.4f} (textureless {tl.get('abs_rel', float('nan')):.4f}), "
                 f"ATE5 {ev.get('ate5', float('nan')):.4f} m")
        _write_json(out / "results.json", results)

        # untrained reference ---------------------------------------------------------------
        from featdepth.engine.trainer import seed_everything
        from featdepth.models.system import FeatDepthSystem

        seed_everything(p.seeds[0])
        init_cfg = load_config("synthetic_small", synthetic_overrides(p, data_dir, p.seeds[0]) + ["train.stage=baseline"] + list(overrides))
        init_sys = FeatDepthSystem(init_cfg, stage="baseline").to(dev).eval()
        results["untrained"] = evaluate_synthetic_system(init_sys, val_seqs, device=dev, depth_stride=p.eval_depth_stride)
        del init_sys

        # analysis ------------------------------------------------------------------------------
        fig_dir = out / "figures"
        fig_dir.mkdir(exist_ok=True)
        if landscape:
            results["analysis"] = _analysis(p, out, data_dir, val_names, val_seqs, fn_ckpt, results, dev, fig_dir)
            _write_json(out / "results.json", results)

    # real data -----------------------------------------------------------------------------
    if real and p.real is not None:
        from featdepth.experiments import realdata

        try:
            results["real"] = realdata.run_real(p, out / "real", shared_data=shared_data, device=str(p.device),
                                                slim=not keep_full_checkpoints)
        except realdata.RealDataMissing as exc:
            results["real"] = {"skipped": str(exc)}
            _log(f"real data skipped: {exc}")
        _write_json(out / "results.json", results)

    results["wall_seconds"] = time.perf_counter() - t_start
    _write_json(out / "results.json", results)
    report_path = report_mod.write_report(results, out)
    _log(f"report: {report_path} (wall time {format_duration(results['wall_seconds'])})")
    return results


def _analysis(p: ExperimentPreset, out: Path, data_dir: Path, val_names: Sequence[str], val_seqs: Sequence[Any],
              fn_ckpt: Mapping[tuple[str, int], str], results: Mapping[str, Any], dev: torch.device,
              fig_dir: Path) -> dict[str, Any]:
    """Loss landscape and FeatureNet statistics with the seed-0 (first seed) FeatureNets."""
    from featdepth.experiments import feature_stats, landscape

    seed = p.seeds[0]
    nets: dict[str, Any] = {}
    for setting in FEATURENET_SETTINGS:
        ck = fn_ckpt.get((setting, seed))
        if ck:
            nets[setting] = load_feature_net(ck, p.layers, dev)
    for run in results["runs"]:
        if run["variant"] == "joint" and run["seed"] == seed:
            nets["joint"] = load_feature_net(run["checkpoint"], p.layers, dev)
    _log(f"loss landscape ({p.landscape_pairs} pairs x {p.landscape_points} points) with FeatureNets: {', '.join(nets) or 'none'}")
    pairs = landscape.pairs_from_sequences(data_dir, val_names, p.height, p.width, num_pairs=p.landscape_pairs)
    land = landscape.compute_landscape_over_pairs(
        pairs, nets, num_points=p.landscape_points, tz_range=p.tz_range, ry_range=math.radians(p.ry_range_deg), device=dev)
    land_summary = landscape.summarize_landscape(land)
    landscape.plot_landscape(land, fig_dir / "landscape.png")
    _log("FeatureNet statistics")
    images, regions = [], []
    for seq in val_seqs:
        idx = np.linspace(0, len(seq.images) - 1, max(1, p.stats_images // max(1, len(val_seqs)))).round().astype(int)
        for i in idx:
            images.append(seq.images[i])
            regions.append(seq.regions[i])
    images_t = torch.stack(images)
    stats = feature_stats.feature_statistics(nets, images_t, regions, device=dev)
    pca_paths = feature_stats.write_pca_images(nets, images_t[:2], fig_dir, device=dev)
    return {
        "featurenet_seed": seed,
        "featurenets": list(nets),
        "landscape": landscape.landscape_to_json(land),
        "landscape_summary": land_summary,
        "feature_stats": stats,
        "figures": {"landscape": "figures/landscape.png", "pca": [str(Path(q).relative_to(out)) for q in pca_paths]},
    }
