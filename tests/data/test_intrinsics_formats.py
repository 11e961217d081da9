"""Intrinsics readers: every accepted text form gives the same K; KITTI calibration files (labelled,
unlabelled, raw calib_cam_to_cam.txt) pick the right camera; real KITTI files when ../shared/data is present."""

from __future__ import annotations

import numpy as np
import pytest

from featdepth.data.io import DataError, as_pixel_intrinsics, read_intrinsics_file, scale_intrinsics

K = np.array([[721.5377, 0.0, 609.5593], [0.0, 721.5377, 172.854], [0.0, 0.0, 1.0]])
P = [np.hstack([K, np.array([[t], [0.0], [0.0]])]) for t in (0.0, -387.5744, 44.85728, -337.2877)]


def _row(m: np.ndarray) -> str:
    return " ".join(f"{v:.12e}" for v in m.reshape(-1))


@pytest.mark.parametrize(
    "text",
    [
        "721.5377 0 609.5593\n0 721.5377 172.854\n0 0 1\n",  # 3x3
        "721.5377 721.5377 609.5593 172.854\n",  # 1x4
        "# fx\n721.5377\n721.5377\n609.5593\n172.854\n",  # 4x1
        "721.5377, 721.5377, 609.5593, 172.854\n",  # commas
        "721.5377 0 609.5593 0\n0 721.5377 172.854 0\n0 0 1 0\n",  # 3x4 projection
    ],
)
def test_plain_forms_agree(tmp_path, text):
    path = tmp_path / "K.txt"
    path.write_text(text)
    np.testing.assert_allclose(read_intrinsics_file(path), K)


def test_kitti_calib_labelled_picks_p2_by_default_and_others_on_request(tmp_path):
    # P2's K differs from P0's here, so the choice is visible
    K2 = K.copy()
    K2[0, 2] = 600.0
    lines = [f"P0: {_row(P[0])}", f"P1: {_row(P[1])}", f"P2: {_row(np.hstack([K2, P[2][:, 3:]]))}", f"P3: {_row(P[3])}",
             "Tr: " + _row(np.eye(4)[:3])]
    path = tmp_path / "calib.txt"
    path.write_text("\n".join(lines) + "\n")
    np.testing.assert_allclose(read_intrinsics_file(path), K2)
    np.testing.assert_allclose(read_intrinsics_file(path, camera="P0"), K)
    np.testing.assert_allclose(read_intrinsics_file(path, camera=0), K)
    with pytest.raises(DataError, match="unknown camera 'P7'"):
        read_intrinsics_file(path, camera="P7")


def test_kitti_calib_unlabelled(tmp_path):
    K2 = K.copy()
    K2[1, 2] = 170.0
    path = tmp_path / "calib.txt"
    path.write_text("\n".join([_row(P[0]), _row(P[1]), _row(np.hstack([K2, P[2][:, 3:]])), _row(P[3])]) + "\n")
    np.testing.assert_allclose(read_intrinsics_file(path), K2)
    np.testing.assert_allclose(read_intrinsics_file(path, camera="P1"), K)
    two = tmp_path / "two.txt"
    two.write_text(_row(P[0]) + "\n" + _row(P[1]) + "\n")
    with pytest.raises(DataError) as info:
        read_intrinsics_file(two)
    assert str(two) in str(info.value) and "no P2" in str(info.value) and "P0" in str(info.value)
    np.testing.assert_allclose(read_intrinsics_file(two, camera="P0"), K)


def test_kitti_raw_cam_to_cam(tmp_path):
    K2 = K.copy()
    K2[0, 0] = K2[1, 1] = 700.0
    path = tmp_path / "calib_cam_to_cam.txt"
    path.write_text(
        "calib_time: 09-Jan-2012 13:57:47\ncorner_dist: 9.950000e-02\n"
        f"K_02: {_row(np.eye(3) * 5)}\nP_rect_00: {_row(P[0])}\nP_rect_02: {_row(np.hstack([K2, P[2][:, 3:]]))}\n"
    )
    np.testing.assert_allclose(read_intrinsics_file(path), K2)  # P_rect_02, not K_02 (unrectified)
    np.testing.assert_allclose(read_intrinsics_file(path, camera="P0"), K)
    with pytest.raises(DataError, match="P_rect_03"):
        read_intrinsics_file(path, camera="P3")


@pytest.mark.realdata
def test_real_kitti_calibration_files(shared_data):
    raw = shared_data / "kitti_raw_tiny" / "2011_09_26" / "calib_cam_to_cam.txt"
    odom = shared_data / "kitti_odom_06_tiny" / "calib.txt"
    cam = shared_data / "kitti_raw_tiny" / "2011_09_26" / "2011_09_26_drive_0023_sync" / "image_02" / "cam.txt"
    for path in (raw, odom):
        if not path.is_file():
            pytest.skip(f"{path} not present")
    K_raw = read_intrinsics_file(raw)
    # independent oracle: the P_rect_02 line parsed by hand
    line = next(line for line in raw.read_text().splitlines() if line.startswith("P_rect_02:"))
    expected = np.array([float(v) for v in line.split(":", 1)[1].split()]).reshape(3, 4)[:, :3]
    np.testing.assert_allclose(K_raw, expected)
    if cam.is_file():
        np.testing.assert_allclose(K_raw, read_intrinsics_file(cam), rtol=1e-6)
    K_odom = read_intrinsics_file(odom, camera="P0")  # two unlabelled lines: P0 and P1
    assert K_odom[0, 0] == pytest.approx(707.0912) and K_odom[0, 2] == pytest.approx(601.8873)
    with pytest.raises(DataError, match="no P2"):
        read_intrinsics_file(odom)


@pytest.mark.parametrize("value", [K, [721.5377, 721.5377, 609.5593, 172.854], "721.5377 721.5377 609.5593 172.854",
                                   np.array([[721.5377], [721.5377], [609.5593], [172.854]])])
def test_as_pixel_intrinsics_forms(value):
    np.testing.assert_allclose(as_pixel_intrinsics(value), K)


def test_as_pixel_intrinsics_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        as_pixel_intrinsics(str(tmp_path / "missing.txt"))
    with pytest.raises(DataError, match="fx and fy must be > 0"):
        as_pixel_intrinsics([0, 1, 2, 3])
    with pytest.raises(DataError, match="shape"):
        as_pixel_intrinsics(np.eye(2))


def test_scale_intrinsics():
    out = scale_intrinsics(K, (375, 1242), (192, 640))
    np.testing.assert_allclose(out[0], K[0] * 640 / 1242)
    np.testing.assert_allclose(out[1], K[1] * 192 / 375)
    np.testing.assert_allclose(out[2], [0, 0, 1])
