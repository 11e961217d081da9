"""The `decide` presets (docs/experiments.md "Deciding the claim"): their budget and time estimate, the
estimate's calibration against a measured run, the dry run, the synthetic recipe, and the decide pipeline
end to end on a tiny budget producing the paired-statistics section. Not the scientific outcome."""

from __future__ import annotations

import json
import re

import pytest

from featdepth.config import load_config
from featdepth.experiments.presets import PRESETS, estimate_seconds, get_preset
from featdepth.experiments.report import write_report
from featdepth.experiments.runner import BudgetOverrides, RunOptions, amp_of, configure_preset, run_experiment
from featdepth.experiments.runs import synthetic_overrides
from featdepth.experiments.stats import paired_statistics


def test_decide_presets_budget():
    d = get_preset("decide")
    assert d.variants == ["baseline", "fm_rec", "fm_dis_cvt"] and len(set(d.seeds)) >= 8
    assert d.real is not None and len(set(d.real.seeds)) >= 4 and "raw" in d.real.sources
    assert d.real.variants[0] == "baseline" and "fm_dis_cvt" in d.real.variants
    # the comparison runs with the robust recipe on the real clip too; the older presets keep the paper's
    assert d.real.recipe == get_preset("decide_gpu").real.recipe == "robust"
    assert get_preset("cpu").real.recipe == get_preset("gpu").real.recipe == "paper"
    est = estimate_seconds(d, device="cpu")
    assert est["total"] <= 85 * 60  # sized for 90 minutes on 2 CPU cores, with a margin
    assert est["total"] > 60 * 60  # and it uses the time it has
    g = get_preset("decide_gpu")
    assert g.variants == d.variants and len(g.seeds) > len(d.seeds) and len(g.real.seeds) > len(d.real.seeds)
    assert g.height * g.width * g.batch_size > d.height * d.width * d.batch_size and g.depth_steps > d.depth_steps
    gpu_est = estimate_seconds(g, device="cuda")["total"]
    assert 60 * 60 < gpu_est < 8 * 3600
    assert estimate_seconds(g, device="cpu")["total"] > 10 * gpu_est
    assert {"decide", "decide_gpu"} <= set(PRESETS)


def test_estimate_featurenet_cost_by_setting():
    """decide's FeatureNets (rec and rec_dis_cvt, 2000 steps at 64x192) by hand: the steps (the dis/cvt terms cost
    DIS_CVT_FEATURENET_FACTOR x, measured 1.0 in the third decide run) plus a validation on the 120 held-out images
    every second epoch of 90 steps and at the end; --sweep adds a third FeatureNet."""
    from featdepth.experiments.presets import (CPU_SECONDS_PER_STEP, DIS_CVT_FEATURENET_FACTOR,
                                               FEATURENET_VAL_SECONDS_PER_IMAGE, _featurenet_factor)

    assert _featurenet_factor("rec") == 1.0 and _featurenet_factor("rec_dis_cvt_1e-1") == DIS_CVT_FEATURENET_FACTOR
    d = get_preset("decide")
    assert d.sweep_featurenets == [] and d.feature_steps == 2000
    validations = 2000 // 180 + 1
    one_val = 120 * FEATURENET_VAL_SECONDS_PER_IMAGE
    by_hand = ((1 + DIS_CVT_FEATURENET_FACTOR) * 2000 * CPU_SECONDS_PER_STEP["featurenet"] + 2 * validations * one_val)
    assert estimate_seconds(d, device="cpu")["featurenets"] == pytest.approx(by_hand, rel=1e-9)
    swept = configure_preset("decide", BudgetOverrides(sweep_featurenets=["rec_dis_cvt_1e-1"]))
    assert swept.sweep_featurenets == ["rec_dis_cvt_1e-1"] and get_preset("decide").sweep_featurenets == []
    extra = DIS_CVT_FEATURENET_FACTOR * 2000 * CPU_SECONDS_PER_STEP["featurenet"] + validations * one_val
    assert estimate_seconds(swept, device="cpu")["featurenets"] == pytest.approx(by_hand + extra, rel=1e-9)
    with pytest.raises(ValueError, match="unknown FeatureNet setting.*rec_dis_cvt_1e-3"):
        configure_preset("decide", BudgetOverrides(sweep_featurenets=["rec_dis_cvt_1e-3"]))


