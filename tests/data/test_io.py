"""Readers and writers of featdepth.data.io and featdepth.data.kitti_calib: formats and error messages."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from featdepth.data.io import (
    DataError,
    DataFileNotFoundError,
    load_depth_npy,
    load_image,
    load_regions_png,
    read_baseline,
    read_intrinsics_file,
    read_kitti_poses,
    write_kitti_poses,
)
from featdepth.data.kitti_calib import (
    read_calib_file,
    read_odometry_calib,
    read_raw_calibration,
    stereo_baseline_from_projections,
)


def _random_poses(n: int, rng: np.random.Generator) -> np.ndarray:
    poses = np.tile(np.eye(4), (n, 1, 1))
    for i in range(n):
        q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
        poses[i, :3, :3] = q * np.sign(np.linalg.det(q))
        poses[i, :3, 3] = rng.normal(size=3) * 10
    return poses


class TestIntrinsics:
    def test_matrix_and_line_formats_agree(self, tmp_path):
        a = tmp_path / "a.txt"
        a.write_text("100.5 0 95.5\n0 90 31.5\n0 0 1\n")
        b = tmp_path / "b.txt"
        b.write_text("# fx fy cx cy\n100.5 90 95.5 31.5\n")
        Ka, Kb = read_intrinsics_file(a), read_intrinsics_file(b)
        assert Ka.shape == (3, 3)
        np.testing.assert_array_equal(Ka, Kb)
        np.testing.assert_array_equal(Ka, [[100.5, 0, 95.5], [0, 90, 31.5], [0, 0, 1]])

    @pytest.mark.parametrize(
        "text, fragment",
        [
            ("100 90 95.5\n", "line 1"),  # 3 numbers on a single line
            ("100 0 95\n0 90 31\n", "2 non-empty lines"),
            ("100 0 95\n0 90 abc\n0 0 1\n", "'abc'"),
            ("100 0 95\n0 90\n0 0 1\n", "line 2"),
            ("0 90 95 31\n", "fx must be > 0"),
            ("100 -90 95 31\n", "fy must be > 0"),
            ("100 0 95\n0 90 31\n0 0 2\n", "line 3"),
        ],
    )
    def test_malformed_names_file_and_problem(self, tmp_path, text, fragment):
        path = tmp_path / "intrinsics.txt"
        path.write_text(text)
        with pytest.raises(DataError) as info:
            read_intrinsics_file(path)
        assert str(path) in str(info.value)
        assert fragment in str(info.value)

    def test_missing_file(self, tmp_path):
        path = tmp_path / "nope" / "intrinsics.txt"
        with pytest.raises(FileNotFoundError, match="intrinsics.txt"):
            read_intrinsics_file(path)


class TestLoadImage:
    def test_rgb_and_grey(self, tmp_path):
        rng = np.random.default_rng(0)
        grey = rng.integers(0, 256, (8, 12), dtype=np.uint8)
        Image.fromarray(grey, mode="L").save(tmp_path / "g.png")
        img = load_image(tmp_path / "g.png")
        assert img.mode == "RGB" and img.size == (12, 8)
        arr = np.asarray(img)
        for c in range(3):
            np.testing.assert_array_equal(arr[..., c], grey)
        rgb = rng.integers(0, 256, (8, 12, 3), dtype=np.uint8)
        Image.fromarray(rgb).save(tmp_path / "c.png")
        np.testing.assert_array_equal(np.asarray(load_image(tmp_path / "c.png")), rgb)

    def test_corrupt_png_names_file(self, tmp_path):
        path = tmp_path / "bad.png"
        path.write_bytes(b"this is not a png at all" * 10)
        with pytest.raises(DataError, match="bad.png"):
            load_image(path)

    def test_truncated_png_names_file(self, tmp_path):
        good = tmp_path / "good.png"
        Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(good)
        data = good.read_bytes()
        path = tmp_path / "truncated.png"
        path.write_bytes(data[: len(data) // 2])
        with pytest.raises(DataError, match="truncated.png"):
            load_image(path)

    def test_missing_file(self, tmp_path):
        path = tmp_path / "missing.png"
        with pytest.raises(DataFileNotFoundError) as info:
            load_image(path)
        assert str(path) in str(info.value)
        assert isinstance(info.value, FileNotFoundError) and isinstance(info.value, ValueError)


class TestPoses:
    def test_round_trip(self, tmp_path):
        poses = _random_poses(5, np.random.default_rng(0))
        path = tmp_path / "poses.txt"
        write_kitti_poses(path, poses)
        assert len(path.read_text().splitlines()) == 5
        assert all(len(line.split()) == 12 for line in path.read_text().splitlines())
        back = read_kitti_poses(path)
        assert back.shape == (5, 4, 4)
        np.testing.assert_allclose(back, poses, rtol=1e-11, atol=1e-11)
        write_kitti_poses(path, poses[:, :3, :])  # (N, 3, 4) input too
        np.testing.assert_allclose(read_kitti_poses(path), poses, rtol=1e-11, atol=1e-11)

    def test_wrong_column_count_names_line(self, tmp_path):
        path = tmp_path / "poses.txt"
        path.write_text(" ".join(["1"] * 12) + "\n" + " ".join(["1"] * 11) + "\n")
        with pytest.raises(DataError, match=r"poses.txt, line 2: expected 12 numbers"):
            read_kitti_poses(path)

    def test_non_numeric_names_line_and_value(self, tmp_path):
        path = tmp_path / "poses.txt"
        path.write_text(" ".join(["1"] * 11 + ["x1"]) + "\n")
        with pytest.raises(DataError, match=r"line 1: 'x1' is not a number"):
            read_kitti_poses(path)

    def test_empty(self, tmp_path):
        path = tmp_path / "poses.txt"
        path.write_text("\n")
        with pytest.raises(DataError, match="empty"):
            read_kitti_poses(path)


class TestSmallFiles:
    def test_baseline(self, tmp_path):
        path = tmp_path / "stereo.txt"
        path.write_text("0.54\n")
        assert read_baseline(path) == pytest.approx(0.54)
        for bad, fragment in (("-0.5", "> 0"), ("0.5 0.6", "one number"), ("abc", "'abc'")):
            path.write_text(bad)
            with pytest.raises(DataError, match=fragment) as info:
                read_baseline(path)
            assert "stereo.txt" in str(info.value)

    def test_depth_npy(self, tmp_path):
        depth = np.random.default_rng(0).uniform(0, 80, (6, 10)).astype(np.float32)
        np.save(tmp_path / "d.npy", depth[None])
        out = load_depth_npy(tmp_path / "d.npy")
        assert out.dtype == np.float32 and out.shape == (6, 10)
        np.testing.assert_array_equal(out, depth)
        np.save(tmp_path / "bad_shape.npy", np.zeros((2, 3, 4), np.float32))
        with pytest.raises(DataError, match="bad_shape.npy"):
            load_depth_npy(tmp_path / "bad_shape.npy")
        (tmp_path / "garbage.npy").write_bytes(b"\x00garbage")
        with pytest.raises(DataError, match="garbage.npy"):
            load_depth_npy(tmp_path / "garbage.npy")
        np.save(tmp_path / "neg.npy", -np.ones((2, 2), np.float32))
        with pytest.raises(DataError, match="neg.npy"):
            load_depth_npy(tmp_path / "neg.npy")

    def test_regions_png(self, tmp_path):
        labels = np.random.default_rng(0).integers(0, 5, (6, 10), dtype=np.uint8)
        Image.fromarray(labels, mode="L").save(tmp_path / "r.png")
        out = load_regions_png(tmp_path / "r.png")
        assert out.dtype == np.int64
        np.testing.assert_array_equal(out, labels)


CALIB_TEXT = """calib_time: 09-Jan-2012 13:57:47
S_rect_00: 1.242000e+03 3.750000e+02
S_rect_02: 1.242000e+03 3.750000e+02
R_rect_00: 1 0 0 0 1 0 0 0 1
P_rect_00: 700 0 600 0 0 700 170 0 0 0 1 0
P_rect_01: 700 0 600 -378 0 700 170 0 0 0 1 0
P_rect_02: 700 0 600 42 0 700 170 0.2 0 0 1 0.003
P_rect_03: 700 0 600 -336 0 700 170 2 0 0 1 0.005
"""


class TestCalib:
    def _write(self, folder, text=CALIB_TEXT):
        folder.mkdir(exist_ok=True)
        (folder / "calib_cam_to_cam.txt").write_text(text)
        (folder / "calib_velo_to_cam.txt").write_text("calib_time: x\nR: 1 0 0 0 1 0 0 0 1\nT: 0.1 0.2 0.3\n")

    def test_read_raw_calibration(self, tmp_path):
        self._write(tmp_path)
        calib = read_calib_file(tmp_path / "calib_cam_to_cam.txt")
        assert "calib_time" not in calib and calib["P_rect_02"].shape == (12,)
        raw = read_raw_calibration(tmp_path, cam=2)
        np.testing.assert_array_equal(raw.K, [[700, 0, 600], [0, 700, 170], [0, 0, 1]])
        assert raw.image_size == (375, 1242)
        assert raw.P_rect.shape == (3, 4) and raw.R_rect_00.shape == (4, 4) and raw.R_rect_00[3, 3] == 1
        np.testing.assert_array_equal(raw.velo_to_cam[:3, 3], [0.1, 0.2, 0.3])
        # t = K^-1 P[:, 3]: t_x = (p_x - cx * p_z) / fx; baseline = t_x(2) - t_x(3)
        assert raw.baseline == pytest.approx(((42 - 600 * 0.003) - (-336 - 600 * 0.005)) / 700)
        assert read_raw_calibration(tmp_path, cam=0).baseline == pytest.approx(378 / 700)

    def test_malformed_value_names_file_and_key(self, tmp_path):
        self._write(tmp_path, CALIB_TEXT.replace("P_rect_02: 700 0 600 42", "P_rect_02: 700 0 6OO 42"))
        with pytest.raises(DataError) as info:
            read_raw_calibration(tmp_path)
        assert "calib_cam_to_cam.txt" in str(info.value) and "P_rect_02" in str(info.value)

    def test_wrong_count_and_missing_key(self, tmp_path):
        self._write(tmp_path, CALIB_TEXT.replace("P_rect_03: 700 0 600 -336 ", "P_rect_03: 700 0 600 "))
        with pytest.raises(DataError, match=r"calib_cam_to_cam.txt: key 'P_rect_03' has 11 values"):
            read_raw_calibration(tmp_path)
        self._write(tmp_path, CALIB_TEXT.replace("S_rect_02", "S_rect_XX"))
        with pytest.raises(DataError, match=r"missing key 'S_rect_02'"):
            read_raw_calibration(tmp_path)

    def test_line_without_key(self, tmp_path):
        path = tmp_path / "calib.txt"
        path.write_text("P0: 1 2 3\n1 2 3 4\n")
        with pytest.raises(DataError, match=r"calib.txt, line 2"):
            read_calib_file(path)

    def test_odometry_calib(self, tmp_path):
        path = tmp_path / "calib.txt"
        rows = {
            "P0": "707 0 601 0 0 707 183 0 0 0 1 0",
            "P1": "707 0 601 -379.8 0 707 183 0 0 0 1 0",
            "P2": "707 0 601 46 0 707 183 -0.3 0 0 1 0.004",
            "P3": "707 0 601 -334 0 707 183 2.3 0 0 1 0.003",
            "Tr": "1 0 0 0.1 0 1 0 0.2 0 0 1 0.3",
        }
        path.write_text("\n".join(f"{k}: {v}" for k, v in rows.items()) + "\n")
        calib = read_odometry_calib(path)
        assert set(calib) == {"P0", "P1", "P2", "P3", "Tr"}
        assert calib["Tr"].shape == (4, 4) and calib["P2"].shape == (3, 4)
        assert stereo_baseline_from_projections(calib["P0"], calib["P1"]) == pytest.approx(379.8 / 707)
        path.write_text("\n".join(f"{k}: {v}" for k, v in rows.items() if k != "P3") + "\n")
        with pytest.raises(DataError, match=r"calib.txt: missing key 'P3'"):
            read_odometry_calib(path)


class TestPoseRotations:
    """Rotation blocks must be rotations; an all-zero file is not a trajectory."""

    def test_scaled_rotation_names_file_line_and_deviation(self, tmp_path):
        path = tmp_path / "poses.txt"
        poses = np.tile(np.eye(4), (3, 1, 1))
        poses[1, :3, :3] *= 1.5  # not orthonormal
        write_kitti_poses(path, poses)
        with pytest.raises(DataError, match=r"poses\.txt, line 2: the 3x3 rotation block is not a rotation "
                                            r"\(max \|R\^T R - I\| = 1\.25, det = 3\.375"):
            read_kitti_poses(path)

    def test_reflection_is_refused(self, tmp_path):
        path = tmp_path / "poses.txt"
        poses = np.tile(np.eye(4), (2, 1, 1))
        poses[0, 0, 0] = -1.0  # det -1
        write_kitti_poses(path, poses)
        with pytest.raises(DataError, match=r"line 1: .*det = -1"):
            read_kitti_poses(path)

    def test_all_zero_file_is_refused(self, tmp_path):
        path = tmp_path / "zeros.txt"
        path.write_text((" ".join(["0"] * 12) + "\n") * 4)
        with pytest.raises(DataError, match=r"zeros\.txt: every pose is all zeros \(4 lines\): not a trajectory"):
            read_kitti_poses(path)
        path.write_text(" ".join(["1", "0", "0", "0", "0", "1", "0", "0", "0", "0", "1", "0"]) + "\n" + " ".join(["0"] * 12) + "\n")
        with pytest.raises(DataError, match=r"zeros\.txt, line 2: all 12 values are zero"):
            read_kitti_poses(path)
