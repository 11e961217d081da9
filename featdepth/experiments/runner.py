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
setting, seed) under ``DIR/featurenets/<setting>/seed<k>`` and shared by the depth runs that use it
(with ``featurenet_seeds``, e.g. the ``decide`` preset, only for those seeds, and shared across all depth
seeds; ``sweep_featurenets`` adds FeatureNets for the landscape and statistics only). Each run keeps its resolved ``config.yaml`` and ``log.jsonl`` in ``DIR/runs/<variant>/seed<k>`` (the
trainer writes them) plus ``result.json`` (the evaluation). A finished run (``result.json`` present)
is not trained again when the command is repeated with the same ``--out``: an interrupted experiment
resumes where it stopped.

Evaluation on held-out synthetic sequences (:func:`evaluate_synthetic_model`): per image, the
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
import math
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from featdepth.config import load_config
from featdepth.data.factory import ensure_synthetic_data, synthetic_sequence_names
from featdepth.evaluation.loop import SequenceData, evaluate_pose_sequences, load_folder_sequence, predict_scaled_disparities
from featdepth.experiments import feature_stats, landscape, realdata
from featdepth.experiments import report as report_mod
from featdepth.experiments.presets import (
    FEATURENET_SETTINGS,
    VARIANTS,
    ExperimentPreset,
    Variant,
    estimate_seconds,
    format_duration,
    get_preset,
)
from featdepth.experiments.regions import EVAL_REGIONS, evaluate_region_depth
from featdepth.experiments.runs import (
    featurenet_curve,
    load_feature_net,
    log,
    synthetic_overrides,
    train_featurenet,
    train_variant,
)
from featdepth.experiments.stats import paired_statistics
from featdepth.inference.loading import load
from featdepth.inference.model import Model
from featdepth.models.stage import StageNetworks
from featdepth.utils.files import read_json, write_json
from featdepth.utils.runtime import resolve_device, seed_everything

__all__ = ["evaluate_synthetic_model", "BudgetOverrides", "RunOptions", "configure_preset", "run_experiment", "amp_of",
           "estimate_line"]


# --------------------------------------------------------------------------------------------------
# evaluation on the synthetic held-out sequences
# --------------------------------------------------------------------------------------------------


def evaluate_synthetic_model(model: Model, sequences: Sequence[SequenceData], *,
                             region_ids: Sequence[int] = EVAL_REGIONS, max_depth: float = 80.0,
                             depth_stride: int = 1) -> dict[str, Any]:
    """Depth overall and per region, and pose, on loaded held-out sequences, through the one evaluation
    loop (:mod:`featdepth.evaluation.loop`) plus the per-region metrics of :mod:`featdepth.experiments.regions`.

    Args:
        sequences: :class:`~featdepth.evaluation.loop.SequenceData` with depths, regions and poses.
        depth_stride: evaluate depth on every ``depth_stride``-th frame (the pose uses every frame).

    Returns:
        ``{"depth": evaluate_region_depth(...), "ate5", "ate5_std", "zero_motion_ate5", "t_err", "r_err", "images"}``.
    """
    gts, preds, regs = [], [], []
    for seq in sequences:
        if not seq.depths or not seq.regions:
            raise ValueError(f"sequence {seq.name} has no GT depth or region labels")
        idx = list(range(0, len(seq.images), max(1, int(depth_stride))))
        scaled = predict_scaled_disparities(model, seq.images[idx])
        gts.extend(seq.depths[i] for i in idx)
        regs.extend(seq.regions[i] for i in idx)
        preds.extend(1.0 / d for d in scaled)  # depth = 1 / scaled disparity (disp_to_depth)
    out: dict[str, Any] = {
        "depth": evaluate_region_depth(gts, preds, regs, region_ids=region_ids, max_depth=max_depth),
        "images": len(gts),
    }
    pose = evaluate_pose_sequences(model, sequences)
    out.update({k: pose[k] for k in ("ate5", "ate5_std", "zero_motion_ate5", "t_err", "r_err", "heading_error_deg",
                                     "no_rotation_r_err", "no_rotation_heading_error_deg") if k in pose})
    return out