def test_estimate_calibrated_on_the_measured_run():
    """docs/experiments.md: the 600-step three-seed run plus the 400-step real clip took 39.9 min on an idle
    2-core machine; the estimate must be within 10 % of it (linear pixel scaling said 45.8 min)."""
    p = configure_preset("cpu", BudgetOverrides(seeds=[0, 1, 2], variants=["baseline", "fm_dis_cvt"], steps=600,
                                                real_sources=["raw"], real_seeds=[0, 1], real_size=[96, 320],
                                                real_steps=400, real_feature_steps=200, device="cpu"))
    assert estimate_seconds(p)["total"] / 60 == pytest.approx(39.9, rel=0.10)
    # and the `cpu` preset itself: 23.0 min measured
    assert estimate_seconds(get_preset("cpu"), device="cpu")["total"] / 60 == pytest.approx(23.0, rel=0.10)
    # bf16 shortens the synthetic training steps only
    full, bf16 = (estimate_seconds(p, amp=a) for a in ("none", "bf16"))
    assert bf16["real"] == full["real"] and bf16["synthetic"] < full["synthetic"]
    assert amp_of(["a=1", "train.amp=bf16"]) == "bf16" and amp_of(["train.amp=bf16", "train.amp=none"]) == "none"
    assert amp_of([]) == "none"


def test_decide_synthetic_runs_use_the_robust_pose_scale(tmp_path):
    cfg = load_config("synthetic_small", synthetic_overrides(get_preset("decide"), tmp_path, 3))
    assert cfg.model.pose_output_scale == 0.1 and cfg.train.seed == 3
    assert (cfg.data.synth_sequences, cfg.data.synth_frames, cfg.optim.max_steps) == (6, 60, 400)


def test_cli_dry_run_prints_the_estimate_first(capsys):
    from featdepth.cli import main

    assert main(["experiment", "run", "--out", "unused", "--preset", "decide", "--dry-run", "--device", "cpu"]) == 0
    lines = capsys.readouterr().out.splitlines()
    m = re.match(r"estimated time on a quiet machine: ([0-9.]+) min", lines[0])
    assert m, lines[0]
    assert float(m.group(1)) <= 85
    assert "8 seeds" in lines[1] and "fm_rec" in lines[1] and "4 seeds" in lines[2]


def test_cli_sweep_option(capsys):
    from featdepth.cli import main

    base = ["experiment", "run", "--out", "unused", "--dry-run", "--device", "cpu"]
    assert main(base + ["--preset", "decide", "--sweep", "rec_dis_cvt_1e-1"]) == 0
    out = capsys.readouterr().out
    assert "weight sweep: rec_dis_cvt_1e-1" in out
    swept = float(re.match(r"estimated time on a quiet machine: ([0-9.]+) min", out).group(1))
    assert main(base + ["--preset", "decide"]) == 0
    out = capsys.readouterr().out
    assert "weight sweep" not in out and float(re.match(r"estimated time on a quiet machine: ([0-9.]+) min", out).group(1)) < swept
    assert main(base + ["--preset", "decide_gpu", "--sweep", "none"]) == 0
    assert "weight sweep" not in capsys.readouterr().out
    assert main(base + ["--preset", "decide", "--sweep", "rec_dis_cvt_2"]) != 0
    assert "unknown FeatureNet setting(s) rec_dis_cvt_2" in capsys.readouterr().err


