"""The ablation's variants, the experiment presets (budgets) and their time estimates."""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

#: FeatureNet settings of the ablation: name -> (discriminative_weight, convergent_weight).
FEATURENET_SETTINGS: dict[str, tuple[float, float]] = {
    "rec": (0.0, 0.0),
    "rec_dis": (1e-3, 0.0),
    "rec_dis_cvt": (1e-3, 1e-3),
    # the weight sweep of the analysis (docs/experiments.md "Deciding the claim"): FeatureNets trained for the
    # landscape and the feature statistics only (ExperimentPreset.sweep_featurenets), no depth runs
    "rec_dis_cvt_1e-2": (1e-2, 1e-2),
    "rec_dis_cvt_1e-1": (1e-1, 1e-1),
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


def featurenet_seed_for(seeds: list[int], featurenet_seeds: list[int] | None, seed: int) -> int:
    """The FeatureNet seed of the depth run with ``seed`` (itself, or shared: ``featurenet_seeds[i % n]``)."""
    if featurenet_seeds is None:
        return seed
    if not featurenet_seeds:
        raise ValueError("featurenet_seeds must name at least one seed (or be None: one FeatureNet per seed)")
    return featurenet_seeds[list(seeds).index(seed) % len(featurenet_seeds)]


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
    #: train FeatureNets for these seeds only and share them (see ExperimentPreset.featurenet_seeds)
    featurenet_seeds: list[int] | None = None
    #: ``paper``: PoseNet output scale 0.01, auto-masking from the first step, no disparity gradient floor (the
    #: recipe of the real-clip results before 2026-11-30). ``robust``: synthetic_small's (0.1, from step 200,
    #: floor 1e-4), the recipe `own_video` trains users' videos with. See realdata.real_overrides.
    recipe: str = "paper"


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
    #: ``None``: one FeatureNet per (setting, seed). A list: FeatureNets are trained for these seeds only and
    #: shared: the depth run of the i-th seed uses the FeatureNet of ``featurenet_seeds[i % len]``. With a fixed
    #: compute budget this buys FeatureNets trained until their loss flattens instead of many barely trained ones.
    featurenet_seeds: list[int] | None = None
    #: extra FEATURENET_SETTINGS trained (first FeatureNet seed only) for the landscape and statistics alone
    sweep_featurenets: list[str] = field(default_factory=list)

    def featurenet_seed(self, seed: int) -> int:
        """The seed of the FeatureNet used by the depth run of ``seed``."""
        return featurenet_seed_for(self.seeds, self.featurenet_seeds, seed)

    def featurenet_seed_list(self) -> list[int]:
        """The seeds for which FeatureNets are trained."""
        return list(self.seeds if self.featurenet_seeds is None else self.featurenet_seeds)

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
    # "Deciding the claim" (docs/experiments.md): baseline vs fm_rec vs fm_dis_cvt with 8 seeds each on the
    # demo's synthetic recipe (synthetic_small: 6 training sequences of 60 frames), paired per seed; the real
    # clip with 4 seeds. One FeatureNet per setting (seed 0), shared by every seed, trained 2000 steps: there its
    # reconstruction loss on the held-out sequences has flattened (at 1200, the length until 2026-11-30, it was
    # ~6 % above its plateau; the training loss keeps falling as it memorises the 360 training images:
    # docs/experiments.md, "FeatureNet trained to flat"). Sized to estimate_seconds <= 85 min on 2 quiet CPU
    # cores. Its history (docs/experiments.md): the first run (1e-2 and 1e-1 weight-sweep FeatureNets, 240 real
    # steps) took about 92 idle minutes; the second 88.8 min, ~4 of them lost to other jobs; the third, with
    # 1200-step FeatureNets and the 1e-1 sweep, 81.1 min on the idle machine. To pay for the longer FeatureNets
    # the 1e-1 sweep FeatureNet is no longer part of it (`--sweep rec_dis_cvt_1e-1` adds it back, ~5 min).
    # The first two runs predate synthetic_small's model.disp_grad_floor=1e-4 (`--set model.disp_grad_floor=0`).
    "decide": ExperimentPreset(
        name="decide", height=64, width=192, batch_size=4, depth_steps=400, feature_steps=2000,
        seeds=[0, 1, 2, 3, 4, 5, 6, 7], variants=["baseline", "fm_rec", "fm_dis_cvt"], synth_sequences=6,
        synth_val_sequences=2, synth_frames=60, warmup_iters=50, landscape_points=31, landscape_pairs=3,
        featurenet_seeds=[0],
        # the real clip with the robust recipe: 8 of 8 runs learned at 200 steps, against 5 of 8 with the paper's
        # (docs/experiments.md, "decide's real part with the robust recipe")
        real=RealPreset(height=96, width=320, batch_size=4, depth_steps=200, feature_steps=400, seeds=[0, 1, 2, 3],
                        variants=["baseline", "fm_dis_cvt"], sources=["raw"], num_workers=1, featurenet_seeds=[0],
                        recipe="robust"),
    ),
    # the same comparison sized for one GPU: larger images, 5x the steps, 16 seeds (8 on the real clip, three
    # variants); four FeatureNet seeds per setting, each shared by four depth seeds
    "decide_gpu": ExperimentPreset(
        name="decide_gpu", height=128, width=416, batch_size=8, depth_steps=2000, feature_steps=4000,
        seeds=list(range(16)), variants=["baseline", "fm_rec", "fm_dis_cvt"], synth_sequences=12,
        synth_val_sequences=3, synth_frames=200, warmup_iters=200, num_workers=4, val_max_images=32,
        landscape_points=31, landscape_pairs=8, stats_images=16, featurenet_seeds=[0, 1, 2, 3],
        sweep_featurenets=["rec_dis_cvt_1e-2", "rec_dis_cvt_1e-1"],
        real=RealPreset(height=192, width=640, batch_size=4, depth_steps=1200, feature_steps=2000,
                        seeds=list(range(8)), variants=["baseline", "fm_rec", "fm_dis_cvt"], sources=["raw"],
                        num_workers=4, featurenet_seeds=[0, 1], recipe="robust"),
    ),
}