# --------------------------------------------------------------------------------------------------
# the experiment
# --------------------------------------------------------------------------------------------------


@dataclass
class _Job:
    kind: str  # featurenet | variant
    name: str
    seed: int


def _plan(variants: Sequence[Variant], seeds: Sequence[int], featurenet_seeds: Sequence[int] | None = None,
          sweep: Sequence[str] = ()) -> list[_Job]:
    """Training jobs in order: every FeatureNet before the first depth run that needs it.

    ``featurenet_seeds=None`` trains one FeatureNet per (setting, seed) just before that seed's runs; a list
    trains the FeatureNets of those seeds first (shared by all seeds). ``sweep`` settings are trained for the
    first FeatureNet seed only (for the analysis).
    """
    settings = sorted({v.featurenet for v in variants if v.featurenet}, key=list(FEATURENET_SETTINGS).index)
    jobs: list[_Job] = []
    fn_seeds = list(seeds) if featurenet_seeds is None else list(featurenet_seeds)
    shared = featurenet_seeds is not None
    sweep_jobs = [_Job("featurenet", s, fn_seeds[0]) for s in sweep if s not in settings] if fn_seeds else []
    if shared:
        jobs += [_Job("featurenet", s, k) for k in fn_seeds for s in settings] + sweep_jobs
    for seed in seeds:
        if not shared:
            jobs += [_Job("featurenet", s, seed) for s in settings]
            if fn_seeds and seed == fn_seeds[0]:
                jobs += sweep_jobs
        jobs += [_Job("variant", v.name, seed) for v in variants]
    return jobs


@dataclass(frozen=True)
class BudgetOverrides:
    """Budget overrides of an experiment preset (``None`` keeps the preset's value); see :func:`configure_preset`.

    Attributes:
        seeds: seeds of the synthetic runs (and, without ``real_seeds``, of the real-data runs).
        variants: names of :data:`VARIANTS`; they also restrict the real-data part to those of its variants
            that are among them (unless ``real_variants`` is given).
        steps: depth/pose training steps per synthetic run.
        feature_steps: FeatureNet stage steps of the synthetic runs.
        real_steps, real_feature_steps: the same for the real-data runs.
        real_sources: real clips to train on, ``raw`` and/or ``odom``.
        real_seeds: seeds of the real-data runs.
        real_variants: variants of the real-data runs (names of :data:`VARIANTS`).
        real_recipe: ``paper`` or ``robust`` (``RealPreset.recipe``).
        real_size: ``(H, W)`` of the real-data runs, multiples of 32.
        device: ``cpu``, ``cuda``, ``cuda:N`` or ``auto``.
        featurenet_seeds: train the synthetic FeatureNets for these seeds only and share them across the
            depth runs (``"each"``: one per seed); see ``ExperimentPreset.featurenet_seeds``.
        sweep_featurenets: FeatureNet settings (:data:`FEATURENET_SETTINGS` names) trained for the landscape and
            the feature statistics only, instead of the preset's (empty: none).
    """

    seeds: Sequence[int] | None = None
    variants: Sequence[str] | None = None
    steps: int | None = None
    feature_steps: int | None = None
    real_steps: int | None = None
    real_feature_steps: int | None = None
    real_sources: Sequence[str] | None = None
    real_seeds: Sequence[int] | None = None
    real_size: Sequence[int] | None = None
    device: str | None = None
    featurenet_seeds: Sequence[int] | str | None = None
    real_variants: Sequence[str] | None = None
    real_recipe: str | None = None
    sweep_featurenets: Sequence[str] | None = None

    def __post_init__(self) -> None:
        # sequences become tuples, so that a frozen instance is really immutable
        for name in ("seeds", "variants", "real_sources", "real_seeds", "real_size", "real_variants", "sweep_featurenets"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, tuple(value))
        if self.featurenet_seeds is not None and not isinstance(self.featurenet_seeds, str):
            object.__setattr__(self, "featurenet_seeds", tuple(self.featurenet_seeds))


