"""Tests of featdepth.evaluation.trajectory and featdepth.evaluation.plots."""

from __future__ import annotations

import math

import numpy as np
import pytest

from featdepth.evaluation.plots import colorize_disparity, plot_trajectories_topview
from featdepth.evaluation.trajectory import (
    chain_relative_poses,
    quaternion_to_rotation_matrix,
    read_kitti_trajectory,
    read_tum_trajectory,
    relative_poses_from_absolute,
    rotation_matrix_to_quaternion,
    write_kitti_trajectory,
    write_tum_trajectory,
)


def _rot(axis, angle: float) -> np.ndarray:
    k = np.asarray(axis, float) / np.linalg.norm(axis)
    K = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + math.sin(angle) * K + (1 - math.cos(angle)) * K @ K


def _random_poses(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.tile(np.eye(4), (n, 1, 1))
    for i in range(n):
        out[i, :3, :3] = _rot(rng.normal(size=3), rng.uniform(0, math.pi))
        out[i, :3, 3] = rng.normal(0, 10, 3)
    return out


class TestChaining:
    def test_design_convention_two_frames(self):
        # frame 1 is 2 m ahead of frame 0 (+z): a point at z=5 in frame 0 is at z=3 in frame 1
        T_10 = np.eye(4)
        T_10[2, 3] = -2.0
        poses = chain_relative_poses(T_10[None])
        np.testing.assert_allclose(poses[1][:3, 3], [0, 0, 2.0])
        np.testing.assert_allclose(relative_poses_from_absolute(poses)[0], T_10)

    @pytest.mark.realdata
    def test_chain_reproduces_kitti_09(self, shared_data):
        gt = read_kitti_trajectory(shared_data / "kitti_odom_poses" / "09.txt")[:200]
        rel = relative_poses_from_absolute(gt)
        # the design's definition, written out: inv(T_world_cam[i+1]) @ T_world_cam[i]
        np.testing.assert_allclose(rel[5], np.linalg.inv(gt[6]) @ gt[5], atol=1e-12)
        chained = chain_relative_poses(rel)
        assert chained.shape == (200, 4, 4)
        np.testing.assert_allclose(chained, gt, atol=1e-6)  # 09 starts at identity (to 1e-10)
        np.testing.assert_allclose(chain_relative_poses(rel, initial=gt[0]), gt, atol=1e-9)

    def test_bad_shape(self):
        with pytest.raises(ValueError):
            chain_relative_poses(np.eye(4))


class TestQuaternions:
    @pytest.mark.parametrize(
        "axis,angle",
        [([1, 0, 0], math.pi), ([0, 1, 0], math.pi), ([0, 0, 1], math.pi), ([1, 1, 0], math.pi),
         ([1, -2, 3], math.pi), ([0, 0, 1], 0.0), ([1, 2, 3], 1e-9), ([3, 1, -1], 2.5), ([0, 1, 1], math.pi - 1e-7)],
    )  # fmt: skip
    def test_round_trip(self, axis, angle):
        R = _rot(axis, angle)
        q = rotation_matrix_to_quaternion(R)
        assert q.shape == (4,) and q[3] >= 0
        assert np.linalg.norm(q) == pytest.approx(1.0)
        np.testing.assert_allclose(quaternion_to_rotation_matrix(q), R, atol=1e-12)
        k = np.asarray(axis, float) / np.linalg.norm(axis)
        expected = np.array([*(k * math.sin(angle / 2)), math.cos(angle / 2)])
        assert min(np.abs(q - expected).max(), np.abs(q + expected).max()) < 1e-9

    def test_batch(self):
        Rs = _random_poses(7, 0)[:, :3, :3].reshape(7, 3, 3)
        q = rotation_matrix_to_quaternion(Rs)
        assert q.shape == (7, 4)
        np.testing.assert_allclose(quaternion_to_rotation_matrix(q), Rs, atol=1e-12)


class TestFiles:
    def test_kitti_round_trip(self, tmp_path):
        poses = _random_poses(15, 1)
        path = write_kitti_trajectory(tmp_path / "sub" / "09_pred.txt", poses)
        lines = path.read_text().splitlines()
        assert len(lines) == 15 and len(lines[0].split()) == 12
        np.testing.assert_allclose(read_kitti_trajectory(path), poses, rtol=0, atol=1e-8)

    def test_tum_round_trip(self, tmp_path):
        poses = _random_poses(10, 2)
        poses[3, :3, :3] = _rot([1, 0, 0], math.pi)
        poses[4, :3, :3] = _rot([1, 1, 1], math.pi)
        ts = np.linspace(0.0, 0.9, 10) + 1e9
        path = write_tum_trajectory(tmp_path / "t.txt", poses, ts)
        first = [ln for ln in path.read_text().splitlines() if not ln.startswith("#")][0].split()
        assert len(first) == 8
        ts2, poses2 = read_tum_trajectory(path)
        np.testing.assert_allclose(ts2, ts, atol=1e-6)
        np.testing.assert_allclose(poses2, poses, atol=1e-8)
        ts3, _ = read_tum_trajectory(write_tum_trajectory(tmp_path / "u.txt", poses))
        np.testing.assert_allclose(ts3, np.arange(10))

    def test_malformed_kitti(self, tmp_path):
        p = tmp_path / "bad.txt"
        good = " ".join(["1"] * 12)
        p.write_text(f"{good}\n{good}\n" + " ".join(["1"] * 11) + "\n")
        with pytest.raises(ValueError, match=r"bad\.txt, line 3.*12"):
            read_kitti_trajectory(p)
        p.write_text(f"{good}\n" + " ".join(["1"] * 11 + ["x"]) + "\n")
        with pytest.raises(ValueError, match=r"bad\.txt, line 2"):
            read_kitti_trajectory(p)
        with pytest.raises(FileNotFoundError, match="none.txt"):
            read_kitti_trajectory(tmp_path / "none.txt")
        p.write_text("\n\n")
        with pytest.raises(ValueError, match="no poses"):
            read_kitti_trajectory(p)

    def test_malformed_tum(self, tmp_path):
        p = tmp_path / "bad_tum.txt"
        p.write_text("# header\n0 0 0 0 0 0 0 1\n1 0 0 0 0 0 1\n")
        with pytest.raises(ValueError, match=r"bad_tum\.txt, line 3"):
            read_tum_trajectory(p)
        p.write_text("0 0 0 0 0 0 0 0\n")
        with pytest.raises(ValueError, match=r"bad_tum\.txt, line 1: zero quaternion"):
            read_tum_trajectory(p)


class TestPlots:
    def test_topview_png(self, tmp_path):
        gt = np.tile(np.eye(4), (30, 1, 1))
        gt[:, 0, 3] = np.sin(np.linspace(0, 3, 30)) * 10
        gt[:, 2, 3] = np.linspace(0, 40, 30)
        pred = gt.copy()
        pred[:, 0, 3] *= 1.2
        out = plot_trajectories_topview(tmp_path / "plots" / "09.png", gt, pred, labels=["ours"], title="09")
        assert out.is_file() and out.stat().st_size > 1000
        assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        out2 = plot_trajectories_topview(tmp_path / "two.png", None, [pred, gt])
        assert out2.stat().st_size > 1000
        with pytest.raises(ValueError):
            plot_trajectories_topview(tmp_path / "x.png", gt, [pred], labels=["a", "b"])

    def test_topview_does_not_touch_pyplot(self, tmp_path):
        import sys

        had_pyplot = "matplotlib.pyplot" in sys.modules
        plot_trajectories_topview(tmp_path / "p.png", None, np.tile(np.eye(4), (3, 1, 1)))
        assert ("matplotlib.pyplot" in sys.modules) == had_pyplot

    def test_colorize(self):
        import matplotlib

        disp = np.linspace(0.0, 1.0, 200).reshape(10, 20)
        rgb = colorize_disparity(disp)
        assert rgb.shape == (10, 20, 3) and rgb.dtype == np.uint8
        cmap = matplotlib.colormaps["magma"]
        top = (np.array(cmap(1.0)[:3]) * 255).astype(np.uint8)
        bottom = (np.array(cmap(0.0)[:3]) * 255).astype(np.uint8)
        p95 = np.percentile(disp, 95)
        above = disp >= p95
        assert above.sum() >= 10
        assert np.all(rgb[above] == top)  # the 95th percentile and above saturate at the top colour
        assert np.all(rgb[disp == 0.0] == bottom)
        assert not np.all(rgb[disp < 0.9 * p95] == top)
        with pytest.raises(ValueError):
            colorize_disparity(np.zeros((2, 3, 4)))


class TestRotationValidation:
    def test_kitti_file_with_non_rotation_names_file_line_and_deviation(self, tmp_path):
        poses = _random_poses(4, 3)
        poses[2, :3, :3] = poses[2, :3, :3] @ np.diag([1.0, 1.0, 0.5])  # squashed axis
        path = write_kitti_trajectory(tmp_path / "pred.txt", poses)
        with pytest.raises(ValueError, match=r"pred\.txt, line 3: the 3x3 rotation block is not a rotation "
                                             r"\(max \|R\^T R - I\| = 0\.75, det = 0\.5"):
            read_kitti_trajectory(path)

    def test_all_zero_kitti_file_is_refused(self, tmp_path):
        p = tmp_path / "zero.txt"
        p.write_text((" ".join(["0"] * 12) + "\n") * 3)
        with pytest.raises(ValueError, match=r"zero\.txt: every pose is all zeros \(3 poses\): not a trajectory"):
            read_kitti_trajectory(p)

    def test_tum_quaternion_far_from_unit_norm_is_refused(self, tmp_path):
        p = tmp_path / "t.txt"
        p.write_text("0 0 0 0 0 0 0 1\n1 0 0 0 0 0 0 0.5\n")
        with pytest.raises(ValueError, match=r"t\.txt, line 2: quaternion .* norm 0\.5, not 1"):
            read_tum_trajectory(p)
        p.write_text("0 0 0 0 0 0 0 1.000001\n")  # printing precision is fine
        assert read_tum_trajectory(p)[1].shape == (1, 4, 4)