def get_preset(name: str) -> ExperimentPreset:
    """A deep copy of a named preset (``tiny``, ``cpu``, ``gpu``, ``decide``, ``decide_gpu``)."""
    if name not in PRESETS:
        raise ValueError(f"unknown experiment preset {name!r}; choose one of {', '.join(PRESETS)}")
    return copy.deepcopy(PRESETS[name])


# --------------------------------------------------------------------------------------------------
# budget estimate
# --------------------------------------------------------------------------------------------------

#: Measured seconds per training step (forward + backward + step), ResNet-18 everywhere, 64x192, batch 4,
#: float32, 2 CPU threads on a quiet 2-core machine: the `cpu` preset run of docs/experiments.md, confirmed
#: after the SSIM speed-up (depth/pose step about 0.3 s with 2 threads, 0.58 s with 1; FeatureNet 0.13 s).
#: Checked against the `decide` run of 2026-11-29 (medians of the 10-step wall intervals in its logs, robust to
#: the minutes another job shared the machine): FeatureNet 0.156 s (rec), depth/pose 0.30 s (baseline) and
#: 0.32 s (two-stage FeatDepth): 3-7 % slower than this calibration, within the spread between sessions.
CPU_SECONDS_PER_STEP: dict[str, float] = {"featurenet": 0.15, "baseline": 0.29, "depth": 0.30, "joint": 0.46}
#: FeatureNet steps with the discriminative/convergent terms (their feature gradients) cost more than the
#: reconstruction alone: 0.19-0.22 s against 0.156 s in the same `decide` run (a partly shared machine). Not
#: confirmed since: the second `decide` run (median step 0.158 s rec, 0.152 s rec+dis+cvt, 0.144 s at 1e-1; the
#: rec stage computes both terms for its log too) and the third, on the idle machine (1200 steps in 180.7 s rec,
#: 177.4 s rec+dis+cvt, 177.8 s at 1e-1). So 1.0: the terms cost nothing measurable.
DIS_CVT_FEATURENET_FACTOR = 1.0
#: Seconds per held-out image of a FeatureNet validation at 64x192 (every second epoch, up to 120 images:
#: runs.FEATURENET_VAL_OVERRIDES); measured in the fourth `decide` run: an epoch end with validation took 2.6 s
#: longer than one without (4.1-5.6 s against 1.9-2.4 s for 10 steps and the checkpoint), for 120 images.
FEATURENET_VAL_SECONDS_PER_IMAGE = 0.022
#: Every experiment FeatureNet validates every this many epochs on up to this many held-out images
#: (runs.FEATURENET_VAL_OVERRIDES is built from them, and the estimate counts them).
FEATURENET_VAL_EVERY_EPOCHS = 2
FEATURENET_VAL_MAX_IMAGES = 120
_REF_PIXELS = 64 * 192 * 4
#: Share of a 64x192 batch-4 step that does not grow with pixels x batch (per-layer overheads, the
#: optimiser). A step at ``k`` times the pixels costs ``(FIXED + (1 - FIXED) k)`` times the reference. Fitted
#: on the idle 640x192 batch-4 records (benchmarks/results/train_cpu.md, after the SSIM speed-up: baseline
#: 1.70 s, two-stage 2.15 s, where linear scaling predicts 2.9 and 3.0 s); with it the 600-step three-seed
#: run of docs/experiments.md is estimated at 40.8 min (measured 39.9; linear scaling said 45.8).
FIXED_STEP_SHARE = 0.4
#: Step time under ``train.amp=bf16`` relative to float32 (measured on the demo: about 0.75).
BF16_STEP_FACTOR = 0.75
#: Extra seconds per real KITTI sample (3 frames of 1242x375 PNG, resize, jitter) not hidden by the
#: loader worker (measured: 96x320 steps took 0.63-0.69 s in all).
#: Recalibrated on `decide`'s real runs (96x320: baseline 0.68-0.76 s, two-stage 0.72-0.82 s per step; the
#: 2026-11-25 run: 0.63-0.69 s).
REAL_DATA_SECONDS_PER_SAMPLE = 0.02