def test_cli_presets_lists_decide(capsys):
    from featdepth.cli import main

    assert main(["experiment", "presets"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^decide_gpu .* on one GPU", out, re.M) and re.search(r"^decide .* on 2 quiet CPU cores", out, re.M)


def test_report_paired_section(tmp_path):
    runs = []
    for seed in (0, 1, 2):
        for v, off in (("baseline", 0.0), ("fm_dis_cvt", -0.05)):
            depth = {r: {"metrics": {"abs_rel": 0.3 + off * (seed + 1) + (0.1 if r == "textureless" else 0.0),
                                     "sq_rel": 2.0, "rmse": 5.0, "a1": 0.6}, "images": 4}
                     for r in ("all", "textureless")}
            runs.append({"variant": v, "seed": seed, "out_dir": str(tmp_path / v), "steps": 3, "eval": {"depth": depth}})
    results = {"preset": {"name": "decide"}, "runs": runs, "variants": {}}
    results["paired_stats"] = paired_statistics(results)
    text = write_report(results, tmp_path).read_text()
    assert "## Paired differences against the baseline (same seed)" in text
    # abs_rel differences -0.05, -0.10, -0.15: mean -0.1, sd 0.05, t_{0.975,2} 4.3027 -> -0.1 ± 0.1242
    assert "| `fm_dis_cvt` | all | abs_rel | 3 | -0.1000 | 0.0500 | [-0.2242, 0.0242] |" in text
    assert "| `fm_dis_cvt` | all | sq_rel | 3 | 0.0000 |" in text
    assert "undecided" in text and "**Real clip**" not in text
    assert text.index("## Paired differences") < text.index("## Caveats")


def test_decide_pipeline_tiny_budget(tmp_path, capsys):
    """The decide preset's pipeline with 2 seeds, 2 steps, tiny images and scenes, no landscape and no real
    part: trains, evaluates, writes the paired statistics into results.json and the report."""
    p = get_preset("decide")
    p.height, p.width = 64, 128
    p.synth_sequences, p.synth_val_sequences, p.synth_frames = 2, 1, 6
    p.warmup_iters, p.val_max_images = 1, 2
    out = tmp_path / "decide"
    # 7 FeatureNet steps: 3 per epoch, so validations after epoch 2 (step 6) and at the end (a held-out curve)
    budget = BudgetOverrides(seeds=[0, 1], variants=["baseline", "fm_rec"], steps=2, feature_steps=7,
                             sweep_featurenets=["rec_dis_cvt_1e-1"])
    results = run_experiment(out, p, budget,
                             RunOptions(real=False, landscape=False), command="featdepth experiment run --preset decide")
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("[experiment]")]
    assert err[0].startswith("[experiment] estimated time on a quiet machine:")  # the estimate first
    assert sorted((r["variant"], r["seed"]) for r in results["runs"]) == [("baseline", 0), ("baseline", 1), ("fm_rec", 0), ("fm_rec", 1)]
    cfg_text = (out / "runs" / "fm_rec" / "seed1" / "config.yaml").read_text()
    assert "pose_output_scale: 0.1" in cfg_text
    # one shared FeatureNet per setting (seed 0) plus the weight sweep's, each with its loss curve
    assert sorted(str(d.relative_to(out / "featurenets")) for d in (out / "featurenets").glob("*/seed*")) == [
        "rec/seed0", "rec_dis_cvt_1e-1/seed0"]
    fm1 = next(r for r in results["runs"] if (r["variant"], r["seed"]) == ("fm_rec", 1))
    assert fm1["featurenet_checkpoint"] == results["featurenets"]["rec"]["0"]["checkpoint"]
    curve = results["featurenets"]["rec"]["0"]["curve"]
    assert len(curve["reconstruction"]) >= 1 and curve["val_steps"] == [6.0, 7.0] and len(curve["val_reconstruction"]) == 2
    saved = json.loads((out / "results.json").read_text())
    ps = saved["paired_stats"]
    rows = {(r["variant"], r["region"], r["metric"]): r for r in ps["synthetic"]}
    assert {("fm_rec", "all", "abs_rel"), ("fm_rec", "textureless", "abs_rel"), ("fm_rec", "all", "sq_rel")} <= set(rows)
    r = rows[("fm_rec", "all", "abs_rel")]
    by = {(x["variant"], x["seed"]): x["eval"]["depth"]["all"]["metrics"]["abs_rel"] for x in results["runs"]}
    assert r["seeds"] == [0, 1]
    assert r["differences"] == pytest.approx([by[("fm_rec", s)] - by[("baseline", s)] for s in (0, 1)])
    report = (out / "report.md").read_text()
    assert "## FeatureNet training" in report and (out / "figures" / "featurenet_curves.png").is_file()
    assert "held-out flattened" in report
    assert "## Paired differences against the baseline (same seed)" in report and "| `fm_rec` | textureless | abs_rel | 2 |" in report