@dataclass(frozen=True)
class RunOptions:
    """What :func:`run_experiment` runs and keeps.

    Attributes:
        synthetic: run the synthetic part (training, evaluation, landscape, statistics); ``False`` with
            ``real=True`` runs the real-data part alone.
        real: also run the real-data part (skipped with a note when the data is absent).
        landscape: also compute the loss landscape and the FeatureNet statistics (synthetic part only).
        shared_data: folder holding ``kitti_raw_tiny`` and ``kitti_odom_06_tiny`` (default: found beside
            the checkout, or ``$FEATDEPTH_SHARED_DATA``).
        keep_full_checkpoints: keep the trainer's checkpoints (with optimiser state, resumable) instead of
            replacing them by ``model.pt`` (weights and config only) once a run is finished.
    """

    synthetic: bool = True
    real: bool = True
    landscape: bool = True
    shared_data: str | Path | None = None
    keep_full_checkpoints: bool = False


def configure_preset(preset: str | ExperimentPreset, budget: BudgetOverrides | None = None) -> ExperimentPreset:
    """A copy of ``preset`` with the budget overrides of ``budget`` (``None`` fields keep the preset's value).

    Without ``budget.real_seeds`` the real-data part uses the first seeds of ``budget.seeds`` (as many as
    the preset's real part has). Without ``budget.real_variants`` it runs those of its variants that are in
    ``budget.variants`` (all of them without ``budget.variants``); when none is, it has no variants and is
    skipped. ``budget.real_size`` is ``(H, W)`` of the real-data runs, multiples of 32.

    Raises:
        ValueError: unknown variants or real-data sources, a bad size, or nothing to run.
    """
    b = budget if budget is not None else BudgetOverrides()
    p = get_preset(preset) if isinstance(preset, str) else copy.deepcopy(preset)
    if b.seeds is not None:
        p.seeds = [int(s) for s in b.seeds]
    for given in (b.variants, b.real_variants):
        unknown = [v for v in given or () if v not in VARIANTS]
        if unknown:
            raise ValueError(f"unknown variants {unknown}; choose from {', '.join(VARIANTS)}")
    if b.variants is not None:
        p.variants = list(dict.fromkeys(b.variants))
    if b.steps is not None:
        p.depth_steps = int(b.steps)
    if b.feature_steps is not None:
        p.feature_steps = int(b.feature_steps)
    if b.device is not None:
        p.device = b.device
    if b.featurenet_seeds is not None:
        if isinstance(b.featurenet_seeds, str):
            if b.featurenet_seeds != "each":
                raise ValueError(f"featurenet_seeds must be seeds or 'each', got {b.featurenet_seeds!r}")
            p.featurenet_seeds = None
        elif not b.featurenet_seeds:
            raise ValueError("featurenet_seeds must name at least one seed (or 'each')")
        else:
            p.featurenet_seeds = [int(s) for s in b.featurenet_seeds]
    if b.sweep_featurenets is not None:
        unknown = [n for n in b.sweep_featurenets if n not in FEATURENET_SETTINGS]
        if unknown:
            raise ValueError(f"unknown FeatureNet setting(s) {', '.join(unknown)} for the weight sweep; choose from "
                             f"{', '.join(FEATURENET_SETTINGS)}")
        p.sweep_featurenets = list(dict.fromkeys(b.sweep_featurenets))
    if p.real is not None:
        p.real.seeds = list(p.real.seeds) if b.seeds is None else [int(s) for s in b.seeds][: max(1, len(p.real.seeds))]
        if b.real_steps is not None:
            p.real.depth_steps = int(b.real_steps)
        if b.real_feature_steps is not None:
            p.real.feature_steps = int(b.real_feature_steps)
        if b.real_seeds is not None:
            p.real.seeds = [int(x) for x in b.real_seeds]
        if b.real_recipe is not None:
            p.real.recipe = b.real_recipe
        if p.real.recipe not in realdata.REAL_RECIPES:
            raise ValueError(f"unknown real-data recipe {p.real.recipe!r}; choose {' or '.join(realdata.REAL_RECIPES)}")
        if b.real_variants is not None:
            p.real.variants = list(dict.fromkeys(b.real_variants))
        elif b.variants is not None:
            p.real.variants = [v for v in p.real.variants if v in b.variants]
        if b.real_size is not None:
            h, w = (int(x) for x in b.real_size)
            if h < 32 or w < 32 or h % 32 or w % 32:
                raise ValueError(f"real_size must be multiples of 32 (H, W), got {list(b.real_size)}")
            p.real.height, p.real.width = h, w
        if b.real_sources is not None:
            bad = [x for x in b.real_sources if x not in ("raw", "odom")]
            if bad:
                raise ValueError(f"unknown real-data sources {bad}; choose raw and/or odom")
            p.real.sources = list(dict.fromkeys(b.real_sources))
    if not p.variants or not p.seeds:
        raise ValueError("nothing to run: no variants or no seeds")
    return p


