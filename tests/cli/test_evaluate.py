"""``featdepth evaluate depth|pose`` and ``featdepth data export-gt`` through ``featdepth.cli.main``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from featdepth.cli import main
from featdepth.evaluation.depth_metrics import DEPTH_METRIC_NAMES, evaluate_depth, load_gt_depths
from featdepth.evaluation.gt_export import save_gt_depths
from featdepth.evaluation.trajectory import read_kitti_trajectory, read_tum_trajectory, write_kitti_trajectory
from tests.tasks.test_evaluate import DRIVE, build_odometry_layout, make_checkpoint, raw_gt, write_split


@pytest.fixture
def gt_setup(shared_data, tmp_path):
    """gt_depths.npz from the kitti_raw_tiny projected depth (7 images), and the stacked maps."""
    raw = shared_data / "kitti_raw_tiny"
    gts = raw_gt(raw, range(7))
    return save_gt_depths(tmp_path / "gt_depths.npz", gts), gts


def _run(capsys, *argv) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


# ------------------------------------------------------------------------------------------ depth, files
@pytest.mark.realdata
def test_depth_pred_equal_to_scaled_gt_gives_zero_error(gt_setup, tmp_path, capsys):
    gt_file, gts = gt_setup
    np.save(tmp_path / "pred.npy", np.stack(gts) * 2.0)
    rc, out, err = _run(capsys, "evaluate", "depth", "--pred", tmp_path / "pred.npy", "--gt", gt_file,
                        "--pred-kind", "depth", "--json", tmp_path / "m.json")
    assert rc == 0, err
    header = out.splitlines()[[i for i, line in enumerate(out.splitlines()) if "abs_rel" in line][0]]
    assert header.split("|")[0].strip() == "abs_rel" and [h.strip() for h in header.split("|")] == list(DEPTH_METRIC_NAMES)
    assert "median ratio" in out and "0.500" in out and "no online refinement" in out
    data = json.loads((tmp_path / "m.json").read_text())
    assert data["metrics"]["abs_rel"] == pytest.approx(0, abs=1e-6) and data["metrics"]["a1"] == 1.0
    assert data["ratio_median"] == pytest.approx(0.5, rel=1e-5) and data["num_images"] == 7
    assert data["protocol"] == "eigen" and data["scaling"] == "median"


@pytest.mark.realdata
def test_depth_perturbed_pred_matches_evaluate_depth(gt_setup, tmp_path, capsys):
    gt_file, gts = gt_setup
    rng = np.random.default_rng(1)
    pred = np.stack([np.where(g > 0, g, 20.0) for g in gts]) * rng.lognormal(0, 0.3, size=(7, *gts[0].shape))
    np.savez(tmp_path / "pred.npz", data=pred.astype(np.float32))
    rc, out, err = _run(capsys, "evaluate", "depth", "--pred", tmp_path / "pred.npz", "--gt", gt_file, "--pred-kind",
                        "depth", "--protocol", "eigen_benchmark", "--scaling", "2.0", "--json", tmp_path / "m.json")
    assert rc == 0, err
    direct = evaluate_depth(gts, pred.astype(np.float32), protocol="eigen_benchmark", scaling=2.0)
    data = json.loads((tmp_path / "m.json").read_text())
    assert data["metrics"] == pytest.approx(direct.metrics, rel=1e-12) and data["scaling"] == "fixed x2"
    assert direct.table_row() in out


@pytest.mark.parametrize(
    "case, fragment",
    [
        ("missing_pred", "nope.npy"),
        ("missing_gt", "nogt.npz"),
        ("wrong_n", "holds 6 predictions"),
        ("wrong_shape", "flat.npy"),
        ("gt_no_data_key", "expected key 'data'"),
    ],
)
@pytest.mark.realdata
def test_depth_bad_inputs_fail_naming_the_file(gt_setup, tmp_path, capsys, case, fragment):
    gt_file, gts = gt_setup
    pred = tmp_path / "pred.npy"
    np.save(pred, np.ones((7, 32, 96), np.float32))
    args = {"pred": pred, "gt": gt_file}
    if case == "missing_pred":
        args["pred"] = tmp_path / "nope.npy"
    elif case == "missing_gt":
        args["gt"] = tmp_path / "nogt.npz"
    elif case == "wrong_n":
        np.save(tmp_path / "six.npy", np.ones((6, 32, 96), np.float32))
        args["pred"] = tmp_path / "six.npy"
    elif case == "wrong_shape":
        np.save(tmp_path / "flat.npy", np.ones((32, 96), np.float32))
        args["pred"] = tmp_path / "flat.npy"
    else:
        np.savez(tmp_path / "other.npz", depths=np.ones((7, 10, 10)))
        args["gt"] = tmp_path / "other.npz"
    rc, out, err = _run(capsys, "evaluate", "depth", "--pred", args["pred"], "--gt", args["gt"])
    assert rc != 0 and fragment in err
    if case == "wrong_n":
        assert "six.npy" in err and "gt_depths.npz" in err


@pytest.mark.realdata
def test_depth_argument_errors(gt_setup, tmp_path, capsys):
    gt_file, _ = gt_setup
    np.save(tmp_path / "p.npy", np.ones((7, 8, 8), np.float32))
    for argv, fragment in (
        (["--pred", tmp_path / "p.npy"], "--pred needs --gt"),
        (["--gt", gt_file], "either --checkpoint"),
        (["--pred", tmp_path / "p.npy", "--gt", gt_file, "--checkpoint", "x.pt"], "either --checkpoint"),
        (["--pred", tmp_path / "p.npy", "--gt", gt_file, "--refine", "per-sample"], "--refine only applies"),
        (["--pred", tmp_path / "p.npy", "--gt", gt_file, "--scaling", "stereo"], "--scaling stereo needs a checkpoint"),
        (["--checkpoint", tmp_path / "x.pt"], "--checkpoint needs --data-path"),
        (["--checkpoint", tmp_path / "x.pt", "--data-path", tmp_path], "needs --split-file"),
    ):
        rc, out, err = _run(capsys, "evaluate", "depth", *argv)
        assert rc != 0 and fragment in err, (argv, err)
    with pytest.raises(SystemExit):  # argparse rejects a bad --scaling
        main(["evaluate", "depth", "--pred", "p.npy", "--gt", "g.npz", "--scaling", "-3"])
    capsys.readouterr()
    rc, out, err = _run(capsys, "evaluate", "depth", "--checkpoint", tmp_path / "none.pt", "--data-path", tmp_path,
                        "--split-file", tmp_path / "s.txt")
    assert rc != 0 and "none.pt" in err


# ------------------------------------------------------------------------------------------ depth, checkpoint
@pytest.mark.realdata
def test_depth_checkpoint_with_per_sample_refinement(shared_data, tmp_path, capsys):
    raw = shared_data / "kitti_raw_tiny"
    ckpt = make_checkpoint(tmp_path / "ms.pt", frame_ids="[0,-1,1,s]", extra=["data.stereo_baseline=0.015"])
    split = write_split(tmp_path / "test_files.txt", [2, 3])
    gt = save_gt_depths(tmp_path / "gt.npz", raw_gt(raw, [2, 3]))
    rc, out, err = _run(capsys, "evaluate", "depth", "--checkpoint", ckpt, "--data-path", raw, "--split-file", split,
                        "--gt", gt, "--scaling", "stereo", "--refine", "per-sample", "--refine-steps", "1",
                        "--device", "cpu", "--json", tmp_path / "r.json", "--save-pred", tmp_path / "disp.npy", "--quiet")
    assert rc == 0, err
    assert "online refinement, per-sample: 1 iterations" in out and "scaling fixed x36" in out
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["refinement"]["protocol"] == "per-sample" and data["refinement"]["num_refined"] == 2
    assert data["source"]["checkpoint"] == str(ckpt) and data["num_images"] == 2
    disp = np.load(tmp_path / "disp.npy")
    assert disp.shape == (2, 32, 96)
    # the saved disparities re-evaluate to the same numbers through --pred
    rc, out2, err = _run(capsys, "evaluate", "depth", "--pred", tmp_path / "disp.npy", "--gt", gt, "--scaling", "36",
                         "--json", tmp_path / "p.json")
    assert rc == 0, err
    assert json.loads((tmp_path / "p.json").read_text())["metrics"] == pytest.approx(data["metrics"], rel=1e-9)


def test_depth_checkpoint_on_folder_dataset(tmp_path, capsys):
    from featdepth.data.synthetic import generate_dataset

    generate_dataset(tmp_path / "synth", num_sequences=2, seed=5, num_frames=2, height=64, width=192, stereo=False)
    ckpt = make_checkpoint(tmp_path / "m.pt")
    rc, out, err = _run(capsys, "evaluate", "depth", "--checkpoint", ckpt, "--dataset", "folder", "--data-path",
                        tmp_path / "synth", "--sequences", "seq_001", "--protocol", "eigen_benchmark", "--device", "cpu",
                        "--json", tmp_path / "f.json")
    assert rc == 0, err
    data = json.loads((tmp_path / "f.json").read_text())
    assert data["num_images"] == 2 and data["source"]["dataset"] == "folder" and data["source"]["sequences"] == ["seq_001"]
    rc, out, err = _run(capsys, "evaluate", "depth", "--checkpoint", ckpt, "--dataset", "folder", "--data-path",
                        tmp_path / "synth", "--sequences", "seq_009")
    assert rc != 0 and "seq_009" in err


@pytest.mark.realdata
def test_depth_checkpoint_without_any_gt_explains(shared_data, tmp_path, capsys):
    raw = shared_data / "kitti_raw_tiny"
    root = tmp_path / "raw"
    (root / DRIVE).mkdir(parents=True)
    for name in ("calib_cam_to_cam.txt", "calib_velo_to_cam.txt"):
        (root / "2011_09_26" / name).symlink_to(raw / "2011_09_26" / name)
    for cam in ("image_02", "image_03"):  # images only, no proj_depth
        (root / DRIVE / cam).symlink_to(raw / DRIVE / cam)
    ckpt = make_checkpoint(tmp_path / "m.pt")
    split = write_split(tmp_path / "test_files.txt", [1])
    rc, out, err = _run(capsys, "evaluate", "depth", "--checkpoint", ckpt, "--data-path", root, "--split-file", split)
    assert rc != 0 and "proj_depth" in err and "export-gt" in err


# ------------------------------------------------------------------------------------------ pose
@pytest.mark.realdata
def test_pose_files_ground_truth_gives_zero_error(shared_data, tmp_path, capsys):
    gt = read_kitti_trajectory(shared_data / "kitti_odom_poses" / "09.txt")[:300]
    write_kitti_trajectory(tmp_path / "gt.txt", gt)
    write_kitti_trajectory(tmp_path / "pred.txt", gt)
    out_dir = tmp_path / "out"
    rc, out, err = _run(capsys, "evaluate", "pose", "--pred", tmp_path / "pred.txt", "--gt", tmp_path / "gt.txt",
                        "--out", out_dir, "--name", "09")
    assert rc == 0, err
    data = json.loads((out_dir / "09_pose_metrics.json").read_text())
    assert data["ate5"]["mean"] == pytest.approx(0, abs=1e-9) and data["ate5"]["num_snippets"] == 299
    assert data["kitti"]["t_err_percent"] == pytest.approx(0, abs=1e-6) and data["kitti"]["num_segments"] > 0
    assert data["kitti"]["r_err_deg_per_100m"] == pytest.approx(0, abs=1e-4) and data["kitti"]["align"] == "scale"
    assert "ATE-5: 0.0000" in out and "t_err 0.00 %" in out
    np.testing.assert_allclose(read_kitti_trajectory(out_dir / "09_pred.txt"), gt, atol=1e-6)
    np.testing.assert_allclose(read_tum_trajectory(out_dir / "09_pred_tum.txt")[1], gt, atol=1e-5)
    assert (out_dir / "09_gt_tum.txt").is_file()
    with Image.open(out_dir / "09_topview.png") as img:
        assert img.width > 100 and img.height > 100
    # --protocol kitti --align none with a JSON path only
    rc, out, err = _run(capsys, "evaluate", "pose", "--pred", tmp_path / "pred.txt", "--gt", tmp_path / "gt.txt",
                        "--protocol", "kitti", "--align", "none", "--json", tmp_path / "k.json")
    assert rc == 0, err
    k = json.loads((tmp_path / "k.json").read_text())
    assert "ate5" not in k and k["kitti"]["align"] == "none"


@pytest.mark.realdata
def test_pose_bad_inputs(shared_data, tmp_path, capsys):
    gt = read_kitti_trajectory(shared_data / "kitti_odom_poses" / "09.txt")[:20]
    write_kitti_trajectory(tmp_path / "gt.txt", gt)
    write_kitti_trajectory(tmp_path / "short.txt", gt[:10])
    (tmp_path / "bad.txt").write_text("1 2 3\n")
    for argv, fragment in (
        (["--pred", tmp_path / "short.txt", "--gt", tmp_path / "gt.txt"], "short.txt holds 10 poses"),
        (["--pred", tmp_path / "bad.txt", "--gt", tmp_path / "gt.txt"], "bad.txt, line 1"),
        (["--pred", tmp_path / "missing.txt", "--gt", tmp_path / "gt.txt"], "missing.txt"),
        (["--pred", tmp_path / "short.txt"], "--pred needs --gt"),
        (["--checkpoint", tmp_path / "c.pt"], "--data-path"),
    ):
        rc, out, err = _run(capsys, "evaluate", "pose", *argv)
        assert rc != 0 and fragment in err, (argv, err)


@pytest.mark.realdata
def test_pose_checkpoint_end_to_end(shared_data, tmp_path, capsys):
    root = build_odometry_layout(shared_data, tmp_path / "odom", 6)
    ckpt = make_checkpoint(tmp_path / "mono.pt")
    rc, out, err = _run(capsys, "evaluate", "pose", "--checkpoint", ckpt, "--data-path", root, "--sequence", "06",
                        "--out", tmp_path / "out", "--device", "cpu", "--batch-size", "4", "--quiet")
    assert rc == 0, err
    data = json.loads((tmp_path / "out" / "06_pose_metrics.json").read_text())
    assert data["num_frames"] == 6 and data["ate5"]["num_snippets"] == 5 and data["source"]["sequence"] == "06"
    assert len(read_kitti_trajectory(tmp_path / "out" / "06_pred.txt")) == 6
    assert (tmp_path / "out" / "06_topview.png").is_file() and out == ""  # --quiet: nothing but errors
    rc, out, err = _run(capsys, "evaluate", "pose", "--checkpoint", ckpt, "--data-path", root, "--sequence", "07",
                        "--out", tmp_path / "out2")
    assert rc != 0 and "07" in err


# ------------------------------------------------------------------------------------------ export-gt
@pytest.mark.realdata
def test_export_gt_benchmark_and_missing_scans(shared_data, tmp_path, capsys):
    raw = shared_data / "kitti_raw_tiny"
    gts = raw_gt(raw, [1, 2])
    # a KITTI depth-annotated tree built from the projected depth (uint16 PNG, value / 256)
    for i, g in zip([1, 2], gts):
        p = tmp_path / "annotated" / "train" / "2011_09_26_drive_0023_sync" / "proj_depth" / "groundtruth" / "image_02"
        p.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.round(g * 256).astype(np.uint16)).save(p / f"{i:010d}.png")
    (tmp_path / "splits" / "mine").mkdir(parents=True)
    split = write_split(tmp_path / "splits" / "mine" / "test_files.txt", [1, 2])
    rc, out, err = _run(capsys, "data", "export-gt", "--data-path", raw, "--split-dir", tmp_path / "splits", "--split",
                        "mine", "--out", tmp_path / "gt.npz", "--mode", "benchmark", "--gt-path", tmp_path / "annotated")
    assert rc == 0, err
    exported = load_gt_depths(tmp_path / "gt.npz")
    assert len(exported) == 2
    for e, g in zip(exported, gts):
        np.testing.assert_allclose(e, np.round(g * 256) / 256, atol=1e-6)
    # Velodyne mode: the tiny sample has no scans; the error names the missing file
    rc, out, err = _run(capsys, "data", "export-gt", "--data-path", raw, "--split-file", split, "--out", tmp_path / "v.npz")
    assert rc != 0 and "velodyne_points" in err and "0000000001.bin" in err
    rc, out, err = _run(capsys, "data", "export-gt", "--data-path", raw, "--split-file", tmp_path / "nosplit.txt",
                        "--out", tmp_path / "v.npz")
    assert rc == 2 and "nosplit.txt" in err
    rc, out, err = _run(capsys, "data", "export-gt", "--data-path", raw, "--split", "eigen", "--out", tmp_path / "v.npz")
    assert rc == 2 and "--split-dir and --split go together" in err
    assert DRIVE in split.read_text()


def test_non_finite_predictions_are_refused_unless_masked(tmp_path, capsys):
    """A prediction file with a NaN patch: an error naming the file and the count (exit 1), or with
    --mask-invalid the pixels are left out and the report says how many."""
    from featdepth.evaluation.gt_export import save_gt_depths

    rng = np.random.default_rng(0)
    gts = [rng.uniform(1.0, 50.0, (20, 30)).astype(np.float32) for _ in range(2)]
    gt_file = save_gt_depths(tmp_path / "gt.npz", gts)
    pred = np.stack([1.0 / g for g in gts]).astype(np.float32)
    pred[1, 2:4, 5:8] = np.nan
    np.save(tmp_path / "pred.npy", pred)
    rc = main(["evaluate", "depth", "--pred", str(tmp_path / "pred.npy"), "--gt", str(gt_file),
               "--protocol", "eigen_benchmark", "--scaling", "none"])
    err = capsys.readouterr().err
    assert rc != 0 and "pred.npy" in err and "6 of 600" in err
    rc = main(["evaluate", "depth", "--pred", str(tmp_path / "pred.npy"), "--gt", str(gt_file),
               "--protocol", "eigen_benchmark", "--scaling", "none", "--mask-invalid"])
    out = capsys.readouterr().out
    assert rc == 0 and "masked: 6 ground-truth pixels" in out
