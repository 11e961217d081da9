"""The ablation runner (featdepth.experiments): per-region masks and metrics, the loss landscape, feature
statistics, the real-data helpers, and one end-to-end run on a tiny budget. Not the scientific outcome."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from featdepth.experiments import feature_stats, landscape
from featdepth.experiments.presets import (
    DIS_CVT_FEATURENET_FACTOR, FEATURENET_SETTINGS, VARIANTS, Variant, estimate_seconds, get_preset,
)
from featdepth.experiments.regions import REGION_NAMES, evaluate_region_depth, region_depth_errors, region_masks
from featdepth.experiments.runner import BudgetOverrides, RunOptions, _plan, configure_preset, run_experiment


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory) -> Path:
    """One small synthetic sequence with depth, regions and poses (seed chosen to show every region)."""
    from featdepth.data.synthetic import SynthConfig, write_sequence

    root = tmp_path_factory.mktemp("synth")
    write_sequence(root / "seq_000", SynthConfig(height=64, width=192, num_frames=4, stereo=False, seed=3))
    return root


# ------------------------------------------------------------------------------------------ region masks


class TestRegionMasks:
    def test_masks_match_region_pngs(self, synth_root):
        from featdepth.evaluation.loop import load_folder_sequence

        seq = load_folder_sequence(synth_root, "seq_000", 64, 192)
        assert len(seq.regions) == 4
        for i, (labels, gt) in enumerate(zip(seq.regions, seq.depths)):
            png = np.asarray(Image.open(synth_root / "seq_000" / "regions" / f"{i:06d}.png"))
            valid = (gt > 1e-3) & (gt < 80.0)
            masks = region_masks(labels, valid)
            assert set(masks) == {"all", "textureless", "textured", "road", "object"}
            for rid in (1, 2, 3, 4):
                np.testing.assert_array_equal(masks[REGION_NAMES[rid]], valid & (png == rid))
            np.testing.assert_array_equal(masks["all"], valid)
            # the sky sits at exactly max_depth and is never evaluated
            assert not np.any(valid & (png == 0))
        # this sequence shows textureless and textured walls
        png0 = np.asarray(Image.open(synth_root / "seq_000" / "regions" / "000000.png"))
        assert (png0 == 2).sum() > 100 and (png0 == 3).sum() > 100

    def test_shape_mismatch_raises(self):
        with pytest.raises(ValueError, match="same shape"):
            region_masks(np.zeros((4, 4), int), np.ones((4, 5), bool))

    def test_perfect_on_textureless_wrong_on_textured(self):
        h, w = 20, 30
        regions = np.full((h, w), 2, np.int64)
        regions[:6] = 3  # 30 % textured, 70 % textureless
        regions[0, :5] = 0  # a little sky (invalid: depth 80)
        gt = np.full((h, w), 10.0)
        gt[regions == 0] = 80.0
        pred = gt.copy()
        pred[regions == 3] = 15.0
        # any global scale of the prediction is removed by the median ratio (textureless is the majority)
        metrics, ratio, counts = region_depth_errors(gt, 0.5 * pred, regions, min_region_pixels=5)
        assert ratio == pytest.approx(2.0)
        assert metrics["textureless"]["abs_rel"] == pytest.approx(0.0, abs=1e-12)
        assert metrics["textureless"]["rmse"] == pytest.approx(0.0, abs=1e-12)
        assert metrics["textureless"]["a1"] == 1.0
        assert metrics["textured"]["abs_rel"] == pytest.approx(0.5)
        assert metrics["textured"]["sq_rel"] == pytest.approx(2.5)
        assert metrics["textured"]["a1"] == 0.0
        assert metrics["road"] is None and metrics["object"] is None  # absent regions
        assert counts["textured"] == 6 * w - 5 and counts["textureless"] == 14 * w
        assert metrics["all"]["abs_rel"] == pytest.approx(0.5 * counts["textured"] / counts["all"])

    def test_prediction_resized_to_gt(self):
        gt = np.full((8, 12), 5.0)
        regions = np.full((8, 12), 3)
        metrics, _, _ = region_depth_errors(gt, np.full((4, 6), 7.0), regions, min_region_pixels=1)
        assert metrics["textured"]["abs_rel"] == pytest.approx(0.0, abs=1e-12)

    def test_mean_over_images_skips_images_without_region(self):
        gt = np.full((10, 10), 10.0)
        r_a = np.full((10, 10), 2)
        r_b = np.full((10, 10), 2)
        r_b[:5] = 3
        pred_b = gt.copy()
        pred_b[:5] = 20.0
        out = evaluate_region_depth([gt, gt], [gt, pred_b], [r_a, r_b], min_region_pixels=5)
        assert out["textureless"]["images"] == 2 and out["textured"]["images"] == 1
        assert out["textured"]["pixels"] == 50
        assert out["road"]["images"] == 0 and out["road"]["metrics"] == {}


# ------------------------------------------------------------------------------------------ landscape


class TestLandscape:
    def test_sweep_values(self):
        f = landscape.depth_scale_factors(31)
        assert f[0] == pytest.approx(0.5) and f[-1] == pytest.approx(2.0) and f[15] == 1.0
        assert np.all(np.diff(f) > 0)
        v = landscape.symmetric_values(9, 0.4)
        assert v[4] == 0.0 and v[0] == pytest.approx(-0.4)
        with pytest.raises(ValueError):
            landscape.depth_scale_factors(2)

    def test_perturb_pose(self):
        T = torch.eye(4, dtype=torch.float64)
        T[:3, 3] = torch.tensor([0.1, 0.0, -0.8], dtype=torch.float64)
        out = landscape.perturb_pose(T[None], "tz", [0.0, 0.25])
        torch.testing.assert_close(out[0], T)
        assert float(out[1, 2, 3]) == pytest.approx(-0.55)
        rot = landscape.perturb_pose(T[None], "ry", [math.radians(10)])[0]
        R = rot[:3, :3]
        torch.testing.assert_close(R @ R.T, torch.eye(3, dtype=torch.float64))
        assert float(R[0, 2]) == pytest.approx(math.sin(math.radians(10)))
        with pytest.raises(ValueError):
            landscape.perturb_pose(T, "rx", [0.0])

    def test_photometric_minimum_at_gt_on_textured(self, synth_root):
        from featdepth.models.feature_net import FeatureNet

        pairs = landscape.pairs_from_sequences(synth_root, ["seq_000"], 64, 192, num_pairs=1)
        assert len(pairs) == 1
        torch.manual_seed(0)
        land = landscape.compute_landscape(pairs[0], {"random_fn": FeatureNet(num_layers=18)}, num_points=15)
        c = land.centre["depth"]
        assert land.values["depth"][c] == 1.0
        assert set(land.curves["depth"]) == {"photometric", "intensity", "random_fn"}
        y = land.curves["depth"]["photometric"]["textured"]
        assert land.pixels["depth"]["photometric"]["textured"] > 200
        assert y[c] <= 1.01 * y.min()  # at (or very near) the minimum of the scale sweep
        assert y[0] > 1.5 * y[c] and y[-1] > 1.5 * y[c]  # and clearly lower than far away
        for sweep in ("tz", "ry"):
            ys = land.curves[sweep]["photometric"]["textured"]
            assert ys[land.centre[sweep]] <= 1.05 * ys.min()
        rows = landscape.summarize_landscape(land)
        row = next(r for r in rows if (r["sweep"], r["measure"], r["region"]) == ("depth", "photometric", "textured"))
        assert row["min_at_gt"] and row["rise_far"] > 0.5 and row["curvature"] > 0
        # JSON round trip and figure
        back = landscape.landscape_from_json(json.loads(json.dumps(landscape.landscape_to_json(land))))
        np.testing.assert_allclose(back.curves["depth"]["photometric"]["textured"], y)

    def test_summarize_curve(self):
        x = np.linspace(-1, 1, 11)
        s = landscape.summarize_curve(x, 1.0 + x**2, 5)
        assert s["min_at_gt"] and s["at_gt"] == 1.0
        assert s["curvature"] == pytest.approx(2.0, rel=1e-6)
        assert s["rise_far"] == pytest.approx(1.0) and s["convex_fraction"] == 1.0
        flat = landscape.summarize_curve(x, np.ones(11), 5)
        assert flat["rise_far"] == 0.0 and flat["curvature"] == pytest.approx(0.0, abs=1e-9)


# ------------------------------------------------------------------------------------------ feature statistics


class TestFeatureStats:
    def test_gradient_maps_on_known_fields(self):
        h, w = 6, 8
        ramp = torch.arange(w, dtype=torch.float32).view(1, 1, 1, w).expand(1, 2, h, w) * 0.5
        g1, g2 = feature_stats.gradient_magnitude_maps(ramp)
        assert g1.shape == (1, 1, h - 2, w - 2)
        torch.testing.assert_close(g1, torch.full_like(g1, 0.5))
        torch.testing.assert_close(g2, torch.zeros_like(g2))
        quad = (torch.arange(h, dtype=torch.float32) ** 2).view(1, 1, h, 1).expand(1, 1, h, w)
        _, g2q = feature_stats.gradient_magnitude_maps(quad)
        torch.testing.assert_close(g2q, torch.full_like(g2q, 2.0))

    def test_region_stats_separate_regions(self):
        h, w = 16, 16
        f = torch.zeros(1, 4, h, w)
        f[..., :, 8:] = torch.randn(1, 4, h, 8)  # texture on the right half only
        regions = np.full((h, w), 2)
        regions[:, 8:] = 3
        st = feature_stats.region_gradient_stats(f, [regions], erode=1)
        assert st["textureless"]["g1"] == pytest.approx(0.0, abs=1e-7)
        assert st["textured"]["g1"] > 0.1 and st["textured"]["g2"] > 0.1
        assert st["road"]["pixels"] == 0

    def test_statistics_and_pca(self, synth_root, tmp_path):
        from featdepth.evaluation.loop import load_folder_sequence
        from featdepth.models.feature_net import FeatureNet

        seq = load_folder_sequence(synth_root, "seq_000", 64, 192)
        nets = {"a": FeatureNet(num_layers=18)}
        out = feature_stats.feature_statistics(nets, seq.images[:2], seq.regions[:2])
        assert set(out) == {"intensity", "a"}
        assert out["a"]["regions"]["textured"]["pixels"] > 0
        assert np.isfinite(out["intensity"]["textureless_over_textured_g1"])
        paths = feature_stats.write_pca_images(nets, seq.images[:1], tmp_path)
        assert [p.name for p in paths] == ["pca_0.png"] and paths[0].stat().st_size > 0


# ------------------------------------------------------------------------------------------ plan, presets


def test_featurenet_stage_shared_in_the_plan():
    twin = Variant("fm_dis_cvt_twin", "depth", "rec_dis_cvt")
    jobs = _plan([VARIANTS["baseline"], VARIANTS["fm_dis_cvt"], twin, VARIANTS["fm_rec"]], [0, 1])
    fn_jobs = [(j.name, j.seed) for j in jobs if j.kind == "featurenet"]
    assert sorted(fn_jobs) == [("rec", 0), ("rec", 1), ("rec_dis_cvt", 0), ("rec_dis_cvt", 1)]
    assert len([j for j in jobs if j.kind == "variant"]) == 8
    # every FeatureNet job comes before the depth runs of its seed
    first_variant = {s: min(i for i, j in enumerate(jobs) if j.kind == "variant" and j.seed == s) for s in (0, 1)}
    assert all(i < first_variant[j.seed] for i, j in enumerate(jobs) if j.kind == "featurenet")


def test_shared_featurenets_in_the_plan():
    variants = [VARIANTS["baseline"], VARIANTS["fm_rec"], VARIANTS["fm_dis_cvt"]]
    jobs = _plan(variants, [3, 4, 5], featurenet_seeds=[4], sweep=["rec_dis_cvt_1e-2", "rec_dis_cvt"])
    fn_jobs = [(j.name, j.seed) for j in jobs if j.kind == "featurenet"]
    # one FeatureNet per setting, of seed 4, plus the sweep setting not already trained; all before any depth run
    assert fn_jobs == [("rec", 4), ("rec_dis_cvt", 4), ("rec_dis_cvt_1e-2", 4)]
    assert [j.kind for j in jobs[:3]] == ["featurenet"] * 3 and len(jobs) == 3 + 9
    # per-seed FeatureNets with a sweep: the sweep is trained with the first seed only
    jobs = _plan(variants, [0, 1], sweep=["rec_dis_cvt_1e-1"])
    assert [(j.name, j.seed) for j in jobs if j.kind == "featurenet"] == [
        ("rec", 0), ("rec_dis_cvt", 0), ("rec_dis_cvt_1e-1", 0), ("rec", 1), ("rec_dis_cvt", 1)]
    # which FeatureNet a depth run uses
    p = get_preset("decide")
    p.seeds, p.featurenet_seeds = [5, 6, 7], [0, 1]
    assert [p.featurenet_seed(s) for s in p.seeds] == [0, 1, 0]
    p.featurenet_seeds = None
    assert [p.featurenet_seed(s) for s in p.seeds] == [5, 6, 7]
    assert p.featurenet_seed_list() == [5, 6, 7]
    # the estimate counts the shared FeatureNets once
    p.seeds, p.sweep_featurenets = [0, 1, 2, 3], []
    per_seed = estimate_seconds(p, device="cpu", real=False)["featurenets"]
    p.featurenet_seeds = [0]
    assert estimate_seconds(p, device="cpu", real=False)["featurenets"] == pytest.approx(per_seed / 4)
    p.sweep_featurenets = ["rec_dis_cvt_1e-2"]  # a third FeatureNet, with the dis/cvt terms (rec + dis/cvt before)
    f = DIS_CVT_FEATURENET_FACTOR
    assert estimate_seconds(p, device="cpu", real=False)["featurenets"] == pytest.approx(per_seed / 4 * (1 + 2 * f) / (1 + f))


def test_featurenet_curve(tmp_path):
    from featdepth.experiments.runs import featurenet_curve

    log = tmp_path / "log.jsonl"
    lines = [json.dumps({"step": s, "loss/reconstruction": 1.0 / s, "loss/discriminative": 0.3, "loss/convergent": 0.7})
             for s in range(1, 201)]
    log.write_text("\n".join(lines + ['{"step": 201, "loss/recons']))  # a line cut by a kill is skipped
    c = featurenet_curve(log, max_points=20)
    assert len(c["steps"]) == len(c["reconstruction"]) == 20 and c["steps"][0] == pytest.approx(5.5) and c["last_step"] == 200
    assert c["final"] == pytest.approx(np.mean([1.0 / s for s in range(151, 201)]))
    prev = np.mean([1.0 / s for s in range(101, 151)])
    assert c["change_last_quarter"] == pytest.approx(c["final"] / prev - 1)
    assert c["flattened"] is False  # 1/s still falls by ~25 % per quarter of the run
    flat = [json.dumps({"step": s, "loss/reconstruction": 0.05 + 0.001 * (s % 2)}) for s in range(1, 101)]
    log.write_text("\n".join(flat))
    c = featurenet_curve(log)
    assert c["flattened"] is True and "val_steps" not in c  # no held-out rows: no held-out curve
    # held-out rows (validation every 20 steps): compared with the last one at or before 3/4 of the run (step 60)
    val = [json.dumps({"step": s, "val/reconstruction": 0.2 - 0.001 * s}) for s in range(20, 101, 20)]
    log.write_text("\n".join(flat + val))
    c = featurenet_curve(log)
    assert c["val_steps"] == [20.0, 40.0, 60.0, 80.0, 100.0] and c["val_final"] == pytest.approx(0.1)
    assert c["val_change_last_quarter"] == pytest.approx(0.1 / 0.14 - 1) and c["val_flattened"] is False
    assert c["flattened"] is True  # the training loss is flat while the held-out one still falls
    val_flat = [json.dumps({"step": s, "val/reconstruction": 0.1 + 0.0001 * (s == 100)}) for s in range(20, 101, 20)]
    log.write_text("\n".join(flat + val_flat))
    assert featurenet_curve(log)["val_flattened"] is True
    log.write_text("\n".join(flat + val[-1:]))  # one validation (the end of the run): no curve
    assert "val_steps" not in featurenet_curve(log)
    assert featurenet_curve(tmp_path / "absent.jsonl") == {}


def test_presets_and_estimate():
    assert {"rec", "rec_dis", "rec_dis_cvt"} <= set(FEATURENET_SETTINGS)
    assert FEATURENET_SETTINGS["rec"] == (0.0, 0.0)
    assert FEATURENET_SETTINGS["rec_dis_cvt_1e-1"] == (0.1, 0.1)  # the weight sweep
    cpu = get_preset("cpu")
    assert cpu.layers == 18 and set(cpu.variants) == set(VARIANTS)
    est = estimate_seconds(cpu)
    assert 15 * 60 < est["total"] < 45 * 60  # sized for about 30 minutes on 2 cores
    assert estimate_seconds(get_preset("tiny"))["total"] < 120
    with pytest.raises(ValueError, match="unknown experiment preset"):
        get_preset("huge")


def test_configure_preset_overrides():
    base = get_preset("cpu")
    budget = BudgetOverrides(seeds=[3, 4, 5], variants=["baseline"], steps=7, real_steps=9,
                             real_seeds=[1, 2], real_size=(192, 640), real_sources=["raw"])
    p = configure_preset("cpu", budget)
    assert (p.seeds, p.variants, p.depth_steps) == ([3, 4, 5], ["baseline"], 7)
    assert (p.real.seeds, p.real.depth_steps, p.real.height, p.real.width, p.real.sources) == ([1, 2], 9, 192, 640, ["raw"])
    assert get_preset("cpu").seeds == base.seeds  # the registry is not modified
    assert configure_preset("cpu", BudgetOverrides()) == configure_preset("cpu") == base  # no override: the preset
    # without real_seeds the real part takes the first seeds of --seeds
    assert configure_preset("cpu", BudgetOverrides(seeds=[7, 8])).real.seeds == [7][: len(base.real.seeds)]
    with pytest.raises(ValueError, match="multiples of 32"):
        configure_preset("cpu", BudgetOverrides(real_size=(100, 320)))
    with pytest.raises(ValueError, match="unknown variants"):
        configure_preset("cpu", BudgetOverrides(variants=["nope"]))
    with pytest.raises(ValueError, match="nothing to run"):
        configure_preset("cpu", BudgetOverrides(seeds=[]))
    assert configure_preset("cpu", BudgetOverrides(featurenet_seeds=[2])).featurenet_seeds == [2]
    assert configure_preset("decide", BudgetOverrides(featurenet_seeds="each")).featurenet_seeds is None
    with pytest.raises(ValueError, match="featurenet_seeds"):
        configure_preset("cpu", BudgetOverrides(featurenet_seeds="some"))


def test_real_variants_follow_variants_unless_given(tmp_path):
    """--variants restricts the real-data part to its variants among them; --real-variants sets them."""
    assert get_preset("decide").real.variants == ["baseline", "fm_dis_cvt"]
    assert configure_preset("decide", BudgetOverrides(variants=["baseline", "fm_rec"])).real.variants == ["baseline"]
    assert configure_preset("decide", BudgetOverrides(variants=["fm_rec"])).real.variants == []
    assert configure_preset("decide").real.variants == ["baseline", "fm_dis_cvt"]
    p = configure_preset("decide", BudgetOverrides(variants=["fm_rec"], real_variants=["fm_rec", "baseline", "fm_rec"]))
    assert (p.variants, p.real.variants) == (["fm_rec"], ["fm_rec", "baseline"])
    with pytest.raises(ValueError, match=r"unknown variants \['nope'\]"):
        configure_preset("decide", BudgetOverrides(real_variants=["nope"]))
    # nothing left to run: stopped before the output folder is made
    with pytest.raises(ValueError, match="--real-variants"):
        run_experiment(tmp_path / "a", "decide", BudgetOverrides(variants=["fm_rec"]), RunOptions(synthetic=False))
    with pytest.raises(ValueError, match="so is the real-data part"):
        run_experiment(tmp_path / "a", "decide", None, RunOptions(synthetic=False, real=False))
    assert not (tmp_path / "a").exists()


def test_budget_and_options_are_frozen():
    seeds = [1, 2]
    budget = BudgetOverrides(seeds=seeds, real_size=[96, 320])
    seeds.append(3)  # the caller's list is copied
    assert budget.seeds == (1, 2) and budget.real_size == (96, 320) and budget.steps is None
    with pytest.raises(AttributeError):
        budget.steps = 3  # type: ignore[misc]
    opts = RunOptions()
    assert (opts.synthetic, opts.real, opts.landscape, opts.shared_data, opts.keep_full_checkpoints) == (True, True, True, None, False)
    with pytest.raises(AttributeError):
        opts.real = False  # type: ignore[misc]


def test_cli_run_passes_budget_and_options(monkeypatch, capsys, tmp_path):
    """Every `featdepth experiment run` option reaches run_experiment (no training: it is replaced)."""
    from featdepth.cli import main
    from featdepth.experiments import runner

    calls = []
    monkeypatch.setattr(runner, "run_experiment", lambda *a, **k: calls.append((a, k)) or {})
    argv = ["experiment", "run", "--out", str(tmp_path), "--preset", "tiny", "--seeds", "3", "4", "--variants", "baseline",
            "--steps", "5", "--feature-steps", "6", "--real-steps", "7", "--real-feature-steps", "8", "--real-sources", "odom",
            "--real-seeds", "9", "--real-size", "64", "128", "--device", "cpu", "--set", "a=1", "-s", "b=2",
            "--real-set", "c=3", "--real-variants", "fm_rec", "--real-recipe", "robust", "--no-real", "--no-landscape", "--shared-data", "/data", "--keep-checkpoints", "--no-synthetic",
            "--featurenet-seeds", "0", "2"]
    assert main(argv) == 0
    (args, kwargs), = calls
    assert args == (str(tmp_path), "tiny",
                    BudgetOverrides(seeds=[3, 4], variants=["baseline"], steps=5, feature_steps=6, real_steps=7,
                                    real_feature_steps=8, real_sources=["odom"], real_seeds=[9], real_size=[64, 128],
                                    device="cpu", featurenet_seeds=[0, 2], real_variants=["fm_rec"],
                                    real_recipe="robust"),
                    RunOptions(synthetic=False, real=False, landscape=False, shared_data="/data", keep_full_checkpoints=True))
    assert kwargs["overrides"] == ["a=1", "b=2"] and kwargs["real_overrides"] == ["c=3"]
    assert capsys.readouterr().out.strip() == f"{tmp_path}/report.md"
    # without options: nothing overridden, everything runs
    calls.clear()
    assert main(["experiment", "run", "--out", str(tmp_path)]) == 0
    assert calls[0][0][1:] == ("cpu", BudgetOverrides(), RunOptions())
    calls.clear()
    assert main(["experiment", "run", "--out", str(tmp_path), "--featurenet-seeds", "each"]) == 0
    assert calls[0][0][2].featurenet_seeds == "each"
    with pytest.raises(SystemExit, match="--featurenet-seeds takes seeds"):
        main(["experiment", "run", "--out", str(tmp_path), "--featurenet-seeds", "x"])


def test_cli_dry_run(capsys):
    from featdepth.cli import main

    assert main(["experiment", "run", "--out", "unused", "--preset", "cpu", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "estimated" in out and "recipe paper" in out
    # the plan says what is skipped, and names the real recipe and the overrides it will use
    assert main(["experiment", "run", "--out", "unused", "--preset", "decide", "--dry-run", "--no-synthetic",
                 "--real-recipe", "paper", "--real-set", "optim.lr=2e-4"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "synthetic part skipped" in lines[1]
    assert "recipe paper" in lines[2] and "overrides: optim.lr=2e-4" in lines[2]
    assert main(["experiment", "run", "--out", "unused", "--preset", "decide", "--dry-run", "--no-real",
                 "--set", "train.amp=bf16"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "overrides: train.amp=bf16" in lines[1] and lines[2] == "real data: skipped (--no-real)"


# ------------------------------------------------------------------------------------------ real-data helpers


def test_realdata_helpers(shared_data, tmp_path):
    from featdepth.experiments import realdata

    assert realdata.find_shared_data(shared_data) == shared_data
    split_dir, split = realdata.write_raw_split(tmp_path, repeat=2)
    lines = (split_dir / split / "train_files.txt").read_text().splitlines()
    assert lines[:5] == [f"2011_09_26/2011_09_26_drive_0023_sync {i} l" for i in range(1, 6)] and len(lines) == 10
    K = realdata.read_odom_intrinsics(shared_data / "kitti_odom_06_tiny" / "calib.txt")
    assert K[0, 0] == pytest.approx(707.0912) and K[2, 2] == 1.0
    root = realdata.build_odom_folder(tmp_path, shared_data / "kitti_odom_06_tiny")
    seq = root / "odom06"
    assert len(list((seq / "images").glob("*.png"))) == 51 and (seq / "images" / "000000.png").is_symlink()
    from featdepth.data import FolderDataset

    ds = FolderDataset(root, [0, -1, 1], 64, 192, sequences=["odom06"])
    s = ds[0]
    assert s["color"][0].shape == (3, 64, 192)
    torch.testing.assert_close(s["color"][0][0], s["color"][0][1])  # grey replicated to 3 channels
    images, gts = realdata.load_raw_eval(shared_data / "kitti_raw_tiny", 64, 192)
    assert images.shape == (7, 3, 64, 192) and len(gts) == 7 and gts[0].shape == (375, 1242)
    grey = realdata.to_grey(images[:1])
    torch.testing.assert_close(grey[:, 0], grey[:, 2])
    images, gts, K = realdata.load_raw_eval(shared_data / "kitti_raw_tiny", 64, 192, with_intrinsics=True)
    assert K.shape == (7, 3, 3) and float(K[0, 0, 0]) == pytest.approx(721.5377 * 192 / 1242, rel=1e-3)
    # camera-height scaling of an untrained model: reported beside the median-scaled metrics of the same frames
    from featdepth.config import load_config
    from featdepth.inference.model import Model
    from featdepth.models.stage import StageNetworks

    cfg = load_config(None, ["train.stage=baseline", "data.height=64", "data.width=192", "model.depth_layers=18",
                             "model.pose_layers=18", "model.pose_input_size=null"])
    torch.manual_seed(0)
    nets = StageNetworks(cfg, stage="baseline").eval()
    model = Model.from_networks(nets.depth_net, nets.pose_net, cfg, stage="baseline")
    ch = realdata.evaluate_raw_camera_height(model, images, gts, K)
    # an untrained network predicts no ground plane anywhere: recorded with the reason, not a crash
    assert ch["frames_with_plane"] == 0 and "no ground plane found in any of the 7 images" in ch["error"]


# ------------------------------------------------------------------------------------------ end to end


def test_runner_tiny_budget(tmp_path):
    """2 variants x 1 seed with 2 steps each: trains, evaluates, writes the report with tables and figures."""
    preset = get_preset("tiny")
    preset.width = 128  # smaller than the tiny preset's 64x192: this test only checks the plumbing
    preset.landscape_points = 5
    preset.stats_images = 1
    out = tmp_path / "exp"
    results = run_experiment(out, preset, BudgetOverrides(variants=["baseline", "fm_rec"], seeds=[0], steps=2, feature_steps=2),
                             RunOptions(real=False), command="featdepth experiment run --preset tiny")
    # every run keeps its config, log and evaluation; the FeatureNet stage lives apart (shared)
    for v in ("baseline", "fm_rec"):
        run_dir = out / "runs" / v / "seed0"
        for name in ("config.yaml", "log.jsonl", "result.json", "summary.json"):
            assert (run_dir / name).is_file(), (v, name)
        assert (run_dir / "checkpoints" / "model.pt").is_file()
    fn_dir = out / "featurenets" / "rec" / "seed0"
    assert (fn_dir / "config.yaml").is_file() and (fn_dir / "checkpoints" / "model.pt").is_file()
    cfg_text = (out / "runs" / "fm_rec" / "seed0" / "config.yaml").read_text()
    assert "stage: depth" in cfg_text and str(fn_dir / "checkpoints" / "model.pt") in cfg_text
    assert "discriminative_weight: 0.0" in cfg_text
    # results
    assert [(r["variant"], r["seed"], r["steps"]) for r in results["runs"]] == [("baseline", 0, 2), ("fm_rec", 0, 2)]
    depth = results["runs"][0]["eval"]["depth"]
    assert {"all", "textureless", "textured", "road", "object"} <= set(depth)
    assert np.isfinite(depth["all"]["metrics"]["abs_rel"]) and np.isfinite(results["runs"][0]["eval"]["ate5"])
    assert json.loads((out / "results.json").read_text())["runs"][1]["variant"] == "fm_rec"
    # report with tables and figures
    report = (out / "report.md").read_text()
    for text in ("## Depth and pose", "**textureless**", "| `fm_rec` |", "## Loss landscape", "## FeatureNet statistics",
                 "figures/landscape.png", "figures/region_abs_rel.png"):
        assert text in report, text
    for fig in ("landscape.png", "region_abs_rel.png", "region_sq_rel.png", "pca_0.png"):
        assert (out / "figures" / fig).stat().st_size > 1000, fig
    assert {"rec", "intensity"} <= set(results["analysis"]["feature_stats"])


def test_real_overrides_reach_every_real_run(shared_data, tmp_path):
    """`--real-set`: the overrides reach the real-data FeatureNet and depth runs (after the real-clip recipe,
    so they win over it) and are recorded; the synthetic `--set` overrides do not reach them."""
    from featdepth.experiments.presets import RealPreset

    preset = get_preset("tiny")
    preset.real = RealPreset(height=64, width=192, batch_size=1, depth_steps=1, feature_steps=1,
                             variants=["baseline", "fm_dis_cvt"], sources=["raw"], num_workers=0)
    out = tmp_path / "exp"
    results = run_experiment(out, preset, None, RunOptions(synthetic=False, landscape=False, shared_data=str(shared_data)),
                             overrides=["loss.smoothness_weight=0.5"],
                             real_overrides=["model.disp_grad_floor=1e-3", "model.pose_output_scale=0.05"])
    assert results["real_overrides"] == ["model.disp_grad_floor=1e-3", "model.pose_output_scale=0.05"]
    assert results["real"]["overrides"] == results["real_overrides"]
    configs = sorted((out / "real" / "raw").rglob("config.yaml"))
    assert len(configs) == 3  # the fm_dis_cvt FeatureNet, baseline, fm_dis_cvt
    for path in configs:
        text = path.read_text()
        assert "disp_grad_floor: 0.001" in text, path  # the recipe's 0 is overridden
        assert "pose_output_scale: 0.05" in text, path  # the recipe's 0.01 is overridden
        assert "smoothness_weight: 0.5" not in text, path
    assert "extra overrides of the real-data runs | model.disp_grad_floor=1e-3" in (out / "report.md").read_text()


def test_bad_real_override_fails_before_anything_runs(tmp_path):
    from featdepth.config import ConfigError

    out = tmp_path / "exp"
    with pytest.raises(ConfigError, match="no_such_key"):
        run_experiment(out, "tiny", None, RunOptions(synthetic=False, landscape=False),
                       real_overrides=["model.no_such_key=1"])
    assert not out.exists()


def test_real_recipes(shared_data, tmp_path):
    """paper: PoseNet output scale 0.01, auto-masking from step 0, no floor; robust: synthetic_small's values."""
    from featdepth.config import load_config
    from featdepth.experiments import realdata

    base = load_config("synthetic_small")
    p = configure_preset("decide", BudgetOverrides(real_recipe="paper"))
    paper = load_config("synthetic_small", realdata.real_overrides("raw", shared_data, tmp_path, p, 0))
    assert (paper.model.pose_output_scale, paper.loss.automask_start_step, paper.model.disp_grad_floor) == (0.01, 0, 0.0)
    p = configure_preset("decide", BudgetOverrides(real_recipe="robust"))
    robust = load_config("synthetic_small", realdata.real_overrides("raw", shared_data, tmp_path, p, 0))
    assert (robust.model.pose_output_scale, robust.loss.automask_start_step, robust.model.disp_grad_floor) == (
        base.model.pose_output_scale, base.loss.automask_start_step, base.model.disp_grad_floor) == (0.1, 200, 1e-4)
    # everything else is the same
    assert paper.optim == robust.optim and paper.data == robust.data
    with pytest.raises(ValueError, match="unknown real-data recipe 'nope'"):
        configure_preset("decide", BudgetOverrides(real_recipe="nope"))
