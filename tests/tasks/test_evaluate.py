"""Checkpoint-driven and file-driven evaluation (featdepth.tasks.evaluate).

Real KITTI samples from ../shared/data are read in place (skipped when absent); models are tiny random
ResNet-18 networks at 64x192 saved as checkpoints in tmp_path.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import featdepth
from PIL import Image

from featdepth.config import config_to_dict, load_config
from featdepth.data.io import DataError
from featdepth.training.checkpoints import CheckpointError
from featdepth.evaluation.depth_metrics import DEPTH_METRIC_NAMES, evaluate_depth, post_process_disparity
from featdepth.evaluation.gt_export import save_gt_depths
from featdepth.tasks.evaluate import (
    build_eval_dataset,
    evaluate_depth_checkpoint,
    evaluate_depth_files,
    evaluate_pose_checkpoint,
    evaluate_trajectory,
    metric_scale_factor,
    parse_scaling,
    predict_sequence_poses,
)
from featdepth.training.refinement import predict_scaled_disparity
from featdepth.evaluation.trajectory import chain_relative_poses, read_kitti_trajectory, read_tum_trajectory
from featdepth.training.system import FeatDepthSystem, load_system

DRIVE = "2011_09_26/2011_09_26_drive_0023_sync"
TINY = [
    "data.height=64", "data.width=192", "model.depth_layers=18", "model.pose_layers=18", "model.feature_layers=18",
    "model.pose_input_size=null", "data.num_workers=0", "train.device=cpu",
]


# ------------------------------------------------------------------------------------------ helpers
def make_checkpoint(path: Path, *, stage: str = "baseline", frame_ids: str = "[0,-1,1]", extra=()) -> Path:
    """Save a random tiny model as a training-style checkpoint (model, config, stage)."""
    cfg = load_config(None, TINY + [f"train.stage={stage}", f"data.frame_ids={frame_ids}", *extra])
    torch.manual_seed(0)
    system = FeatDepthSystem(cfg, stage=stage)
    torch.save({"model": system.state_dict(), "config": config_to_dict(cfg), "stage": stage, "step": 7}, path)
    return path


def write_split(path: Path, frames, side: str = "l") -> Path:
    path.write_text("".join(f"{DRIVE} {i} {side}\n" for i in frames))
    return path


def raw_gt(raw_root: Path, frames) -> list[np.ndarray]:
    out = []
    for i in frames:
        with np.load(raw_root / DRIVE / "proj_depth" / "velodyne" / "image_02" / f"{i:010d}.npz") as npz:
            out.append(npz["velodyne_depth"].astype(np.float32))
    return out


def build_odometry_layout(shared: Path, root: Path, n_frames: int) -> Path:
    """Official KITTI odometry layout from kitti_odom_06_tiny (symlinks; grey frames stand in for image_2/3)."""
    src = shared / "kitti_odom_06_tiny"
    seq = root / "sequences" / "06"
    for d in ("image_0", "image_1", "image_2", "image_3"):
        (seq / d).mkdir(parents=True)
    for i in range(n_frames):
        name = f"{i:06d}.png"
        for d, s in (("image_0", "image_l"), ("image_2", "image_l"), ("image_1", "image_r"), ("image_3", "image_r")):
            (seq / d / name).symlink_to(src / s / name)
    p0, p1 = [line.split() for line in (src / "calib.txt").read_text().splitlines() if line.strip()]
    labelled = {"P0": p0, "P1": p1, "P2": p0, "P3": p1, "Tr": "1 0 0 0 0 1 0 0 0 0 1 0".split()}
    (seq / "calib.txt").write_text("".join(f"{k}: {' '.join(v)}\n" for k, v in labelled.items()))
    (seq / "times.txt").write_text("".join(f"{0.1 * i:.6e}\n" for i in range(n_frames)))
    (root / "poses").mkdir()
    (root / "poses" / "06.txt").write_text((src / "poses.txt").read_text())
    return root


# ------------------------------------------------------------------------------------------ scaling
def test_scaling_and_metric_factor():
    ms = load_config(None, TINY + ["data.frame_ids=[0,-1,1,s]", "data.stereo_baseline=0.015"])
    assert metric_scale_factor(ms) == pytest.approx(36.0, abs=1e-9)
    assert parse_scaling("stereo", ms) == pytest.approx(36.0)
    real = load_config(None, TINY + ["data.frame_ids=[0,s]"])
    assert metric_scale_factor(real) == 1.0
    mono = load_config(None, TINY)
    with pytest.raises(ValueError, match="median"):
        metric_scale_factor(mono)
    with pytest.raises(ValueError, match="needs a checkpoint"):
        parse_scaling("stereo")
    assert parse_scaling("median") == "median" and parse_scaling("none") is None and parse_scaling("2.5") == 2.5
    for bad in ("-1", "0", "abc"):
        with pytest.raises(ValueError):
            parse_scaling(bad)


# ------------------------------------------------------------------------------------------ depth files
@pytest.mark.realdata
def test_depth_files_zero_error_and_same_numbers_as_evaluate_depth(shared_data, tmp_path):
    raw = shared_data / "kitti_raw_tiny"
    gts = raw_gt(raw, range(7))
    gt_file = save_gt_depths(tmp_path / "gt_depths.npz", gts)
    stack = np.stack(gts)
    # GT x 2 as depth and as disparity: zero error after median scaling, ratio 0.5
    np.save(tmp_path / "depth.npy", stack * 2)
    disp = np.where(stack > 0, 1.0 / np.maximum(2 * stack, 1e-6), 1.0).astype(np.float32)
    np.savez(tmp_path / "disp.npz", disp=disp)
    for pred, kind in ((tmp_path / "depth.npy", "depth"), (tmp_path / "disp.npz", "disparity")):
        ev = evaluate_depth_files(pred, gt_file, pred_kind=kind, protocol="eigen", scaling="median")
        m = ev.result.metrics
        assert m["abs_rel"] == pytest.approx(0, abs=1e-6) and m["rmse"] == pytest.approx(0, abs=1e-4)
        assert m["a1"] == 1.0 and ev.result.ratio_median == pytest.approx(0.5, rel=1e-5)
        assert ev.result.num_images == 7
    # a perturbed low-resolution disparity: the same numbers as evaluate_depth called directly
    rng = np.random.default_rng(0)
    low = np.stack([np.asarray(Image.fromarray(d).resize((320, 96), Image.Resampling.BILINEAR)) for d in disp])
    low = (low * rng.lognormal(0, 0.2, size=low.shape)).astype(np.float32)
    np.save(tmp_path / "pert.npy", low)
    for protocol, scaling in (("eigen", "median"), ("eigen_benchmark", 36.0)):
        ev = evaluate_depth_files(tmp_path / "pert.npy", gt_file, protocol=protocol, scaling=scaling)
        direct = evaluate_depth(gts, low, protocol=protocol, scaling=scaling, preds_are_disparity=True)
        assert ev.result.metrics == direct.metrics
        assert ev.result.ratio_median == direct.ratio_median and ev.result.ratio_std == direct.ratio_std
        assert ev.result.metrics["abs_rel"] > 0.01
    d = ev.as_dict()
    assert d["source"]["predictions"].endswith("pert.npy") and d["refinement"]["protocol"] == "none"


def test_depth_files_bad_inputs_name_the_files(tmp_path):
    gt_file = save_gt_depths(tmp_path / "gt.npz", [np.full((20, 30), 5.0, np.float32)] * 3)
    np.save(tmp_path / "two.npy", np.ones((2, 20, 30), np.float32))
    with pytest.raises(ValueError, match=r"two.npy holds 2 predictions but .*gt.npz holds 3"):
        evaluate_depth_files(tmp_path / "two.npy", gt_file)
    np.save(tmp_path / "flat.npy", np.ones((20, 30), np.float32))
    with pytest.raises(ValueError, match=r"flat.npy.*\(N, h, w\)"):
        evaluate_depth_files(tmp_path / "flat.npy", gt_file)
    with pytest.raises(FileNotFoundError, match="missing.npy"):
        evaluate_depth_files(tmp_path / "missing.npy", gt_file)
    with pytest.raises(ValueError, match="pred_kind"):
        evaluate_depth_files(tmp_path / "two.npy", gt_file, pred_kind="inverse")


# ------------------------------------------------------------------------------------------ checkpoints
def test_load_system_errors(tmp_path):
    with pytest.raises(CheckpointError, match="nothing.pt"):
        load_system(tmp_path / "nothing.pt")
    torch.save({"model": {}}, tmp_path / "noconfig.pt")
    with pytest.raises(ValueError, match="noconfig.pt: not a featdepth training checkpoint"):
        load_system(tmp_path / "noconfig.pt")
    make_checkpoint(tmp_path / "fn.pt", stage="featurenet")
    with pytest.raises(ValueError, match="FeatureNet"):
        load_system(tmp_path / "fn.pt")
    # weights of another architecture
    ck = torch.load(make_checkpoint(tmp_path / "m.pt"), weights_only=False)
    ck["config"]["model"]["depth_layers"] = 34
    torch.save(ck, tmp_path / "wrong.pt")
    with pytest.raises(ValueError, match="wrong.pt: the weights do not match"):
        load_system(tmp_path / "wrong.pt")


@pytest.mark.realdata
def test_depth_checkpoint_on_kitti_raw_tiny(shared_data, tmp_path):
    raw = shared_data / "kitti_raw_tiny"
    frames = [0, 3, 6]
    ckpt = make_checkpoint(tmp_path / "ms.pt", frame_ids="[0,-1,1,s]", extra=["data.stereo_baseline=0.015"])
    split = write_split(tmp_path / "test_files.txt", frames)
    gt_file = save_gt_depths(tmp_path / "gt_depths.npz", raw_gt(raw, frames))

    system = load_system(ckpt)
    assert system.stage == "baseline" and system.checkpoint_step == 7 and not system.training
    loaded = featdepth.load(ckpt, device="cpu")
    assert loaded.stage == "baseline" and loaded.step == 7
    ev_ds = evaluate_depth_checkpoint(ckpt, raw, split_file=split, scaling="stereo", model=loaded)
    ev_gt = evaluate_depth_checkpoint(ckpt, raw, split_file=split, gt_path=gt_file, scaling="stereo", model=loaded)
    assert ev_ds.result.metrics == ev_gt.result.metrics  # dataset GT == the exported file
    assert ev_ds.result.scaling == "fixed x36" and ev_ds.result.num_images == 3
    assert ev_ds.disparities.shape == (3, 32, 96)  # finest FeatDepth decoder output: H/2 x W/2
    # the same numbers as predicting the images by hand and calling evaluate_depth
    ds = build_eval_dataset(loaded.config, "kitti_raw", raw, split_file=split)
    images = torch.stack([ds[i]["color"][0] for i in range(len(ds))])
    disp = predict_scaled_disparity(system, images)
    np.testing.assert_allclose(disp, ev_ds.disparities, rtol=1e-5, atol=1e-7)
    direct = evaluate_depth(raw_gt(raw, frames), disp, protocol="eigen", scaling=36.0, preds_are_disparity=True)
    for k in DEPTH_METRIC_NAMES:
        assert ev_ds.result.metrics[k] == pytest.approx(direct.metrics[k], rel=1e-5)
    # flip post-processing: the blend of the prediction and the flipped image's prediction
    pp = predict_scaled_disparity(system, images, post_process=True)
    flipped = predict_scaled_disparity(system, torch.flip(images, dims=[3]))
    np.testing.assert_allclose(pp, post_process_disparity(disp, flipped), rtol=1e-5, atol=1e-7)
    ev_pp = evaluate_depth_checkpoint(ckpt, raw, split_file=split, scaling="median", post_process=True,
                                      gt_path=gt_file, model=loaded, batch_size=2)
    np.testing.assert_allclose(ev_pp.disparities, pp, rtol=1e-5, atol=1e-7)
    d = ev_pp.as_dict()
    assert d["source"]["checkpoint"] == str(ckpt) and d["source"]["input_size"] == [64, 192]
    assert d["post_process"] is True and d["refinement"]["label"] == "no online refinement"
    # a split line without an image, and a GT file of another length: errors before any prediction
    write_split(tmp_path / "bad.txt", [0, 40])
    with pytest.raises(DataError, match=r"bad.txt: 1 entries have no image"):
        evaluate_depth_checkpoint(ckpt, raw, split_file=tmp_path / "bad.txt", gt_path=gt_file, model=loaded)
    write_split(tmp_path / "two.txt", [0, 1])
    with pytest.raises(ValueError, match=r"gt_depths.npz holds 3 ground-truth maps but the split .*two.txt has 2"):
        evaluate_depth_checkpoint(ckpt, raw, split_file=tmp_path / "two.txt", gt_path=gt_file, model=loaded)


# ------------------------------------------------------------------------------------------ pose
@pytest.mark.realdata
def test_trajectory_metrics_zero_for_ground_truth(shared_data):
    gt = read_kitti_trajectory(shared_data / "kitti_odom_poses" / "09.txt")[:300]
    m = evaluate_trajectory(gt, gt.copy(), protocol="both", align="scale")
    assert m["ate5"]["mean"] == pytest.approx(0, abs=1e-9) and m["ate5"]["num_snippets"] == 299
    assert m["kitti"]["num_segments"] > 0 and m["kitti"]["t_err_percent"] == pytest.approx(0, abs=1e-6)
    assert m["kitti"]["r_err_deg_per_100m"] == pytest.approx(0, abs=1e-4) and m["kitti"]["scale"] == pytest.approx(1)
    assert "100" in m["kitti"]["per_length"] and "segments" not in m["kitti"]
    with pytest.raises(ValueError, match="300 poses but the prediction has 299"):
        evaluate_trajectory(gt, gt[:299])


@pytest.mark.realdata
def test_pose_checkpoint_on_odometry_layout(shared_data, tmp_path):
    from featdepth.data import KittiOdometryDataset
    from featdepth.evaluation.loop import predict_relative_poses

    n = 8
    root = build_odometry_layout(shared_data, tmp_path / "odom", n)
    ckpt = make_checkpoint(tmp_path / "mono.pt")
    loaded = featdepth.load(ckpt, device="cpu")
    ev = evaluate_pose_checkpoint(ckpt, root, "6", out_dir=tmp_path / "out", model=loaded, batch_size=3)
    # streamed prediction (chunks of 3 frames) == one pass over all frames
    ds = KittiOdometryDataset(root, ["06"], [0], 64, 192)
    images = torch.stack([ds[i]["color"][0] for i in range(n)])
    rel = predict_relative_poses(loaded, images, batch_size=16)
    np.testing.assert_allclose(ev.pred, chain_relative_poses(rel), atol=1e-6)
    m = ev.metrics
    assert m["num_frames"] == n and m["ate5"]["num_snippets"] == n - 1 and m["ate5"]["mean"] > 0
    assert m["kitti"]["num_segments"] == 0 and "shorter than 100 m" in m["kitti"]["note"]
    assert f"first {n} of the 51" in m["note"] and m["source"]["cameras"] == "color"
    np.testing.assert_allclose(read_kitti_trajectory(ev.files["pred_kitti"]), ev.pred, atol=1e-8)
    ts, tum = read_tum_trajectory(ev.files["pred_tum"])
    np.testing.assert_allclose(ts, 0.1 * np.arange(n), atol=1e-6)  # times.txt of the sequence
    np.testing.assert_allclose(tum, ev.pred, atol=1e-6)
    assert Path(ev.files["topview"]).stat().st_size > 1000 and Path(ev.files["json"]).is_file()
    # the grey cameras (image_0) and a frame limit
    rel_grey, frames = predict_sequence_poses(loaded, root, "06", cameras="grey", max_frames=3)
    assert rel_grey.shape == (2, 4, 4) and frames == [0, 1, 2]
    # a model without PoseNet
    stereo = featdepth.load(make_checkpoint(tmp_path / "s.pt", frame_ids="[0,s]"), device="cpu")
    with pytest.raises(ValueError, match="no PoseNet"):
        predict_sequence_poses(stereo, root, "06")