def amp_of(overrides: Sequence[str]) -> str:
    """The ``train.amp`` set by config overrides (the last one wins; ``none`` without one)."""
    amp = "none"
    for o in overrides:
        key, _, value = o.partition("=")
        if key.strip() == "train.amp":
            amp = value.strip()
    return amp


def estimate_line(est: Mapping[str, float]) -> str:
    """One line: the estimated total time and its parts (:func:`~featdepth.experiments.presets.estimate_seconds`)."""
    parts = ", ".join(f"{k} {format_duration(v)}" for k, v in est.items() if k != "total")
    return f"estimated time on a quiet machine: {format_duration(est['total'])} ({parts})"


def run_experiment(
    out_dir: str | Path,
    preset: str | ExperimentPreset = "cpu",
    budget: BudgetOverrides | None = None,
    options: RunOptions | None = None,
    *,
    overrides: Sequence[str] = (),
    real_overrides: Sequence[str] = (),
    command: str | None = None,
) -> dict[str, Any]:
    """Train, evaluate and analyse every variant; write ``results.json`` and ``report.md`` in ``out_dir``.

    Args:
        out_dir: output folder (created). Layout: ``data/`` (generated synthetic scenes),
            ``featurenets/<setting>/seed<k>/``, ``runs/<variant>/seed<k>/``, ``real/<source>/...``,
            ``figures/``, ``results.json``, ``report.md``.
        preset: a name of :data:`PRESETS` or an :class:`ExperimentPreset`.
        budget: overrides of the preset's budget (seeds, variants, steps, real-data budget, device; see
            :class:`BudgetOverrides` and :func:`configure_preset`); ``None``: the preset as it is.
        options: which parts run (synthetic, real, landscape), where the real data is and which
            checkpoints are kept (:class:`RunOptions`); ``None``: everything, default data folder, slim
            checkpoints.
        overrides: config ``key=value`` overrides applied to every synthetic run.
        real_overrides: config ``key=value`` overrides applied to every real-data run (after the real-clip
            recipe of :func:`featdepth.experiments.realdata.real_overrides`); checked before anything runs.
        command: the command line, recorded in the report.

    Returns:
        The content of ``results.json``; its ``paired_stats`` holds every variant's per-seed difference from
        the baseline with t and bootstrap intervals (:func:`featdepth.experiments.stats.paired_statistics`).
    """

    t_start = time.perf_counter()
    opts = options if options is not None else RunOptions()
    real, synthetic, keep_full_checkpoints = opts.real, opts.synthetic, opts.keep_full_checkpoints
    p = configure_preset(preset, budget)  # raises when there is nothing to run
    real_part = real and p.real is not None and bool(p.real.variants)
    if not synthetic and not real_part:
        raise ValueError("nothing to run: the synthetic part is skipped and "
                         + ("so is the real-data part" if not real or p.real is None else
                            "none of the real-data part's variants is among the variants chosen (choose them "
                            "with --real-variants)"))
    if real_overrides:
        load_config("synthetic_small", list(real_overrides))  # a bad key or value fails now, not after the synthetic part

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    est = estimate_seconds(p, real=real, landscape=opts.landscape and synthetic, synthetic=synthetic,
                           amp=amp_of(overrides))
    log(estimate_line(est))  # first, before anything runs
    if synthetic:
        log(f"preset {p.name}: {len(p.variants)} variants x {len(p.seeds)} seeds, {p.depth_steps} depth steps "
             f"(+{p.feature_steps} FeatureNet steps per shared FeatureNet), {p.height}x{p.width}, batch {p.batch_size}")
    if real and p.real is not None and not real_part:
        log("real data: skipped, none of its variants is among the variants chosen (choose them with --real-variants)")
    if real_part:
        r = p.real
        log(f"real data ({', '.join(r.sources)}): {', '.join(r.variants)} x seeds {r.seeds}, {r.depth_steps} depth steps "
             f"(+{r.feature_steps} FeatureNet steps), {r.height}x{r.width}, batch {r.batch_size}")

    dev = resolve_device(p.device)
    data_dir = out / "data"
    variant_objs = [VARIANTS[v] for v in p.variants]
    results: dict[str, Any] = {
        "preset": p.as_dict(),
        "command": command,
        "estimate_seconds": est,
        "overrides": list(overrides),
        "real_overrides": list(real_overrides),
        "device": str(dev),
        "torch": torch.__version__,
        "variants": {v.name: asdict(v) for v in variant_objs},
        "featurenets": {},
        "runs": [],
    }

    if synthetic:
        # data --------------------------------------------------------------------------------
        cfg0 = load_config("synthetic_small", synthetic_overrides(p, data_dir, p.seeds[0]) + list(overrides))
        log(f"synthetic data in {data_dir}")
        ensure_synthetic_data(cfg0)
        _, val_names = synthetic_sequence_names(cfg0)
        val_seqs = [load_folder_sequence(data_dir, n, p.height, p.width) for n in val_names]
        results["val_sequences"] = val_names

        # training + evaluation ---------------------------------------------------------------
        jobs = _plan(variant_objs, p.seeds, p.featurenet_seeds, p.sweep_featurenets)
        fn_ckpt: dict[tuple[str, int], str] = {}
        for i, job in enumerate(jobs, 1):
            base = synthetic_overrides(p, data_dir, job.seed) + list(overrides)
            if job.kind == "featurenet":
                d = out / "featurenets" / job.name / f"seed{job.seed}"
                log(f"({i}/{len(jobs)}) FeatureNet '{job.name}' seed {job.seed} -> {d}")
                s = train_featurenet(base, job.name, d, slim=not keep_full_checkpoints)
                fn_ckpt[(job.name, job.seed)] = s["checkpoint"]
                results["featurenets"].setdefault(job.name, {})[str(job.seed)] = {
                    "checkpoint": s["checkpoint"], "steps": s.get("steps"), "wall_seconds": s.get("wall_seconds"),
                    "val": s.get("val", {}), "out_dir": str(d), "curve": featurenet_curve(d / "log.jsonl")}
                continue
            v = VARIANTS[job.name]
            d = out / "runs" / v.name / f"seed{job.seed}"
            log(f"({i}/{len(jobs)}) {v.name} seed {job.seed} -> {d}")
            fn_key = (v.featurenet, p.featurenet_seed(job.seed))
            cfg, s = train_variant(base, v, d, feature_checkpoint=fn_ckpt.get(fn_key) if v.featurenet else None,
                                   slim=not keep_full_checkpoints)
            result_path = d / "result.json"
            if result_path.is_file() and s.get("reused"):
                ev = read_json(result_path)["eval"]
            else:
                system = load(s["checkpoint"], device=dev, backend="eager")
                ev = evaluate_synthetic_model(system, val_seqs, depth_stride=p.eval_depth_stride)
                del system
            run = {"variant": v.name, "seed": job.seed, "out_dir": str(d), "checkpoint": s["checkpoint"],
                   "steps": s.get("steps"), "wall_seconds": s.get("wall_seconds"),
                   "featurenet_checkpoint": fn_ckpt.get(fn_key) if v.featurenet else None, "eval": ev}
            write_json(result_path, run)
            results["runs"].append(run)
            write_json(out / "results.json", results)  # partial results survive an interruption
            a = ev["depth"]["all"]["metrics"]
            tl = ev["depth"].get("textureless", {}).get("metrics", {})
            log(f"    abs_rel {a.get('abs_rel', float('nan')):.4f} (textureless {tl.get('abs_rel', float('nan')):.4f}), "
                 f"ATE5 {ev.get('ate5', float('nan')):.4f} m")
        write_json(out / "results.json", results)

        # untrained reference ---------------------------------------------------------------

        seed_everything(p.seeds[0])
        init_cfg = load_config("synthetic_small", synthetic_overrides(p, data_dir, p.seeds[0]) + ["train.stage=baseline"] + list(overrides))
        init_sys = StageNetworks(init_cfg, stage="baseline").to(dev).eval()
        init_model = Model.from_networks(init_sys.depth_net, init_sys.pose_net, init_cfg, stage="baseline", source="untrained")
        results["untrained"] = evaluate_synthetic_model(init_model, val_seqs, depth_stride=p.eval_depth_stride)
        del init_sys

        # analysis ------------------------------------------------------------------------------
        fig_dir = out / "figures"
        fig_dir.mkdir(exist_ok=True)
        if opts.landscape:
            results["analysis"] = _analysis(p, out, data_dir, val_names, val_seqs, fn_ckpt, results, dev, fig_dir)
            write_json(out / "results.json", results)

    # real data -----------------------------------------------------------------------------
    if real_part:

        try:
            results["real"] = realdata.run_real(p, out / "real", shared_data=opts.shared_data, device=str(p.device),
                                                slim=not keep_full_checkpoints, overrides=real_overrides)
        except realdata.RealDataMissing as exc:
            results["real"] = {"skipped": str(exc)}
            log(f"real data skipped: {exc}")
        write_json(out / "results.json", results)

    # paired statistics: every variant against the baseline, seed by seed ----------------------
    results["paired_stats"] = paired_statistics(results)
    results["wall_seconds"] = time.perf_counter() - t_start
    write_json(out / "results.json", results)
    report_path = report_mod.write_report(results, out)
    log(f"report: {report_path} (wall time {format_duration(results['wall_seconds'])})")
    return results


