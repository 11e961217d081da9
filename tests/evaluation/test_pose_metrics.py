"""Tests of featdepth.evaluation.pose_metrics (hand values, real KITTI trajectories, independent devkit loop)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from featdepth.evaluation.pose_metrics import (
    accumulate_positions,
    align_trajectory,
    ate_5frame,
    calc_sequence_errors,
    evaluate_ate5,
    kitti_odometry_errors,
    last_frame_from_segment_length,
    rotation_error,
    snippets_from_relative_poses,
    trajectory_distances,
    translation_error,
    umeyama_alignment,
)
from featdepth.evaluation.trajectory import chain_relative_poses, read_kitti_trajectory, relative_poses_from_absolute


def _rodrigues(w: np.ndarray) -> np.ndarray:
    th = float(np.linalg.norm(w))
    if th < 1e-15:
        return np.eye(3)
    k = w / th
    K = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + math.sin(th) * K + (1 - math.cos(th)) * K @ K


def _se3(w, t) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = _rodrigues(np.asarray(w, float))
    T[:3, 3] = t
    return T


# --------------------------------------------------------------------------------------------------
# 5-frame ATE
# --------------------------------------------------------------------------------------------------


class TestAte5:
    GT = np.array([[0, 0, 0], [1, 0, 0], [2, 0, 0], [3, 0, 0], [4, 0, 0]], dtype=float)

    def test_identical_is_zero(self):
        assert ate_5frame(self.GT, self.GT) == 0.0

    def test_scaled_prediction_is_zero(self):
        assert ate_5frame(self.GT, 2.0 * self.GT) == pytest.approx(0.0, abs=1e-15)
        assert ate_5frame(self.GT, 0.01 * self.GT + 7.0) == pytest.approx(0.0, abs=1e-12)  # offset removed too

    def test_hand_value(self):
        pred = self.GT.copy()
        pred[4, 2] = 1.0
        # s = sum(gt*pred)/sum(pred^2) = 30/31 ; sum err^2 = (s-1)^2*30 + s^2 = 930/961 ; / n = 5
        assert ate_5frame(self.GT, pred) == pytest.approx(math.sqrt(930.0 / 961.0) / 5.0, rel=1e-12)

    def test_shape_errors(self):
        with pytest.raises(ValueError):
            ate_5frame(self.GT, self.GT[:4])
        with pytest.raises(ValueError):
            ate_5frame(self.GT[:, :2], self.GT[:, :2])

    def test_accumulate_positions_is_right_multiplication(self):
        a = _se3([0, 0.3, 0], [1, 0, 0])
        b = _se3([0.1, 0, 0], [0, 0, 2])
        xyz = accumulate_positions(np.stack([a, b]))
        np.testing.assert_allclose(xyz[0], 0.0)
        np.testing.assert_allclose(xyz[1], a[:3, 3])
        np.testing.assert_allclose(xyz[2], (a @ b)[:3, 3])

    def test_snippets_count_and_scale_invariance(self):
        rng = np.random.default_rng(0)
        rel = np.stack([_se3(rng.normal(0, 0.05, 3), rng.normal(0, 1, 3)) for _ in range(12)])
        pred = rel.copy()
        pred[:, :3, 3] *= 0.02  # a monocular prediction with the wrong global scale
        ates = snippets_from_relative_poses(rel, pred)
        assert ates.shape == (12,)  # one per start, the last 3 snippets are shorter (monodepth2)
        np.testing.assert_allclose(ates, 0.0, atol=1e-12)
        assert snippets_from_relative_poses(rel, pred, include_partial=False).shape == (9,)

    def test_snippets_against_direct_computation(self):
        rng = np.random.default_rng(1)
        rel = np.stack([_se3(rng.normal(0, 0.05, 3), [0, 0, 1] + rng.normal(0, 0.1, 3)) for _ in range(9)])
        pred = np.stack([T @ _se3(rng.normal(0, 0.01, 3), rng.normal(0, 0.05, 3)) for T in rel])
        ates = snippets_from_relative_poses(rel, pred)
        for i in (0, 4, 7, 8):
            k = min(4, 9 - i)
            g = [np.zeros(3)]
            p = [np.zeros(3)]
            Mg, Mp = np.eye(4), np.eye(4)
            for j in range(k):
                Mg, Mp = Mg @ rel[i + j], Mp @ pred[i + j]
                g.append(Mg[:3, 3])
                p.append(Mp[:3, 3])
            g, p = np.array(g), np.array(p)
            p = p + (g[0] - p[0])
            s = np.sum(g * p) / np.sum(p * p)
            assert ates[i] == pytest.approx(np.sqrt(np.sum((s * p - g) ** 2)) / len(g), rel=1e-12)
        mean, std = evaluate_ate5(rel, pred)
        assert mean == pytest.approx(ates.mean()) and std == pytest.approx(ates.std())

    @pytest.mark.realdata
    def test_real_sequence(self, shared_data):
        poses = read_kitti_trajectory(shared_data / "kitti_odom_poses" / "10.txt")[:120]
        rel = relative_poses_from_absolute(poses)
        mean, std = evaluate_ate5(rel, rel)
        assert mean == pytest.approx(0.0, abs=1e-12) and std == pytest.approx(0.0, abs=1e-12)
        noisy = rel.copy()
        noisy[:, :3, 3] += np.random.default_rng(2).normal(0, 0.05, size=(rel.shape[0], 3))
        mean, _ = evaluate_ate5(rel, noisy)
        assert 1e-3 < mean < 0.1


# --------------------------------------------------------------------------------------------------
# KITTI devkit
# --------------------------------------------------------------------------------------------------


def _devkit_loop(gt: np.ndarray, pred: np.ndarray, lengths=(100, 200, 300, 400, 500, 600, 700, 800), step=10):
    """Independent, loop-based version written from the devkit definitions."""
    dist = [0.0]
    for i in range(1, len(gt)):
        d = gt[i - 1][:3, 3] - gt[i][:3, 3]
        dist.append(dist[-1] + math.sqrt(d[0] ** 2 + d[1] ** 2 + d[2] ** 2))
    segs = []
    for first in range(0, len(gt), step):
        for length in lengths:
            last = -1
            for i in range(first, len(dist)):
                if dist[i] > dist[first] + length:
                    last = i
                    break
            if last == -1:
                continue
            dg = np.linalg.inv(gt[first]) @ gt[last]
            dp = np.linalg.inv(pred[first]) @ pred[last]
            E = np.linalg.inv(dp) @ dg
            cos = 0.5 * (E[0, 0] + E[1, 1] + E[2, 2] - 1.0)
            r = math.acos(max(min(cos, 1.0), -1.0))
            t = math.sqrt(E[0, 3] ** 2 + E[1, 3] ** 2 + E[2, 3] ** 2)
            segs.append((first, r / length, t / length, length, length / (0.1 * (last - first + 1))))
    t_err = sum(s[2] for s in segs) / len(segs)
    r_err = sum(s[1] for s in segs) / len(segs)
    return np.array(segs), t_err * 100.0, r_err / math.pi * 180.0 * 100.0


def _perturb(poses: np.ndarray, seed: int, rot_std: float = 2e-3, t_scale: float = 1.03) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rel = relative_poses_from_absolute(poses)
    noisy = np.stack([_se3(rng.normal(0, rot_std, 3), [0, 0, 0]) @ T for T in rel])
    noisy[:, :3, 3] *= t_scale
    return chain_relative_poses(noisy, initial=poses[0])


class TestDevkitPieces:
    def test_distances_and_last_frame(self):
        poses = np.tile(np.eye(4), (6, 1, 1))
        poses[:, 2, 3] = [0, 1, 3, 6, 10, 15]
        dist = trajectory_distances(poses)
        np.testing.assert_allclose(dist, [0, 1, 3, 6, 10, 15])
        assert last_frame_from_segment_length(dist, 0, 3) == 3  # dist must exceed 3 strictly
        assert last_frame_from_segment_length(dist, 1, 5) == 4
        assert last_frame_from_segment_length(dist, 2, 12) == -1

    def test_rotation_translation_error(self):
        E = _se3([0, 0.25, 0], [3, 0, 4])
        assert rotation_error(E) == pytest.approx(0.25)
        assert translation_error(E) == pytest.approx(5.0)
        assert rotation_error(np.eye(4) * 1.0000001) == 0.0  # clipped, no NaN


@pytest.mark.realdata
class TestKittiRealTrajectories:
    @pytest.mark.parametrize("seq", ["09", "10"])
    def test_gt_vs_gt_is_zero(self, shared_data, seq):
        gt = read_kitti_trajectory(shared_data / "kitti_odom_poses" / f"{seq}.txt")
        res = kitti_odometry_errors(gt, gt)
        assert res["num_segments"] > 400
        assert res["t_err_percent"] == pytest.approx(0.0, abs=1e-9)
        assert res["r_err_deg_per_100m"] == pytest.approx(0.0, abs=1e-5)  # arccos near 1 amplifies rounding

    @pytest.mark.parametrize("seq", ["09", "10"])
    def test_perturbed_matches_independent_loop(self, shared_data, seq):
        gt = read_kitti_trajectory(shared_data / "kitti_odom_poses" / f"{seq}.txt")
        pred = _perturb(gt, seed=int(seq))
        segs_ref, t_ref, r_ref = _devkit_loop(gt, pred)
        segs = calc_sequence_errors(gt, pred)
        assert segs.shape == segs_ref.shape
        np.testing.assert_allclose(segs, segs_ref, rtol=0, atol=1e-9)
        res = kitti_odometry_errors(gt, pred, align="none")
        assert res["t_err_percent"] == pytest.approx(t_ref, abs=1e-9)
        assert res["r_err_deg_per_100m"] == pytest.approx(r_ref, abs=1e-9)
        assert res["t_err_percent"] > 1.0 and res["r_err_deg_per_100m"] > 0.1
        # per-length means
        for length, stats in res["per_length"].items():
            sel = segs_ref[segs_ref[:, 3] == length]
            assert stats["num_segments"] == len(sel)
            assert stats["t_err_percent"] == pytest.approx(sel[:, 2].mean() * 100, abs=1e-9)
        assert sum(s["num_segments"] for s in res["per_length"].values()) == res["num_segments"]

    def test_scale_alignment_recovers_global_scale(self, shared_data):
        gt = read_kitti_trajectory(shared_data / "kitti_odom_poses" / "09.txt")
        pred = gt.copy()
        pred[:, :3, 3] *= 0.3
        raw = kitti_odometry_errors(gt, pred, align="none")
        _, t_ref, _ = _devkit_loop(gt, pred)
        # 0.7 x the end-to-end displacement of each segment, which is shorter than its path length
        assert raw["t_err_percent"] == pytest.approx(t_ref, abs=1e-9) and 40.0 < t_ref < 70.0
        res = kitti_odometry_errors(gt, pred, align="scale")
        assert res["scale"] == pytest.approx(1 / 0.3, rel=1e-9)
        assert res["t_err_percent"] == pytest.approx(0.0, abs=1e-9)
        # sim3 does the same for the segment metrics (they are invariant to a global rigid motion)
        assert kitti_odometry_errors(gt, pred, align="sim3")["t_err_percent"] == pytest.approx(0.0, abs=1e-9)

    def test_short_trajectory_has_no_segment(self, shared_data):
        gt = read_kitti_trajectory(shared_data / "kitti_odom_poses" / "10.txt")[:30]
        res = kitti_odometry_errors(gt, gt)
        assert res["num_segments"] == 0 and math.isnan(res["t_err_percent"]) and res["per_length"] == {}


class TestUmeyama:
    def test_recovers_sim3(self):
        rng = np.random.default_rng(3)
        x = rng.normal(0, 5, size=(3, 40))
        R = _rodrigues(np.array([0.3, -1.2, 2.0]))
        t = np.array([4.0, -2.0, 7.5])
        s = 2.5
        y = s * R @ x + t[:, None]
        R_est, t_est, s_est = umeyama_alignment(x, y, with_scale=True)
        np.testing.assert_allclose(R_est, R, atol=1e-10)
        np.testing.assert_allclose(t_est, t, atol=1e-9)
        assert s_est == pytest.approx(s, rel=1e-12)
        R6, t6, s6 = umeyama_alignment(x, R @ x + t[:, None], with_scale=False)
        assert s6 == 1.0
        np.testing.assert_allclose(R6, R, atol=1e-10)
        assert np.linalg.det(R_est) == pytest.approx(1.0)

    def test_align_trajectory_sim3(self):
        rng = np.random.default_rng(4)
        gt = chain_relative_poses(np.stack([_se3(rng.normal(0, 0.1, 3), rng.normal(0, 1, 3)) for _ in range(20)]))
        A = _se3([0.2, 0.4, -0.1], [1, 2, 3])
        pred = A @ gt
        pred[:, :3, 3] *= 0.5  # positions 0.5 (R p + t)
        aligned, R, t, s = align_trajectory(gt, pred, "sim3")
        assert s == pytest.approx(2.0, rel=1e-10)
        np.testing.assert_allclose(aligned[:, :3, 3], gt[:, :3, 3], atol=1e-9)
        with pytest.raises(ValueError):
            align_trajectory(gt, pred, "7dof")
        with pytest.raises(ValueError):
            umeyama_alignment(np.zeros((3, 5)), np.ones((3, 5)))


class TestDegenerateTrajectories:
    def _moving(self, n: int = 20) -> np.ndarray:
        poses = np.tile(np.eye(4), (n, 1, 1))
        poses[:, 2, 3] = np.arange(n, dtype=float) * 10.0
        return poses

    def test_stationary_ground_truth_is_refused(self):
        gt = np.tile(np.eye(4), (20, 1, 1))
        with pytest.raises(ValueError, match=r"09\.txt trajectory is degenerate: all 20 camera positions are identical"):
            kitti_odometry_errors(gt, self._moving(), gt_name="09.txt")

    def test_all_zero_prediction_is_refused_in_plain_words(self):
        pred = np.zeros((20, 4, 4))
        with pytest.raises(ValueError, match=r"pred\.txt trajectory: every pose is all zeros"):
            kitti_odometry_errors(self._moving(), pred, pred_name="pred.txt")

    def test_stationary_prediction_cannot_be_scale_aligned(self):
        pred = np.tile(np.eye(4), (20, 1, 1))
        with pytest.raises(ValueError, match=r"predicted trajectory is degenerate.*'scale' alignment scale is undefined"):
            align_trajectory(self._moving(), pred, "scale")


# ---------------------------------------------------------------------------------------------
# rotation response (is rotation learned?)
# ---------------------------------------------------------------------------------------------


def test_yaw_of_a_pure_yaw_and_of_a_small_pitch():
    from featdepth.evaluation.pose_metrics import yaw_deg

    def rot_y(a):
        c, s = math.cos(a), math.sin(a)
        return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])

    assert yaw_deg(rot_y(math.radians(7.0))) == pytest.approx(7.0)
    T = np.eye(4)
    T[:3, :3] = rot_y(math.radians(-3.0)) @ _rodrigues(np.array([0.01, 0.0, 0.0]))  # yaw then a small pitch
    assert yaw_deg(T) == pytest.approx(-3.0, abs=1e-9)  # the pitch leaves R[0,2] / R[2,2] unchanged
    assert yaw_deg(np.stack([T, T])).shape == (2,)


def test_rotation_response_against_hand_values():
    from featdepth.evaluation.pose_metrics import rotation_response

    true = np.array([-2.0, 0.0, 2.0, 4.0])
    pred = np.array([-1.0, 0.5, 1.0, 2.5])
    # slope = sum((t - 1)(p - 0.75)) / sum((t - 1)^2) = (5.25 + 0.25 + 0.25 + 5.25) / (9 + 1 + 1 + 9) = 0.55
    out = rotation_response(true, pred)
    assert out["slope"] == pytest.approx(0.55) and out["intercept"] == pytest.approx(0.75 - 0.55)
    assert out["mae_deg"] == pytest.approx((1 + 0.5 + 1 + 1.5) / 4) and out["pairs"] == 4
    assert out["r"] == pytest.approx(np.corrcoef(true, pred)[0, 1])
    ignored = rotation_response(true, np.full(4, -0.03))  # a PoseNet that ignores rotation
    assert ignored["slope"] == pytest.approx(0.0, abs=1e-12) and ignored["r"] == 0.0
    assert rotation_response(true, true)["slope"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="two different"):
        rotation_response(np.zeros(3), np.ones(3))
    with pytest.raises(ValueError, match="length"):
        rotation_response(true, pred[:3])
