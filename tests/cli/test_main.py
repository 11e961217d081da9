"""The `featdepth` command line: help, presets, errors that name the key, data synth, the demo."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from featdepth.cli import main


def test_version_and_help(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert "featdepth" in capsys.readouterr().out


def test_config_list_and_show(capsys):
    assert main(["config", "list"]) == 0
    names = capsys.readouterr().out.split()
    assert "kitti_featdepth_m" in names and "demo" in names
    assert main(["config", "show", "-c", "kitti_featdepth_ms", "--set", "optim.lr=3e-4"]) == 0
    out = capsys.readouterr().out
    assert "lr: 0.0003" in out and "stage: depth" in out


def test_bad_key_is_a_one_line_error(capsys):
    assert main(["train", "-c", "synthetic_small", "--set", "optim.nope=1"]) == 2
    err = capsys.readouterr().err
    assert "unknown config key 'optim.nope'" in err and "Traceback" not in err


def test_module_entry_point_runs():
    proc = subprocess.run([sys.executable, "-m", "featdepth", "config", "list"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "synthetic_small" in proc.stdout


def test_data_synth_writes_the_folder_format(tmp_path):
    assert main(["data", "synth", "--out", str(tmp_path), "--sequences", "1", "--frames", "3",
                 "--height", "64", "--width", "192"]) == 0
    seq = tmp_path / "seq_000"
    assert len(list((seq / "images").glob("*.png"))) == 3
    assert (seq / "intrinsics.txt").is_file() and (seq / "poses.txt").is_file()
    assert np.load(seq / "depth" / "000000.npy").shape == (64, 192)


def test_data_synth_weave_writes_a_turning_camera(tmp_path):
    assert main(["data", "synth", "--out", str(tmp_path), "--sequences", "1", "--frames", "40", "--height", "32",
                 "--width", "96", "--no-stereo", "--weave"]) == 0
    seq = tmp_path / "seq_000"
    assert json.loads((seq / "meta.json").read_text())["config"]["sway_max_m"] == 1.5
    P = np.loadtxt(seq / "poses.txt").reshape(-1, 3, 4)
    yaw = np.degrees(np.arctan2(P[:, 0, 2], P[:, 2, 2]))
    assert np.abs(np.diff(yaw)).max() > 0.6  # the lane-keeping default turns by < 0.4 deg per frame


def test_demo_writes_metrics_pictures_and_checkpoint(tmp_path):
    """A tiny demo run: the real budget is set by the preset (see README); here only the plumbing."""
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--steps", "2", "--device", "cpu",
                 "--set", "feature_stage.max_steps=1", "--set", "data.synth_frames=8",
                 "--set", "data.synth_sequences=1", "--set", "data.height=64", "--set", "data.width=192",
                 "--set", "data.num_workers=0", "--set", "train.progress=false"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) >= {"initial", "final", "zero_motion", "seconds"}
    for key in ("initial", "final"):
        assert set(metrics[key]) >= {"abs_rel", "sq_rel", "rmse", "rmse_log", "a1", "a2", "a3", "ate5"}
        assert all(np.isfinite(v) for k, v in metrics[key].items() if k not in ("t_err", "r_err"))
        assert {"t_err", "r_err"} <= set(metrics[key])  # None where the sequence is shorter than 100 m
    assert metrics["zero_motion"]["ate5"] > 0
    assert set(metrics["no_rotation"]) == {"r_err", "heading_error_deg"}  # the reference for the rotation
    assert metrics["no_rotation"]["heading_error_deg"] >= 0
    rr = metrics["rotation_response"]  # predicted against true yaw on rendered pairs with known turns
    assert {"slope", "intercept", "r", "mae_deg", "pairs", "yaws_deg", "true_by_yaw", "predicted_by_yaw"} <= set(rr)
    assert rr["pairs"] == 5 * len(rr["yaws_deg"]) and np.isfinite(rr["slope"])
    assert (out / "checkpoint.pt").is_file() and (out / "trajectory.png").is_file()
    assert len(list(out.glob("depth_*.png"))) == 3
    from PIL import Image

    picture = Image.open(out / "depth_0.png")  # three labelled panels, enlarged from 192x64 to 192 px high
    assert picture.size == (3 * 192 * 3, 3 * 64 + 16)


def test_demo_runs_the_baseline_stage(tmp_path):
    """`featdepth demo --set train.stage=baseline` trains and evaluates the photometric-only baseline (it used to
    train, then fail to load the baseline checkpoint into a two-stage system)."""
    out = tmp_path / "demo_base"
    assert main(["demo", "--out", str(out), "--steps", "1", "--device", "cpu", "--set", "train.stage=baseline",
                 "--set", "data.synth_frames=8", "--set", "data.synth_sequences=1", "--set", "data.num_workers=0",
                 "--set", "train.progress=false"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["stage"] == "baseline" and metrics["steps"]["baseline"] == 1 and metrics["has_pose"] is True
    assert metrics["steps"]["featurenet"] is None and not (out / "run" / "featurenet").exists()
    assert set(metrics["take_off"]) == {"abs_rel_ratio", "ate5_ratio", "passed"}


def test_demo_weave_trains_on_a_turning_camera(tmp_path):
    out = tmp_path / "demo_weave"
    assert main(["demo", "--weave", "--out", str(out), "--steps", "1", "--device", "cpu", "--set", "train.stage=baseline",
                 "--set", "data.synth_frames=8", "--set", "data.synth_sequences=1", "--set", "data.num_workers=0",
                 "--set", "train.progress=false"]) == 0
    for seq in ("seq_000", "seq_001"):  # training and held-out sequences
        used = json.loads((out / "data" / seq / "meta.json").read_text())["config"]
        assert used["sway_max_m"] == 1.5 and used["sway_period_range"] == [40.0, 60.0]
    assert "rotation_response" in json.loads((out / "metrics.json").read_text())


def test_take_off_criterion():
    from featdepth.tasks.demo import take_off

    def m(ini, fin, ate, zero):
        return {"initial": {"abs_rel": ini}, "final": {"abs_rel": fin, "ate5": ate}, "zero_motion": {"ate5": zero}}

    assert take_off(m(0.4, 0.24, 0.7, 1.0)) == {"abs_rel_ratio": pytest.approx(0.6), "ate5_ratio": 0.7, "passed": True}
    assert not take_off(m(0.4, 0.25, 0.1, 1.0))["passed"]  # depth ratio 0.625
    assert not take_off(m(0.4, 0.1, 0.71, 1.0))["passed"]  # pose ratio 0.71
    assert take_off(m(0.4, 0.1, None, 1.0)) == {"abs_rel_ratio": 0.25, "ate5_ratio": None, "passed": False}
    # a stereo-only model has no PoseNet: judged on depth alone
    assert take_off({**m(0.4, 0.2, None, 1.0), "has_pose": False})["passed"]
    assert not take_off({**m(0.4, 0.25, None, 1.0), "has_pose": False})["passed"]
    assert not take_off({**m(0.4, 0.2, None, 1.0), "has_pose": True})["passed"]


def test_demo_stereo_only_has_no_pose_metrics(tmp_path):
    """`featdepth demo --set data.frame_ids=[0,s]` trains without a PoseNet; it used to stop with "this model has
    no PoseNet" after training, when it measured the rotation response."""
    out = tmp_path / "demo_stereo"
    assert main(["demo", "--out", str(out), "--steps", "1", "--device", "cpu", "--set", "train.stage=baseline",
                 "--set", "data.frame_ids=[0,s]", "--set", "data.synth_frames=8", "--set", "data.synth_sequences=1",
                 "--set", "data.num_workers=0", "--set", "train.progress=false"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["has_pose"] is False and metrics["rotation_response"] is None
    assert metrics["final"]["ate5"] is None and metrics["final"]["abs_rel"] > 0
    assert metrics["take_off"]["ate5_ratio"] is None and len(list(out.glob("depth_*.png"))) == 3
