"""The experiment report: Markdown tables and PNG figures from ``results.json``.

:func:`write_report` can be re-run on a finished (or partly finished) experiment folder with
``featdepth experiment report DIR``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

__all__ = ["mean_sd", "fmt_mean_sd", "aggregate_runs", "write_report", "plot_region_bars"]

DEPTH_KEYS = ("abs_rel", "sq_rel", "rmse", "a1")
REPORT_REGIONS = ("textureless", "textured", "road", "object")


def mean_sd(values: Iterable[float]) -> tuple[float, float, int]:
    """Mean, sample standard deviation (ddof 1; NaN for one value) and count of the finite values."""
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=np.float64)
    if v.size == 0:
        return float("nan"), float("nan"), 0
    sd = float(np.std(v, ddof=1)) if v.size > 1 else float("nan")
    return float(np.mean(v)), sd, int(v.size)


def fmt_mean_sd(values: Iterable[float], digits: int = 3) -> str:
    m, sd, n = mean_sd(values)
    if n == 0:
        return "–"
    if n == 1 or not np.isfinite(sd):
        return f"{m:.{digits}f}"
    return f"{m:.{digits}f} ± {sd:.{digits}f}"


def _fmt(x: Any, digits: int = 3) -> str:
    if x is None:
        return "–"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    try:
        xf = float(x)
    except (TypeError, ValueError):
        return str(x)
    if not np.isfinite(xf):
        return "–"
    if xf != 0 and (abs(xf) < 10 ** (-digits) or abs(xf) >= 1e4):
        return f"{xf:.2e}"
    return f"{xf:.{digits}f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for r in rows:
        lines.append("| " + " | ".join(str(c) for c in r) + " |")
    return "\n".join(lines)


def aggregate_runs(runs: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """``{variant: {"seeds": [...], region: {metric: [values over seeds]}, "ate5": [...]}}``."""
    out: dict[str, dict[str, Any]] = {}
    for run in runs:
        a = out.setdefault(run["variant"], {"seeds": [], "ate5": [], "wall_seconds": []})
        a["seeds"].append(run["seed"])
        a["ate5"].append(run["eval"].get("ate5"))
        a["wall_seconds"].append(run.get("wall_seconds"))
        for region, r in run["eval"]["depth"].items():
            reg = a.setdefault(region, {k: [] for k in DEPTH_KEYS})
            for k in DEPTH_KEYS:
                reg[k].append(r["metrics"].get(k))
    return out


def plot_region_bars(agg: Mapping[str, Mapping[str, Any]], path: Path, metric: str = "abs_rel",
                     regions: Sequence[str] = ("all",) + REPORT_REGIONS) -> Path:
    """Grouped bars: regions on the x axis, one bar per variant (mean over seeds, sd as error bar)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    variants = list(agg)
    regions = [r for r in regions if any(r in agg[v] for v in variants)]
    x = np.arange(len(regions))
    width = 0.8 / max(1, len(variants))
    fig, ax = plt.subplots(figsize=(1.6 + 1.3 * len(regions), 3.2))
    for i, v in enumerate(variants):
        means, sds = [], []
        for r in regions:
            m, sd, _ = mean_sd(agg[v].get(r, {}).get(metric, []))
            means.append(m)
            sds.append(sd if np.isfinite(sd) else 0.0)
        ax.bar(x + (i - (len(variants) - 1) / 2) * width, means, width, yerr=sds, label=v, capsize=2)
    ax.set_xticks(x)
    ax.set_xticklabels(regions, fontsize=8)
    ax.set_ylabel(metric)
    ax.legend(fontsize=7, ncol=min(5, len(variants)))
    ax.set_title(f"{metric} per region (mean ± sd over seeds)", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _rel(path: str | Path, root: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)


def write_report(results: Mapping[str, Any], out_dir: str | Path) -> Path:
    """Write ``out_dir/report.md`` (and ``out_dir/figures/*.png``) from the results dict; returns the path.

    One section function per part of the report, in this order: setup, synthetic depth and pose (overall,
    per region, change relative to the baseline, every run), loss landscape, FeatureNet statistics, real
    data, paired differences against the baseline (only when ``results`` holds ``paired_stats``), caveats. Each returns its Markdown blocks; the blocks are joined by newlines.
    """
    out = Path(out_dir)
    fig_dir = out / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    runs = results.get("runs", [])
    agg = aggregate_runs(runs)
    md = _setup_section(results)
    if not runs and not results.get("untrained"):
        md.append("## Synthetic scenes\n\nNot run in this experiment (`--no-synthetic`).\n")
    else:
        md += _synthetic_overall_section(results, agg)
        md += _region_section(runs, agg, fig_dir)
        md += _baseline_change_section(agg)
        md += _runs_section(results, out)
    md += _featurenet_section(results, fig_dir)
    an = results.get("analysis")
    if an:
        md += _landscape_section(an)
        md += _feature_stats_section(an)
    real = results.get("real")
    if real:
        md += _real_section(real, results.get("preset", {}))
    paired = results.get("paired_stats")
    if paired and (paired.get("synthetic") or paired.get("real")):
        md += _paired_section(paired)
    md += _caveats_section()
    path = out / "report.md"
    path.write_text("\n".join(md))
    return path


def _setup_section(results: Mapping[str, Any]) -> list[str]:
    """Title and the Setup table: preset, device, budget, data, overrides, time; the variants."""
    p = results.get("preset", {})
    md = ["# FeatDepth ablations: report\n",
          "Generated by `featdepth experiment` (featdepth.experiments). All numbers below were measured in this "
          "run; nothing is copied from the paper except where it says so.\n",
          "## Setup\n"]
    if results.get("command"):
        md.append(f"Command: `{results['command']}`\n")
    setup_rows = [
        ("preset", p.get("name")), ("device", results.get("device")), ("torch", results.get("torch")),
        ("resolution (H×W)", f"{p.get('height')}×{p.get('width')}"), ("batch", p.get("batch_size")),
        ("depth/pose steps per run", p.get("depth_steps")), ("FeatureNet steps (shared per setting and seed)", p.get("feature_steps")),
        ("seeds", ", ".join(str(s) for s in p.get("seeds", []))), ("variants", ", ".join(p.get("variants", []))),
        ("networks", f"ResNet-{p.get('layers')} depth, pose and FeatureNet, random init"),
        ("synthetic data", f"{p.get('synth_sequences')} training + {p.get('synth_val_sequences')} held-out sequences × "
                           f"{p.get('synth_frames')} frames (`data/`)"),
        ("extra overrides", ", ".join(results.get("overrides", [])) or "none"),
        *([("extra overrides of the real-data runs", ", ".join(results["real_overrides"]))]
          if results.get("real_overrides") else []),
        ("estimated time", _fmt_duration(results.get("estimate_seconds", {}).get("total"))),
        ("wall time", _fmt_duration(results.get("wall_seconds"))),
    ]
    md.append(_table(["setting", "value"], setup_rows) + "\n")
    md.append("Variants: " + "; ".join(f"`{k}`: {v.get('description', '')}" for k, v in results.get("variants", {}).items()) + ".\n")
    md.append("Every run's resolved config (`config.yaml`), training log (`log.jsonl`) and evaluation (`result.json`) "
              "are kept under `runs/<variant>/seed<k>/`; the shared FeatureNet stages under "
              "`featurenets/<setting>/seed<k>/`.\n")
    return md


def _synthetic_overall_section(results: Mapping[str, Any], agg: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Depth (all valid pixels) and ATE5 per variant, mean ± sd over seeds, plus the untrained references."""
    md = ["## Depth and pose on the held-out synthetic sequences\n",
          f"Held-out sequences: {', '.join(results.get('val_sequences', []))}. Per image: median scaling on all valid "
          "pixels (`1e-3 < gt < 80`; the sky at exactly 80 m is excluded), clamp to [1e-3, 80], metrics per region "
          "with that one scale; means over images, then mean ± sd over seeds. ATE: 5-frame snippets (metres).\n"]
    rows = []
    for v, a in agg.items():
        rows.append([f"`{v}`", len(a["seeds"])] + [fmt_mean_sd(a.get("all", {}).get(k, [])) for k in DEPTH_KEYS]
                    + [fmt_mean_sd(a["ate5"], 4)])
    un = results.get("untrained")
    if un:
        rows.append(["untrained (random init)", 1] + [_fmt(un["depth"]["all"]["metrics"].get(k)) for k in DEPTH_KEYS]
                    + [_fmt(un.get("ate5"), 4)])
        rows.append(["zero motion", "–", "–", "–", "–", "–", _fmt(un.get("zero_motion_ate5"), 4)])
    md.append(_table(["variant", "seeds", "abs_rel", "sq_rel", "rmse", "a1", "ATE5 (m)"], rows) + "\n")
    return md


def _region_section(runs: Sequence[Mapping[str, Any]], agg: Mapping[str, Mapping[str, Any]], fig_dir: Path) -> list[str]:
    """One depth table per region of :data:`REPORT_REGIONS`; writes and links the per-region bar charts."""
    md = ["### Per region\n"]
    for region in REPORT_REGIONS:
        if not any(region in a for a in agg.values()):
            continue
        rows = [[f"`{v}`"] + [fmt_mean_sd(a.get(region, {}).get(k, [])) for k in DEPTH_KEYS] for v, a in agg.items()]
        n_img = [r["eval"]["depth"].get(region, {}).get("images") for r in runs[:1]]
        md.append(f"**{region}** (images with enough pixels of the region: {n_img[0] if n_img else '–'})\n")
        md.append(_table(["variant", "abs_rel", "sq_rel", "rmse", "a1"], rows) + "\n")
    if agg:
        plot_region_bars(agg, fig_dir / "region_abs_rel.png", "abs_rel")
        plot_region_bars(agg, fig_dir / "region_sq_rel.png", "sq_rel")
        md.append("![abs_rel per region](figures/region_abs_rel.png)\n")
        md.append("![sq_rel per region](figures/region_sq_rel.png)\n")
    return md


def _baseline_change_section(agg: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Relative change (%) of abs_rel and sq_rel of every variant against ``baseline`` (empty without one)."""
    if "baseline" not in agg or len(agg) <= 1:
        return []
    md = ["### Change relative to the baseline (mean over seeds)\n",
          "Negative = lower error than the photometric-only baseline. The paper's claim predicts the largest "
          "gain on textureless pixels.\n"]
    rows = []
    for v, a in agg.items():
        if v == "baseline":
            continue
        row = [f"`{v}`"]
        for region in ("all", "textureless", "textured"):
            for k in ("abs_rel", "sq_rel"):
                b, _, _ = mean_sd(agg["baseline"].get(region, {}).get(k, []))
                m, _, _ = mean_sd(a.get(region, {}).get(k, []))
                row.append(f"{100 * (m / b - 1):+.1f} %" if np.isfinite(m) and np.isfinite(b) and b else "–")
        rows.append(row)
    md.append(_table(["variant", "all abs_rel", "all sq_rel", "textureless abs_rel", "textureless sq_rel",
                      "textured abs_rel", "textured sq_rel"], rows) + "\n")
    return md


def _runs_section(results: Mapping[str, Any], out: Path) -> list[str]:
    """One row per depth run and one per shared FeatureNet stage, with their folders relative to ``out``."""
    md = ["### Every run\n"]
    rows = []
    for r in results.get("runs", []):
        d = r["eval"]["depth"]
        rows.append([f"`{r['variant']}`", r["seed"], r.get("steps"), _fmt_duration(r.get("wall_seconds")),
                     _fmt(d["all"]["metrics"].get("abs_rel")), _fmt(d.get("textureless", {}).get("metrics", {}).get("abs_rel")),
                     _fmt(d.get("textured", {}).get("metrics", {}).get("abs_rel")), _fmt(r["eval"].get("ate5"), 4),
                     f"`{_rel(r['out_dir'], out)}`"])
    md.append(_table(["variant", "seed", "steps", "train time", "abs_rel", "abs_rel textureless", "abs_rel textured",
                      "ATE5", "folder"], rows) + "\n")
    fns = results.get("featurenets", {})
    if fns:
        rows = []
        for setting, by_seed in fns.items():
            for seed, f in by_seed.items():
                rows.append([f"`{setting}`", seed, f.get("steps"), _fmt_duration(f.get("wall_seconds")),
                             _fmt(f.get("val", {}).get("reconstruction"), 4), f"`{_rel(f['out_dir'], out)}`"])
        md.append("FeatureNet stages (trained once, shared by the depth runs with the same setting and seed):\n")
        md.append(_table(["setting", "seed", "steps", "train time", "val reconstruction", "folder"], rows) + "\n")
    return md


def _featurenet_rows(fns: Mapping[str, Any], where: str) -> list[list[Any]]:
    rows = []
    for setting, by_seed in fns.items():
        for seed, f in by_seed.items():
            c = f.get("curve") or {}
            if not c:
                continue
            rec = c.get("reconstruction", [])
            rows.append([where, f"`{setting}`", seed, _fmt(c.get("last_step", c["steps"][-1] if c.get("steps") else None), 0),
                         _fmt(rec[0] if rec else None, 4), _fmt(c.get("final"), 4),
                         _fmt(100 * c["change_last_quarter"] if "change_last_quarter" in c else None, 1),
                         _fmt(c.get("flattened")),
                         _fmt((c.get("val_reconstruction") or [None])[0], 4), _fmt(c.get("val_final"), 4),
                         _fmt(100 * c["val_change_last_quarter"] if "val_change_last_quarter" in c else None, 1),
                         _fmt(c.get("val_flattened")), _fmt((c.get("discriminative") or [None])[-1], 4),
                         _fmt((c.get("convergent") or [None])[-1], 4)])
    return rows


def plot_featurenet_curves(curves: Mapping[str, Mapping[str, Any]], path: Path) -> Path | None:
    """The reconstruction-loss curves ``{label: curve}`` of :func:`~featdepth.experiments.runs.featurenet_curve`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = {k: c for k, c in curves.items() if c.get("steps")}
    if not curves:
        return None
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    for label, c in curves.items():
        (line,) = ax.plot(c["steps"], c["reconstruction"], label=f"{label} (training)")
        if c.get("val_steps"):
            ax.plot(c["val_steps"], c["val_reconstruction"], "o--", color=line.get_color(), markersize=3,
                    label=f"{label} (held-out)")
    ax.set_xlabel("FeatureNet step")
    ax.set_ylabel("reconstruction loss")
    ax.set_title("FeatureNet stage: reconstruction loss")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _featurenet_section(results: Mapping[str, Any], fig_dir: Path) -> list[str]:
    """How far every FeatureNet was trained: its reconstruction-loss curve and whether it flattened."""
    rows = _featurenet_rows(results.get("featurenets", {}), "synthetic")
    for source, fns in (results.get("real") or {}).get("featurenets", {}).items():
        rows += _featurenet_rows(fns, f"real ({source})")
    if not rows:
        return []
    curves = {f"{setting} s{seed}": f.get("curve") or {}
              for setting, by_seed in results.get("featurenets", {}).items() for seed, f in by_seed.items()}
    md = ["## FeatureNet training\n",
          "Reconstruction loss at the start (first window) and over the last quarter of the logged steps; `change` = "
          "relative change of that mean against the quarter before (%); `flattened` = less than 2 % further decrease. "
          "`held-out` = the same loss on the held-out sequences at the first and last validation, its change against "
          "the validation at three quarters of the run, and whether that is less than 2 % (empty: no held-out data). "
          "`dis`/`cvt` = the unweighted discriminative and convergent terms at the end.\n",
          _table(["data", "setting", "seed", "steps", "rec start", "rec end", "change %", "flattened", "held-out start",
                  "held-out end", "held-out change %", "held-out flattened", "dis", "cvt"], rows) + "\n"]
    fig = plot_featurenet_curves(curves, fig_dir / "featurenet_curves.png")
    if fig is not None:
        md.append("![FeatureNet curves](figures/featurenet_curves.png)\n")
    return md


def _landscape_section(an: Mapping[str, Any]) -> list[str]:
    """The loss-landscape figure and, per sweep, the curve summaries on textureless and textured pixels."""
    land = an["landscape"]
    md = ["## Loss landscape around the ground truth\n",
          f"{land.get('pairs')} target/source pair(s) of the held-out sequences (consecutive frames), GT depth "
          "and pose; FeatureNets of seed "
          f"{an.get('featurenet_seed')} ({', '.join(an.get('featurenets', [])) or 'none trained'}). "
          "`photometric` = 0.85 SSIM + 0.15 Charbonnier at full resolution; `intensity` = Charbonnier on the RGB "
          "image at H/2 (the feature-metric loss with the image as feature); the others = the feature-metric "
          f"error of that FeatureNet's features (H/2, K/2). Region masks are eroded by {land.get('erode', 0)} "
          "full-resolution pixels (half that at H/2), so the curves describe the interior of each surface; a "
          "pixel counts only if it stays inside the source view over the whole sweep.\n",
          "![loss landscape](" + an["figures"]["landscape"] + ")\n",
          "Numbers per curve: `abs. rise near` = absolute increase of the error one tenth of the sweep away "
          "from the GT (the measure's units; compare within a measure only); `rise near` = relative increase of the error one tenth of the sweep away "
          "from the GT (mean of both sides); `rise far` = at the ends of the sweep (factor 0.5 and 2; "
          "±tz; ±ry); `curv.` = curvature of a parabola fitted around the GT, divided by the value at GT; "
          "`min at GT` = the minimum lies at the GT point or a neighbour; `argmin` = where it lies.\n"]
    for sweep in ("depth", "tz", "ry"):
        rows = []
        for row in an["landscape_summary"]:
            if row["sweep"] != sweep or row["region"] not in ("textureless", "textured"):
                continue
            rows.append([row["region"], f"`{row['measure']}`", _fmt(row["at_gt"], 4),
                         _fmt(row.get("rise_near_abs"), 4), _fmt(row["rise_near"]),
                         _fmt(row["rise_far"]), _fmt(row["curvature"], 2), _fmt(row["min_at_gt"]), _fmt(row["argmin_x"], 3)])
        rows.sort(key=lambda r: (r[0] != "textureless", r[1]))
        if rows:
            md.append(f"**sweep: {sweep}**\n")
            md.append(_table(["region", "measure", "error at GT", "abs. rise near", "rise near", "rise far", "curv.",
                              "min at GT", "argmin"],
                             rows) + "\n")
    return md


def _feature_stats_section(an: Mapping[str, Any]) -> list[str]:
    """Feature-gradient statistics per FeatureNet (and the image) and the PCA pictures (empty without stats)."""
    st = an.get("feature_stats")
    if not st:
        return []
    md = ["## FeatureNet statistics\n",
          "Mean first-order (`g1`) and second-order (`g2`) feature-gradient magnitude per pixel (channel "
          "mean, forward differences, region masks eroded by 1 pixel at H/2) on held-out images; `rel` = divided by "
          "the mean |feature| of the image (removes the overall feature scale); `S1`/`S2` = the edge-aware "
          "terms of the FeatureNet loss on the whole images. `intensity` = the raw image at H/2.\n"]
    rows = []
    for name, s in st.items():
        rg = s["regions"]
        tl, tx = rg.get("textureless", {}), rg.get("textured", {})
        rows.append([f"`{name}`", _fmt(tl.get("g1"), 4), _fmt(tx.get("g1"), 4), _fmt(s["textureless_over_textured_g1"]),
                     _fmt(tl.get("g2"), 4), _fmt(tx.get("g2"), 4), _fmt(s["textureless_over_textured_g2"]),
                     _fmt(tl.get("g1_rel")), _fmt(tx.get("g1_rel")), _fmt(s.get("S1"), 4), _fmt(s.get("S2"), 4),
                     _fmt(s.get("feature_mean_abs"), 4)])
    md.append(_table(["features", "g1 textureless", "g1 textured", "ratio", "g2 textureless", "g2 textured", "ratio",
                      "g1 rel textureless", "g1 rel textured", "S1", "S2", "mean abs"], rows) + "\n")
    for q in an["figures"].get("pca", []):
        md.append(f"![PCA of the features]({q})\n")
    return md


def _real_section(real: Mapping[str, Any], p: Mapping[str, Any]) -> list[str]:
    """The real KITTI clips: the settings, one row per (source, variant), the references and the notes."""
    md = ["## Real data: tiny KITTI clips\n"]
    if real.get("skipped"):
        md.append(f"Skipped: {real['skipped']}\n")
        return md
    rp = real.get("preset", {})
    md.append(f"Training at {rp.get('height')}×{rp.get('width')}, batch {rp.get('batch_size')}, "
              f"{rp.get('depth_steps')} depth/pose steps (+{rp.get('feature_steps')} FeatureNet steps for the "
              f"two-stage variant), seeds {rp.get('seeds')}, lr 1e-4 constant, ResNet-{p.get('layers')} random "
              "init."
              + {"paper": " Recipe: the paper's (PoseNet output scale 0.01, auto-masking from the first step).",
                 "robust": " Recipe: the synthetic presets' robust one (PoseNet output scale 0.1, auto-masking from "
                           "step 200, disparity gradient floor 1e-4)."}.get(rp.get("recipe"), "")
              + " Depth: the 7 frames of `kitti_raw_tiny` against the projected lidar, Eigen protocol "
              "(Garg crop, 1e-3 < gt < 80, per-image median scaling). Frames 1–5 of the raw clip are training "
              "targets: **the clips are tiny; this measures whether the pipeline learns real geometry at this "
              "budget, not generalisation**. Models trained on the greyscale odometry clip are evaluated on "
              "greyscale versions of the raw frames. ATE5: on the 51-frame odometry clip.\n")
    md.append(_table(["trained on", "variant", "seeds", "steps", "abs_rel", "sq_rel", "rmse", "a1", "ATE5 odom (m)"],
                     _real_rows(real)) + "\n")
    md.append("The monodepth2 rows are reference figures of monodepth2's own code, measured for this project on "
              "a 2-core machine (same frames and protocol, 640×192, 400 steps); compare only at a similar budget and resolution.\n")
    ch_rows = _camera_height_rows(real)
    if ch_rows:
        md.append("**Metres without ground truth** (camera-height scaling: each frame's scale from the ground "
                  "plane of its own prediction and KITTI's camera height, 1.65 m, measured below the level camera; the clip is evaluated with the "
                  "median of its frames' scales, as `predict --camera-height` scales a video, and with each frame's "
                  "own scale): abs_rel against the same predictions median-scaled, and each frame's recovered scale "
                  "÷ its median-scaling ratio (1 = as good as ground-truth scaling on average).\n")
        md.append(_table(["trained on", "variant", "seeds", "abs_rel camera-height (clip median scale)",
                          "abs_rel camera-height (per frame)", "abs_rel median", "ratio (clip scale)",
                          "scale / median ratio", "frames with a plane"], ch_rows) + "\n")
    for note in real.get("notes", []):
        md.append(f"- {note}\n")
    return md


def _camera_height_rows(real: Mapping[str, Any]) -> list[list[Any]]:
    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for r in real.get("runs", []):
        if r.get("eval", {}).get("camera_height", {}).get("metrics"):
            groups.setdefault((r["source"], r["variant"]), []).append(r["eval"]["camera_height"])
    rows = []
    for (source, v), chs in groups.items():
        ch = [c["metrics"]["abs_rel"] for c in chs]
        per_frame = [c.get("metrics_per_frame", {}).get("abs_rel") for c in chs]
        med = [c["median_metrics"].get("abs_rel") for c in chs]
        rows.append([source, f"`{v}`", len(chs), fmt_mean_sd(ch), fmt_mean_sd(per_frame), fmt_mean_sd(med),
                     fmt_mean_sd([a / b for a, b in zip(ch, med) if b]),
                     fmt_mean_sd([c["scale_over_median_ratio_mean"] for c in chs]),
                     " ".join(str(c["frames_with_plane"]) for c in chs)])
    return rows


def _real_rows(real: Mapping[str, Any]) -> list[list[Any]]:
    """Rows of the real-data table: mean ± sd over seeds per (source, variant), untrained, monodepth2 reference."""
    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for r in real.get("runs", []):
        groups.setdefault((r["source"], r["variant"]), []).append(r)
    rows = []
    for (source, v), rs in groups.items():
        rows.append([source, f"`{v}`", len(rs), rs[0].get("steps")]
                    + [fmt_mean_sd([r["eval"]["metrics"][k] for r in rs]) for k in DEPTH_KEYS]
                    + [fmt_mean_sd([r.get("odometry", {}).get("ate5") for r in rs], 4)])
    un = real.get("untrained")
    if un:
        rows.append(["–", "untrained (random init)", 1, 0] + [_fmt(un["metrics"][k]) for k in DEPTH_KEYS] + ["–"])
    ref = real.get("monodepth2_reference", {})
    for rr in ref.get("rows", []):
        rows.append(["raw (reference)", f"monodepth2 640×192 seed {rr['seed']}", 1, rr["steps"]]
                    + [_fmt(rr[k]) for k in DEPTH_KEYS] + ["–"])
    return rows


def _paired_section(ps: Mapping[str, Any]) -> list[str]:
    """Per-seed differences variant − baseline with t and bootstrap intervals (``results["paired_stats"]``,
    :func:`featdepth.experiments.stats.paired_statistics`): one table for the synthetic scenes, one for the real clip."""
    conf = 100 * float(ps.get("confidence", 0.95))
    md = ["## Paired differences against the baseline (same seed)\n",
          f"For every seed: metric of the variant − metric of `{ps.get('baseline', 'baseline')}` trained with the same "
          "seed; negative = lower error than the baseline. Mean and sd (ddof 1) over the seeds; "
          f"{conf:.0f} % confidence intervals of the mean difference: paired t (mean ± t·sd/√n) and percentile "
          f"bootstrap ({ps.get('bootstrap_resamples')} resamples, seed {ps.get('bootstrap_seed')}; too narrow "
          "with few seeds). `verdict` reads the t interval: `variant lower` or `variant higher` when it excludes "
          "0, `undecided` when it contains 0.\n"]

    def cells(row: Mapping[str, Any]) -> list[Any]:
        verdict = "–" if row.get("n", 0) < 2 else {-1: "variant lower", 1: "variant higher"}.get(row.get("sign"), "undecided")
        return [row.get("n"), _fmt(row.get("mean"), 4), _fmt(row.get("sd"), 4),
                f"[{_fmt(row.get('low'), 4)}, {_fmt(row.get('high'), 4)}]",
                f"[{_fmt(row.get('boot_low'), 4)}, {_fmt(row.get('boot_high'), 4)}]", verdict]

    head = ["seeds", "mean diff", "sd", f"t {conf:.0f} % CI", f"bootstrap {conf:.0f} % CI", "verdict"]
    if ps.get("synthetic"):
        md.append("**Synthetic scenes** (held-out sequences; region `all` = every valid pixel)\n")
        rows = [[f"`{r['variant']}`", r["region"], r["metric"]] + cells(r) for r in ps["synthetic"]]
        md.append(_table(["variant", "region", "metric"] + head, rows) + "\n")
    if ps.get("real"):
        md.append("**Real clip** (depth: the 7 frames of `kitti_raw_tiny`; `odometry`: ATE5 on the odometry clip)\n")
        rows = [[r["source"], f"`{r['variant']}`", r["region"], r["metric"]] + cells(r) for r in ps["real"]]
        md.append(_table(["trained on", "variant", "region", "metric"] + head, rows) + "\n")
    return md


def _caveats_section() -> list[str]:
    return ["## Caveats\n",
            "- Budgets are small (see Setup); differences smaller than the spread over seeds are not evidence either way.\n"
            "- The networks start from random weights (no ImageNet); the paper's models are ImageNet-initialised and train "
            "for 40 epochs on KITTI.\n"
            "- The two-stage variants use extra compute for their FeatureNet stage; the depth/pose budget is the same.\n"
            "- Synthetic textureless walls are perfectly uniform; real textureless surfaces have noise and shading.\n"]


def _fmt_duration(seconds: Any) -> str:
    if seconds is None:
        return "–"
    s = float(seconds)
    if not math.isfinite(s):
        return "–"
    if s < 90:
        return f"{s:.0f} s"
    if s < 5400:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.1f} h"


def load_results(out_dir: str | Path) -> dict[str, Any]:
    """``results.json`` of an experiment folder."""
    path = Path(out_dir) / "results.json"
    if not path.is_file():
        raise FileNotFoundError(f"no results.json in {out_dir}")
    return json.loads(path.read_text())
