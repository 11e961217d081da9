"""The experiment report (featdepth.experiments.report): the text of ``report.md`` for a hand-built
``results.json`` is compared with golden files under ``tests/experiments/data/`` that were written by the
report code as it was before it was split into one function per section (so the split changed nothing).

To re-create a golden file after an intended change of the report: ``FEATDEPTH_WRITE_GOLDEN=1 pytest
tests/experiments/test_report.py`` and review the diff.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from featdepth.experiments.report import aggregate_runs, fmt_mean_sd, load_results, mean_sd, write_report

DATA = Path(__file__).resolve().parent / "data"
REGIONS = ("all", "textureless", "textured", "road", "object")
NAN = float("nan")


def _depth(base: float, images: int = 4) -> dict[str, Any]:
    """``eval["depth"]`` with region metrics derived from ``base`` (road: no image with enough pixels)."""
    out: dict[str, Any] = {}
    for i, region in enumerate(REGIONS):
        if region == "road":
            out[region] = {"metrics": {}, "images": 0, "pixels": 0}
            continue
        out[region] = {"metrics": {"abs_rel": base * (1 + 0.25 * i), "sq_rel": base * base * (2 + i),
                                   "rmse": 10 * base + i, "a1": 1 - base * (1 + 0.1 * i)},
                       "images": images - (region == "object"), "pixels": 1000 * (i + 1)}
    return out


def _landscape_summary() -> list[dict[str, Any]]:
    rows = []
    for j, sweep in enumerate(("depth", "tz", "ry")):
        for k, measure in enumerate(("photometric", "intensity", "rec_dis_cvt", "joint")):
            for m, region in enumerate(("all", "textured", "textureless", "road")):
                v = 0.01 * (1 + j + 2 * k + 3 * m)
                rows.append({"sweep": sweep, "measure": measure, "region": region, "at_gt": v,
                             "rise_near_abs": None if k == 3 else v / 7, "rise_near": 3 * v, "rise_far": 40 * v,
                             "curvature": 1234.5 * v if m else NAN, "min_at_gt": bool((j + k + m) % 2),
                             "argmin_x": 1.0 if sweep == "depth" else 0.05 * (k - 1)})
    return rows


def _feature_stats() -> dict[str, Any]:
    out = {}
    for i, name in enumerate(("intensity", "rec_dis_cvt", "joint")):
        tl = {"g1": 0.001 * (i + 1), "g2": 0.0004 * (i + 1), "g1_rel": 0.01 * (i + 1), "pixels": 100}
        tx = {"g1": 0.02 * (i + 1), "g2": 0.03 * (i + 1), "g1_rel": 0.2 * (i + 1), "pixels": 200}
        out[name] = {"regions": {"textureless": tl, "textured": tx, "road": {"pixels": 0}},
                     "textureless_over_textured_g1": tl["g1"] / tx["g1"],
                     "textureless_over_textured_g2": tl["g2"] / tx["g2"],
                     "S1": None if name == "intensity" else 0.5 * i, "S2": 12345.0 * i, "feature_mean_abs": 0.3 * i}
    return out


def full_results(out: Path) -> dict[str, Any]:
    """A results dict with every section of the report: 3 variants x 2 seeds (one run without ATE), the
    untrained reference, FeatureNets, the analysis and the real-data part (two sources, untrained,
    monodepth2 reference, notes)."""
    variants = {"baseline": "photometric only", "fm_dis_cvt": "+ feature-metric (paper)", "joint": "single stage"}
    runs = []
    for seed in (0, 1):
        for i, v in enumerate(variants):
            base = 0.2 - 0.03 * i + 0.01 * seed
            d = out / "runs" / v / f"seed{seed}" if (v, seed) != ("joint", 1) else Path("/elsewhere/joint/seed1")
            runs.append({"variant": v, "seed": seed, "out_dir": str(d), "checkpoint": str(d / "model.pt"),
                         "steps": 200, "wall_seconds": 30.0 + 100 * i + 3000 * seed,
                         "featurenet_checkpoint": None,
                         "eval": {"depth": _depth(base), "images": 4,
                                  **({} if (v, seed) == ("joint", 0) else {"ate5": 0.01 + 0.001 * i + 0.0005 * seed})}})
    featurenets = {"rec_dis_cvt": {str(seed): {"checkpoint": "x.pt", "steps": 150, "wall_seconds": 20.0 + seed,
                                              "val": {"reconstruction": 0.0123 + seed},
                                              "out_dir": str(out / "featurenets" / "rec_dis_cvt" / f"seed{seed}")}
                                   for seed in (0, 1)}}
    real_runs = []
    for source in ("raw", "odom"):
        for v in ("baseline", "fm_dis_cvt"):
            for seed in (0, 1):
                b = 0.3 + 0.02 * seed + (0.05 if source == "odom" else 0) - (0.03 if v == "fm_dis_cvt" else 0)
                run = {"source": source, "variant": v, "seed": seed, "steps": 100,
                       "eval": {"metrics": {"abs_rel": b, "sq_rel": 3 * b, "rmse": 20 * b, "a1": 1 - b}}}
                if source == "odom":
                    run["odometry"] = {"ate5": 0.05 + 0.01 * seed}
                else:  # camera-height scaling (the clip's median scale; each frame's own)
                    run["eval"]["camera_height"] = {
                        "metrics": {"abs_rel": 1.1 * b}, "metrics_per_frame": {"abs_rel": 1.2 * b},
                        "median_metrics": {"abs_rel": b}, "scale_over_median_ratio_mean": 1.0 + 0.01 * seed,
                        "frames_with_plane": 7 - seed}
                real_runs.append(run)
    return {
        "preset": {"name": "cpu", "height": 64, "width": 192, "batch_size": 4, "depth_steps": 200, "feature_steps": 150,
                   "seeds": [0, 1], "variants": list(variants), "layers": 18, "synth_sequences": 4,
                   "synth_val_sequences": 2, "synth_frames": 210,
                   "real": {"height": 96, "width": 320, "batch_size": 4, "depth_steps": 100, "feature_steps": 50,
                            "seeds": [0, 1], "variants": ["baseline", "fm_dis_cvt"], "sources": ["raw", "odom"]}},
        "command": "featdepth experiment run --out DIR --preset cpu",
        "estimate_seconds": {"total": 1800.0},
        "overrides": ["loss.smoothness_weight=1e-3"],
        "device": "cpu",
        "torch": "2.0.0",
        "variants": {k: {"name": k, "description": d} for k, d in variants.items()},
        "featurenets": featurenets,
        "runs": runs,
        "val_sequences": ["val_000", "val_001"],
        "untrained": {"depth": _depth(0.6), "ate5": 0.04, "zero_motion_ate5": 0.035},
        "analysis": {"featurenet_seed": 0, "featurenets": ["rec_dis_cvt", "joint"],
                     "landscape": {"pairs": 4, "erode": 2}, "landscape_summary": _landscape_summary(),
                     "feature_stats": _feature_stats(),
                     "figures": {"landscape": "figures/landscape.png", "pca": ["figures/pca_0.png", "figures/pca_1.png"]}},
        "real": {"preset": {"height": 96, "width": 320, "batch_size": 4, "depth_steps": 100, "feature_steps": 50,
                            "seeds": [0, 1]},
                 "runs": real_runs,
                 "untrained": {"metrics": {"abs_rel": 0.9, "sq_rel": 9.5, "rmse": 19.0, "a1": 0.01}},
                 "monodepth2_reference": {"rows": [{"seed": 0, "steps": 400, "abs_rel": 0.35, "sq_rel": 3.1,
                                                    "rmse": 12.0, "a1": 0.45}]},
                 "notes": ["first note", "second note"]},
        "wall_seconds": 7200.0,
    }


def minimal_results() -> dict[str, Any]:
    """``--no-synthetic`` with the real-data part skipped: no runs, no analysis, hardly any preset."""
    return {"preset": {"name": "tiny"}, "runs": [], "variants": {}, "real": {"skipped": "no kitti_raw_tiny in /nowhere"}}


def _check(name: str, results: dict[str, Any], out: Path) -> str:
    # through JSON, as `featdepth experiment report DIR` reads it
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results))
    path = write_report(load_results(out), out)
    assert path == out / "report.md"
    text = path.read_text()
    golden = DATA / name
    if os.environ.get("FEATDEPTH_WRITE_GOLDEN"):
        golden.write_text(text)
    assert text == golden.read_text(), f"report.md differs from {golden}"
    return text


def test_full_report_unchanged(tmp_path):
    out = tmp_path / "exp"
    text = _check("report_full.md", full_results(out), out)
    # a few things an independent reading of the results dict predicts
    assert "| `joint` | 2 |" in text  # two seeds of joint
    assert "`/elsewhere/joint/seed1`" in text and "`runs/baseline/seed0`" in text
    assert "Skipped" not in text and "Not run in this experiment" not in text
    for fig in ("region_abs_rel.png", "region_sq_rel.png"):
        assert (out / "figures" / fig).stat().st_size > 1000


def test_minimal_report_unchanged(tmp_path):
    text = _check("report_minimal.md", minimal_results(), tmp_path / "exp")
    assert "Not run in this experiment (`--no-synthetic`)" in text
    assert "Skipped: no kitti_raw_tiny in /nowhere" in text
    assert "## Loss landscape" not in text and "## Caveats" in text


def test_mean_sd_and_aggregate():
    m, sd, n = mean_sd([1.0, 3.0, None, NAN])
    assert (m, n) == (2.0, 2) and sd == pytest.approx(2 ** 0.5)
    assert fmt_mean_sd([0.5]) == "0.500" and fmt_mean_sd([]) == "–" and fmt_mean_sd([1.0, 2.0], 1) == "1.5 ± 0.7"
    agg = aggregate_runs(full_results(Path("/x"))["runs"])
    assert list(agg) == ["baseline", "fm_dis_cvt", "joint"]
    assert agg["joint"]["seeds"] == [0, 1] and agg["joint"]["ate5"][0] is None
    assert agg["baseline"]["textured"]["abs_rel"] == pytest.approx([0.2 * 1.5, 0.21 * 1.5])
