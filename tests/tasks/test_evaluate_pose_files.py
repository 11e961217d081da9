"""`featdepth evaluate pose --pred --gt`: stationary and degenerate predictions, KITTI and TUM files
(auto-detected, as `predict trajectory` writes them), and length mismatches (--trim)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from featdepth.cli import main
from featdepth.evaluation.trajectory import (
    detect_trajectory_format,
    read_trajectory,
    write_kitti_trajectory,
    write_tum_trajectory,
)
from featdepth.tasks.evaluate import evaluate_pose_files


def _drive(n: int = 150, step: float = 1.0) -> np.ndarray:
    """A camera driving forward ``step`` m per frame with a gentle left turn (T_world_cam)."""
    poses = np.tile(np.eye(4), (n, 1, 1))
    yaw, pos = 0.0, np.zeros(3)
    for i in range(n):
        c, s = np.cos(yaw), np.sin(yaw)
        poses[i, :3, :3] = [[c, 0, s], [0, 1, 0], [-s, 0, c]]
        poses[i, :3, 3] = pos
        pos = pos + step * np.array([s, 0.0, c])
        yaw += 0.004
    return poses


def _zero_motion_ate5(gt: np.ndarray) -> float:
    """Independent oracle: a camera that never moves; per 5-frame snippet the ATE is sqrt(sum |gt_j - gt_0|^2) / n
    (distances within the snippet; the least-squares scale of an all-zero prediction is 0)."""
    ates = []
    n = len(gt)
    for i in range(n - 1):
        snippet = gt[i : min(i + 5, n), :3, 3]
        d = snippet - snippet[0]
        ates.append(np.sqrt(np.sum(d**2)) / len(snippet))
    return float(np.mean(ates))


def test_stationary_prediction_reports_zero_motion_and_undefined_scale(tmp_path, capsys):
    gt = _drive()
    write_kitti_trajectory(tmp_path / "gt.txt", gt)
    write_kitti_trajectory(tmp_path / "still.txt", np.tile(np.eye(4), (len(gt), 1, 1)))
    ev = evaluate_pose_files(tmp_path / "still.txt", tmp_path / "gt.txt", align="scale")
    m = ev.metrics
    oracle = _zero_motion_ate5(gt)
    assert m["zero_motion"]["ate5"] == pytest.approx(oracle, rel=1e-6)
    assert m["ate5"]["mean"] == pytest.approx(oracle, rel=1e-6)  # standing still is exactly the baseline
    assert m["stationary_prediction"] is True
    k = m["kitti"]
    assert k["scale_undefined"] is True and k["scale"] is None and "scale undefined" in k["note"]
    # never moved: the error is the whole displacement (chord / driven length, just under 100 % on a curve)
    assert k["num_segments"] > 0 and 98.0 < k["t_err_percent"] <= 100.0
    rc = main(["evaluate", "pose", "--pred", str(tmp_path / "still.txt"), "--gt", str(tmp_path / "gt.txt"),
               "--out", str(tmp_path / "out")])
    out = capsys.readouterr().out
    assert rc == 0 and "scale undefined" in out and "zero-motion ATE-5" in out
    assert (tmp_path / "out" / "still_topview.png").is_file()


def test_moving_prediction_beats_zero_motion_and_ground_truth_that_never_moves(tmp_path):
    gt = _drive()
    write_kitti_trajectory(tmp_path / "gt.txt", gt)
    write_kitti_trajectory(tmp_path / "pred.txt", gt)
    m = evaluate_pose_files(tmp_path / "pred.txt", tmp_path / "gt.txt").metrics
    assert m["ate5"]["mean"] == pytest.approx(0, abs=1e-9) and m["zero_motion"]["ate5"] > 0.5
    assert "stationary_prediction" not in m and m["kitti"]["scale"] == pytest.approx(1.0)
    write_kitti_trajectory(tmp_path / "still_gt.txt", np.tile(np.eye(4), (len(gt), 1, 1)))
    m = evaluate_pose_files(tmp_path / "pred.txt", tmp_path / "still_gt.txt").metrics
    assert m["kitti"]["num_segments"] == 0 and "never moves" in m["kitti"]["note"]


def test_tum_and_kitti_files_are_detected_and_agree(tmp_path):
    gt = _drive()
    pred = gt.copy()
    pred[:, :3, 3] *= 0.5  # half scale: the 'scale' alignment recovers 2
    write_kitti_trajectory(tmp_path / "gt.txt", gt)
    write_kitti_trajectory(tmp_path / "pred.txt", pred)
    # what `featdepth predict trajectory` writes: a TUM file with a comment header and timestamps
    write_tum_trajectory(tmp_path / "pred_tum.txt", pred, np.arange(len(pred)) / 10.0)
    write_tum_trajectory(tmp_path / "gt_tum.txt", gt)
    assert detect_trajectory_format(tmp_path / "pred_tum.txt") == "tum"
    assert detect_trajectory_format(tmp_path / "gt.txt") == "kitti"
    poses, stamps, fmt = read_trajectory(tmp_path / "pred_tum.txt")
    assert fmt == "tum" and stamps[1] == pytest.approx(0.1) and np.allclose(poses, pred, atol=1e-6)
    ref = evaluate_pose_files(tmp_path / "pred.txt", tmp_path / "gt.txt").metrics
    for p, g in (("pred_tum.txt", "gt.txt"), ("pred.txt", "gt_tum.txt"), ("pred_tum.txt", "gt_tum.txt")):
        m = evaluate_pose_files(tmp_path / p, tmp_path / g).metrics
        assert m["kitti"]["scale"] == pytest.approx(2.0, rel=1e-5)
        assert m["kitti"]["t_err_percent"] == pytest.approx(ref["kitti"]["t_err_percent"], abs=1e-4)
        assert m["ate5"]["mean"] == pytest.approx(ref["ate5"]["mean"], abs=1e-6)
    assert m["source"]["pred_format"] == "tum" and m["source"]["gt_format"] == "tum"
    (tmp_path / "odd.txt").write_text("1 2 3 4 5\n")
    with pytest.raises(ValueError, match="odd.txt, line 1: 5 numbers"):
        read_trajectory(tmp_path / "odd.txt")


def test_length_mismatch_needs_trim_and_is_reported(tmp_path, capsys):
    gt = _drive()
    write_kitti_trajectory(tmp_path / "gt.txt", gt)
    write_tum_trajectory(tmp_path / "pred.txt", gt[:120])
    argv = ["evaluate", "pose", "--pred", str(tmp_path / "pred.txt"), "--gt", str(tmp_path / "gt.txt")]
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 1 and "120 poses" in err and "150" in err and "--trim" in err and "Error" not in err
    rc = main(argv + ["--trim", "--json", str(tmp_path / "m.json")])
    out = capsys.readouterr().out
    assert rc == 0 and "trimmed to the first 120 poses" in out
    m = json.loads((tmp_path / "m.json").read_text())
    assert m["trim"] == {"pred_poses": 120, "gt_poses": 150, "used": 120,
                         "note": "trimmed to the first 120 poses (prediction 120, ground truth 150)"}
    assert m["num_frames"] == 120 and m["ate5"]["mean"] == pytest.approx(0, abs=1e-6)
    rc = main(argv + ["--trim", "-q"])
    assert rc == 0 and capsys.readouterr() == ("", "")
