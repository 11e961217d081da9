"""KITTI raw / odometry datasets and split files, on the real samples in ../shared/data (read in place)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from featdepth.data import DataError, KittiOdometryDataset, KittiRawDataset
from featdepth.data.io import load_image, read_kitti_poses
from featdepth.data.kitti_calib import read_calib_file, read_raw_calibration
from featdepth.data.splits import (
    find_split_files,
    parse_split_line,
    read_split_file,
    split_file_path,
    write_split_file,
)
from featdepth.data.transforms import image_to_tensor, resize_image

pytestmark = pytest.mark.realdata

DRIVE = "2011_09_26/2011_09_26_drive_0023_sync"
SIZE = (64, 192)  # training (H, W)
RAW_SIZE = (375, 1242)
ODOM_SIZE = (370, 1226)
ODOM_FRAMES = 5


def _lines(frames, side="l"):
    return [f"{DRIVE} {i:010d} {side}" for i in frames]


@pytest.fixture
def raw_root(shared_data) -> Path:
    return shared_data / "kitti_raw_tiny"


# ---------------------------------------------------------------- split files
class TestSplits:
    def test_eigen_test_split(self, shared_data):
        entries = read_split_file(shared_data / "splits" / "eigen" / "test_files.txt")
        assert len(entries) == 697
        assert entries[0] == ("2011_09_26/2011_09_26_drive_0002_sync", 69, "l")
        assert all(side in ("l", "r") for _, _, side in entries)
        assert any(folder == DRIVE for folder, _, _ in entries)  # drive 0023 is an Eigen test drive

    def test_locate_split_files(self, shared_data):
        found = find_split_files(shared_data / "splits", "eigen_zhou")
        assert set(found) == {"train", "val"}
        assert split_file_path(shared_data / "splits", "eigen", "test").name == "test_files.txt"
        with pytest.raises(FileNotFoundError, match=r"eigen[/\\]train_files.txt"):
            split_file_path(shared_data / "splits", "eigen", "train")
        with pytest.raises(FileNotFoundError, match="no_such_split"):
            find_split_files(shared_data / "splits", "no_such_split")

    def test_path_style_lines(self, raw_root):
        entries = read_split_file(raw_root / "kitti_tiny.txt")
        assert entries == [(DRIVE, i, "l") for i in range(1, 6)]
        assert parse_split_line(f"{DRIVE}/image_03/data/0000000004.jpg") == (DRIVE, 4, "r")

    @pytest.mark.parametrize(
        "line, fragment",
        [("2011_09_26/x 12", "expected '<folder> <frame> <l|r>'"), ("2011_09_26/x 1a l", "'1a'"), ("2011_09_26/x 3 c", "'c'")],
    )
    def test_malformed_line_names_file_and_line(self, tmp_path, line, fragment):
        path = tmp_path / "train_files.txt"
        path.write_text(f"{DRIVE} 1 l\n\n{line}\n")
        with pytest.raises(DataError) as info:
            read_split_file(path)
        assert f"{path}, line 3" in str(info.value) and fragment in str(info.value)

    def test_write_read_round_trip(self, tmp_path):
        entries = [(DRIVE, 5, "l"), ("09", 12, "r")]
        write_split_file(tmp_path / "s.txt", entries)
        assert read_split_file(tmp_path / "s.txt") == entries


# ---------------------------------------------------------------- KITTI raw
class TestKittiRaw:
    def test_calibration(self, raw_root):
        calib = read_raw_calibration(raw_root / "2011_09_26", cam=2)
        c2c = read_calib_file(raw_root / "2011_09_26" / "calib_cam_to_cam.txt")
        np.testing.assert_array_equal(calib.K, c2c["P_rect_02"].reshape(3, 4)[:, :3])
        assert calib.image_size == RAW_SIZE
        assert calib.baseline == pytest.approx(0.54, abs=0.01)
        P2, P3 = c2c["P_rect_02"].reshape(3, 4), c2c["P_rect_03"].reshape(3, 4)
        t2, t3 = np.linalg.solve(P2[:, :3], P2[:, 3]), np.linalg.solve(P3[:, :3], P3[:, 3])
        assert calib.baseline == pytest.approx(t2[0] - t3[0], rel=1e-12)
        # K of the shipped cam.txt (the same camera) agrees
        np.testing.assert_allclose(calib.K, np.loadtxt(raw_root / DRIVE / "image_02" / "cam.txt"), rtol=1e-6)

    def test_neighbours_and_skipped_targets(self, raw_root):
        ds = KittiRawDataset(raw_root, _lines(range(7)), [0, -1, 1], *SIZE)
        assert [frame for _, frame, _ in ds.items] == [1, 2, 3, 4, 5]
        assert sorted(frame for _, frame, _ in ds.skipped) == [0, 6] and ds.num_skipped == 2
        assert ds.img_ext == ".png"
        tiny = KittiRawDataset(raw_root, raw_root / "kitti_tiny.txt", [0, -1, 1, "s"], *SIZE)
        assert len(tiny) == 5 and tiny.num_skipped == 0
        assert len(KittiRawDataset(raw_root, _lines(range(7)), [0], *SIZE)) == 7

    def test_sample_K_stereo_and_depth(self, raw_root):
        ds = KittiRawDataset(raw_root, _lines([3]), [0, -1, 1, "s"], *SIZE, load_depth=True)
        s = ds[0]
        c2c = read_calib_file(raw_root / "2011_09_26" / "calib_cam_to_cam.txt")
        K = c2c["P_rect_02"].reshape(3, 4)[:, :3].copy()
        K[0] *= SIZE[1] / RAW_SIZE[1]
        K[1] *= SIZE[0] / RAW_SIZE[0]
        np.testing.assert_allclose(s["K"].double().numpy(), K, rtol=1e-6)
        assert float(s["stereo_T"][0, 3]) == pytest.approx(-0.5327, abs=1e-3)  # left target: -baseline
        # the stereo partner is image_03 at the same index, the neighbours image_02 at 2 and 4
        for f, cam, frame in (("s", 3, 3), (-1, 2, 2), (1, 2, 4)):
            path = raw_root / DRIVE / f"image_0{cam}" / "data" / f"{frame:010d}.png"
            expected = image_to_tensor(resize_image(load_image(path), SIZE))
            torch.testing.assert_close(s["color"][f], expected, rtol=0, atol=0)
        # depth_gt from the projected-lidar npz
        with np.load(raw_root / DRIVE / "proj_depth" / "velodyne" / "image_02" / "0000000003.npz") as npz:
            depth = npz["velodyne_depth"]
        assert s["depth_gt"].shape == (1, *RAW_SIZE) and s["depth_gt"].dtype == torch.float32
        np.testing.assert_array_equal(s["depth_gt"][0].numpy(), depth)
        valid = depth[depth > 0]
        assert 10_000 < valid.size < 40_000 and valid.min() > 1 and valid.max() < 100

    def test_right_target_fixed_baseline_and_normalised_K(self, raw_root):
        ds = KittiRawDataset(raw_root, _lines([2], "r"), [0, "s"], *SIZE, stereo_baseline=0.015, use_calibration_K=False)
        s = ds[0]
        assert float(s["stereo_T"][0, 3]) == pytest.approx(+0.015)  # right target: +baseline
        np.testing.assert_allclose(
            s["K"].double().numpy(), [[0.58 * SIZE[1], 0, 0.5 * SIZE[1]], [0, 1.92 * SIZE[0], 0.5 * SIZE[0]], [0, 0, 1]], rtol=1e-6
        )
        left = image_to_tensor(resize_image(load_image(raw_root / DRIVE / "image_02" / "data" / "0000000002.png"), SIZE))
        torch.testing.assert_close(s["color"]["s"], left, rtol=0, atol=0)
        # calibrated K of a right target comes from P_rect_03
        Kr = KittiRawDataset(raw_root, _lines([2], "r"), [0], *SIZE)[0]["K"].double().numpy()
        P3 = read_calib_file(raw_root / "2011_09_26" / "calib_cam_to_cam.txt")["P_rect_03"].reshape(3, 4)
        assert Kr[0, 0] == pytest.approx(P3[0, 0] * SIZE[1] / RAW_SIZE[1], rel=1e-6)

    def test_bad_inputs(self, raw_root, tmp_path):
        with pytest.raises(DataError, match="no usable samples"):
            KittiRawDataset(raw_root, _lines([40]), [0], *SIZE, img_ext=".png")
        with pytest.raises(FileNotFoundError, match="0000000040"):
            KittiRawDataset(raw_root, _lines([40]), [0], *SIZE)  # extension auto-detection finds nothing
        with pytest.raises(ValueError, match="width=200"):
            KittiRawDataset(raw_root, _lines([1]), [0], 64, 200)
        # a broken calibration file names the file and the key (image symlinked, calibration corrupted)
        date = tmp_path / "2011_09_26"
        (date / "2011_09_26_drive_0023_sync" / "image_02" / "data").mkdir(parents=True)
        (date / "2011_09_26_drive_0023_sync" / "image_02" / "data" / "0000000001.png").symlink_to(
            raw_root / DRIVE / "image_02" / "data" / "0000000001.png"
        )
        text = (raw_root / "2011_09_26" / "calib_cam_to_cam.txt").read_text()
        (date / "calib_cam_to_cam.txt").write_text(text.replace("P_rect_02: 7.215377e+02", "P_rect_02: 7.2l5377e+02"))
        (date / "calib_velo_to_cam.txt").write_text((raw_root / "2011_09_26" / "calib_velo_to_cam.txt").read_text())
        with pytest.raises(DataError) as info:
            KittiRawDataset(tmp_path, _lines([1]), [0], *SIZE)
        assert "calib_cam_to_cam.txt" in str(info.value) and "P_rect_02" in str(info.value)
        # load_depth with a missing npz: the target is skipped at index time (counted in index_report);
        # with nothing left the error names the missing file
        with pytest.raises(DataError, match=r"1 missing depth file.*velodyne.image_02.0000000001.npz"):
            KittiRawDataset(tmp_path, _lines([1]), [0], *SIZE, use_calibration_K=False, load_depth=True)


# ---------------------------------------------------------------- KITTI odometry
@pytest.fixture(scope="module")
def odom_root(tmp_path_factory) -> Path:
    """The official odometry layout built from kitti_odom_06_tiny (first frames only)."""
    from tests.conftest import SHARED_DATA

    if not SHARED_DATA.is_dir():
        pytest.skip(f"real KITTI samples not found at {SHARED_DATA}")
    src = SHARED_DATA / "kitti_odom_06_tiny"
    root = tmp_path_factory.mktemp("odom")
    seq = root / "sequences" / "06"
    for d in ("image_0", "image_1", "image_2", "image_3"):
        (seq / d).mkdir(parents=True)
    for i in range(ODOM_FRAMES):
        name = f"{i:06d}.png"
        (seq / "image_0" / name).symlink_to(src / "image_l" / name)
        (seq / "image_1" / name).symlink_to(src / "image_r" / name)
        (seq / "image_3" / name).symlink_to(src / "image_r" / name)
        # colour stand-in for image_2: the grey frame tinted, so it differs from image_0
        grey = np.asarray(Image.open(src / "image_l" / name).convert("L"))
        Image.fromarray(np.stack([grey, grey, 255 - grey], axis=-1)).save(seq / "image_2" / name)
    p0, p1 = [line.split() for line in (src / "calib.txt").read_text().splitlines() if line.strip()]
    labelled = {"P0": p0, "P1": p1, "P2": p0, "P3": p1, "Tr": "1 0 0 0 0 1 0 0 0 0 1 0".split()}
    (seq / "calib.txt").write_text("".join(f"{k}: {' '.join(v)}\n" for k, v in labelled.items()))
    (root / "poses").mkdir()
    (root / "poses" / "06.txt").write_text((src / "poses.txt").read_text())
    return root


class TestKittiOdometry:
    def test_K_baseline_and_poses(self, odom_root):
        ds = KittiOdometryDataset(odom_root, ["6 1 l", "6 2 l"], [0, -1, 1, "s"], *SIZE, load_poses=True)
        assert len(ds) == 2
        s = ds[0]
        fx = 707.0912 * SIZE[1] / ODOM_SIZE[1]
        assert float(s["K"][0, 0]) == pytest.approx(fx, rel=1e-6)
        assert float(s["K"][1, 1]) == pytest.approx(707.0912 * SIZE[0] / ODOM_SIZE[0], rel=1e-6)
        assert float(s["K"][0, 2]) == pytest.approx(601.8873 * SIZE[1] / ODOM_SIZE[1], rel=1e-6)
        assert float(s["stereo_T"][0, 3]) == pytest.approx(-0.537, abs=1e-3)
        assert ds.get_baseline(ds.items[0]) == pytest.approx(379.8145 / 707.0912, rel=1e-9)
        gt = read_kitti_poses(odom_root / "poses" / "06.txt")
        for f, src in ((-1, 0), (1, 2)):
            expected = np.linalg.inv(gt[src]) @ gt[1]
            np.testing.assert_allclose(s["pose_gt"][f].double().numpy(), expected, atol=1e-5)
        # about 1.2 m forward per frame: the target moves +z relative to the previous frame
        assert float(s["pose_gt"][-1][2, 3]) == pytest.approx(1.2, abs=0.1)

    def test_right_camera_poses_use_its_offset(self, odom_root):
        ds = KittiOdometryDataset(odom_root, ["6 1 r"], [0, 1], *SIZE, load_poses=True, cameras="grey")
        gt = read_kitti_poses(odom_root / "poses" / "06.txt")
        # camera 1 sits at +0.537 m along x of camera 0: T_world_cam1 = T_world_cam0 @ T_cam0_cam1
        T_cam0_cam1 = np.eye(4)
        T_cam0_cam1[0, 3] = 379.8145 / 707.0912
        w1 = gt @ T_cam0_cam1
        expected = np.linalg.inv(w1[2]) @ w1[1]
        np.testing.assert_allclose(ds[0]["pose_gt"][1].double().numpy(), expected, atol=1e-5)

    def test_color_reads_image_2_grey_reads_image_0(self, odom_root):
        color = KittiOdometryDataset(odom_root, [6], [0, "s"], *SIZE)
        grey = KittiOdometryDataset(odom_root, [6], [0, "s"], *SIZE, cameras="grey")
        assert len(color) == len(grey) == ODOM_FRAMES
        seq = odom_root / "sequences" / "06"
        c, g = color[1], grey[1]
        torch.testing.assert_close(c["color"][0], image_to_tensor(resize_image(load_image(seq / "image_2" / "000001.png"), SIZE)))
        torch.testing.assert_close(g["color"][0], image_to_tensor(resize_image(load_image(seq / "image_0" / "000001.png"), SIZE)))
        assert (c["color"][0][0] - c["color"][0][2]).abs().max() > 0.5  # the tinted colour stand-in
        torch.testing.assert_close(g["color"][0][0], g["color"][0][2], rtol=0, atol=0)  # grey replicated
        torch.testing.assert_close(g["color"]["s"], image_to_tensor(resize_image(load_image(seq / "image_1" / "000001.png"), SIZE)))
        # the mono split skips the ends of the available frames
        mono = KittiOdometryDataset(odom_root, ["06"], [0, -1, 1], *SIZE)
        assert [f for _, f, _ in mono.items] == list(range(1, ODOM_FRAMES - 1)) and mono.num_skipped == 2

    def test_unlabelled_calib_names_file_and_key(self, shared_data, tmp_path):
        seq = tmp_path / "sequences" / "06"
        (seq / "image_2").mkdir(parents=True)
        src = shared_data / "kitti_odom_06_tiny"
        (seq / "image_2" / "000000.png").symlink_to(src / "image_l" / "000000.png")
        (seq / "calib.txt").write_text((src / "calib.txt").read_text())  # the unlabelled two-line file
        with pytest.raises(DataError, match=r"calib.txt, line 1"):
            KittiOdometryDataset(tmp_path, [6], [0], *SIZE)
        (seq / "calib.txt").write_text("P0: 1 0 0 0 0 1 0 0 0 0 1 0\n")
        with pytest.raises(DataError, match=r"calib.txt: missing key 'P1'"):
            KittiOdometryDataset(tmp_path, [6], [0], *SIZE)
        with pytest.raises(ValueError, match="cameras"):
            KittiOdometryDataset(tmp_path, [6], [0], *SIZE, cameras="rgb")