def _step_seconds(stage: str, height: int, width: int, batch: int, device: str, amp: str = "none") -> float:
    k = (height * width * batch) / _REF_PIXELS
    s = CPU_SECONDS_PER_STEP[stage] * (FIXED_STEP_SHARE + (1.0 - FIXED_STEP_SHARE) * k)
    if amp == "bf16":
        s *= BF16_STEP_FACTOR
    if device.startswith("cuda"):
        s = max(s / 25.0, 0.03)  # a guess, never measured: no GPU was lent so far
    return s


def _featurenet_factor(setting: str) -> float:
    """Relative cost of a FeatureNet step of this FEATURENET_SETTINGS entry (dis/cvt terms cost extra)."""
    return DIS_CVT_FEATURENET_FACTOR if any(FEATURENET_SETTINGS[setting]) else 1.0


def _device_name(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def estimate_seconds(preset: ExperimentPreset, *, real: bool = True, landscape: bool = True,
                     synthetic: bool = True, device: str | None = None, amp: str = "none") -> dict[str, float]:
    """Rough wall-clock estimate of :func:`run_experiment` for ``preset`` (a quiet machine).

    Args:
        device: estimate for this device (``cpu``, ``cuda``) instead of the preset's (``auto``: this machine's).
        amp: ``train.amp`` of the synthetic runs (``--set train.amp=bf16``: their steps take
            :data:`BF16_STEP_FACTOR` of float32; the real-data runs keep float32).

    Returns ``{"synthetic": s, "featurenets": s, "real": s, "analysis": s, "total": s}``.
    """
    dev = _device_name(device if device is not None else preset.device)
    p = preset
    variants = [VARIANTS[v] for v in p.variants]
    synth = sum(_step_seconds(v.stage, p.height, p.width, p.batch_size, dev, amp) * p.depth_steps for v in variants) * len(p.seeds)
    settings = {v.featurenet for v in variants if v.featurenet}
    settings |= {s for s in p.sweep_featurenets}
    n_fns = len(settings) * len(p.featurenet_seed_list())
    fns = sum(_featurenet_factor(s) for s in settings) * len(p.featurenet_seed_list()) * p.feature_steps * _step_seconds(
        "featurenet", p.height, p.width, p.batch_size, dev, amp)
    steps_per_epoch = max(1, p.synth_sequences * p.synth_frames // p.batch_size)
    n_vals = p.feature_steps // (FEATURENET_VAL_EVERY_EPOCHS * steps_per_epoch) + 1  # and at the end
    val_s = FEATURENET_VAL_SECONDS_PER_IMAGE * (p.height * p.width) / (64 * 192)
    val_images = min(FEATURENET_VAL_MAX_IMAGES, p.synth_val_sequences * p.synth_frames)
    fns += n_fns * n_vals * val_images * (val_s / 25.0 if dev.startswith("cuda") else val_s)
    n_runs = len(variants) * len(p.seeds)
    val_frames = p.synth_val_sequences * p.synth_frames
    infer = 0.03 / 25.0 if dev.startswith("cuda") else 0.03  # per evaluated frame; the metrics stay on the CPU
    evaluation = n_runs * (3.0 + val_frames * (0.01 + infer / max(1, p.eval_depth_stride)) * (p.height * p.width) / (64 * 192))
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
        r_fn_seeds = len(r.seeds if r.featurenet_seeds is None else r.featurenet_seeds)
        per_source_fns = sum(_featurenet_factor(s) for s in rsettings) * r_fn_seeds * r.feature_steps * (
            _step_seconds("featurenet", r.height, r.width, r.batch_size, dev) + 0.02 * r.batch_size)
        real_s = (per_source * len(r.seeds) + per_source_fns) * len(r.sources) + 10.0 * len(rv) * len(r.seeds) * len(r.sources)
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