def _analysis(p: ExperimentPreset, out: Path, data_dir: Path, val_names: Sequence[str], val_seqs: Sequence[Any],
              fn_ckpt: Mapping[tuple[str, int], str], results: Mapping[str, Any], dev: torch.device,
              fig_dir: Path) -> dict[str, Any]:
    """Loss landscape and FeatureNet statistics with the FeatureNets of the first seed (and the sweep's)."""

    seed = p.featurenet_seed(p.seeds[0])
    nets: dict[str, Any] = {}
    for setting in FEATURENET_SETTINGS:
        ck = fn_ckpt.get((setting, seed))
        if ck:
            nets[setting] = load_feature_net(ck, p.layers, dev)
    for run in results["runs"]:
        if run["variant"] == "joint" and run["seed"] == p.seeds[0]:
            nets["joint"] = load_feature_net(run["checkpoint"], p.layers, dev)
    log(f"loss landscape ({p.landscape_pairs} pairs x {p.landscape_points} points) with FeatureNets: {', '.join(nets) or 'none'}")
    pairs = landscape.pairs_from_sequences(data_dir, val_names, p.height, p.width, num_pairs=p.landscape_pairs)
    land = landscape.compute_landscape_over_pairs(
        pairs, nets, num_points=p.landscape_points, tz_range=p.tz_range, ry_range=math.radians(p.ry_range_deg), device=dev)
    land_summary = landscape.summarize_landscape(land)
    landscape.plot_landscape(land, fig_dir / "landscape.png")
    log("FeatureNet statistics")
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
