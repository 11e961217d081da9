"""Tests of featdepth.evaluation.gt_export (Velodyne projection, benchmark PNGs, gt_depths.npz)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from featdepth.evaluation.depth_metrics import evaluate_depth, load_gt_depths
from featdepth.evaluation.gt_export import (
    export_gt_depths,
    parse_split_line,
    project_velodyne_to_depth,
    read_benchmark_depth_png,
    read_velodyne_points,
    save_gt_depths,
)

DATE = "2011_09_26"
DRIVE = "2011_09_26_drive_0023_sync"


def _parse_calib_text(path: Path) -> dict[str, np.ndarray]:
    out = {}
    for line in path.read_text().splitlines():
        key, _, val = line.partition(":")
        try:
            out[key.strip()] = np.array([float(v) for v in val.split()])
        except ValueError:
            pass
    return out


def _independent_projection(calib_dir: Path) -> np.ndarray:
    """P_rect_02 @ R_rect_00 @ [R|T]_velo_to_cam, read directly from the text files."""
    c2c = _parse_calib_text(calib_dir / "calib_cam_to_cam.txt")
    v2c = _parse_calib_text(calib_dir / "calib_velo_to_cam.txt")
    Tv = np.eye(4)
    Tv[:3, :3] = v2c["R"].reshape(3, 3)
    Tv[:3, 3] = v2c["T"]
    Rr = np.eye(4)
    Rr[:3, :3] = c2c["R_rect_00"].reshape(3, 3)
    return c2c["P_rect_02"].reshape(3, 4) @ Rr @ Tv


def _pixel(P: np.ndarray, xyz) -> tuple[int, int, float]:
    u, v, w = P @ np.array([*xyz, 1.0])
    return int(np.round(v / w)) - 1, int(np.round(u / w)) - 1, w


@pytest.fixture
def calib(shared_data):
    from featdepth.data.kitti_calib import read_raw_calibration

    return read_raw_calibration(shared_data / "kitti_raw_tiny" / DATE, cam=2)


@pytest.mark.realdata
class TestProjectionRealCalibration:
    def test_point_ahead_lands_near_principal_point(self, shared_data, calib):
        P = _independent_projection(shared_data / "kitti_raw_tiny" / DATE)
        row, col, _ = _pixel(P, (10.0, 0.0, 0.0))
        # near the principal point (cx ~ 609.6, cy ~ 172.9) of P_rect_02
        assert abs(col - 609.5593) < 25 and abs(row - 172.854) < 25
        depth = project_velodyne_to_depth(np.array([[10.0, 0.0, 0.0, 0.3]], np.float32), calib)
        assert depth.shape == (375, 1242) == tuple(calib.image_size)
        assert np.count_nonzero(depth) == 1
        assert depth[row, col] == pytest.approx(10.0)  # depth = Velodyne forward distance
        cam = project_velodyne_to_depth(np.array([[10.0, 0.0, 0.0]], np.float32), calib, depth_from="camera")
        assert cam[row, col] == pytest.approx(_pixel(P, (10.0, 0.0, 0.0))[2], rel=1e-6)

    def test_behind_and_outside_are_dropped(self, calib):
        pts = np.array([[-10.0, 0.0, 0.0, 1.0], [10.0, 30.0, 0.0, 1.0], [10.0, 0.0, 20.0, 1.0]], np.float32)
        assert not project_velodyne_to_depth(pts, calib).any()

    @pytest.mark.parametrize("duplicates", ["monodepth2", "nearest"])
    def test_nearest_wins(self, shared_data, calib, duplicates):
        P = _independent_projection(shared_data / "kitti_raw_tiny" / DATE)
        near, far = (10.0, 0.0, 0.0), (10.05, 0.0, 0.0)
        assert _pixel(P, near)[:2] == _pixel(P, far)[:2]  # precondition: same pixel
        row, col, _ = _pixel(P, near)
        for order in ((near, far), (far, near)):
            pts = np.array([[*p, 1.0] for p in order], np.float32)
            depth = project_velodyne_to_depth(pts, calib, duplicates=duplicates)
            assert np.count_nonzero(depth) == 1 and depth[row, col] == pytest.approx(10.0)


def _simple_points(pixels_depths):
    """Points that land on chosen pixels under P = [I | 0] with depth_from='camera': u = x/z, v = y/z."""
    pts = []
    for (r, c), d in pixels_depths:
        u, v = c + 1, r + 1  # the standard's round(.) - 1 offset
        pts.append([u * d, v * d, d, 0.0])
    return np.array(pts, np.float32)


P_SIMPLE = np.hstack([np.eye(3), np.zeros((3, 1))])


class TestProjectionRules:
    def test_monodepth2_linear_index_quirk(self):
        H, W = 3, 4
        # (0, W-1) and (1, 0) share the standard's linear index row*(W-1)+col-1
        pts = _simple_points([((0, 3), 7.0), ((1, 0), 3.0), ((0, 3), 5.0)])
        exact = project_velodyne_to_depth(pts, P_SIMPLE, (H, W), depth_from="camera", duplicates="monodepth2")
        clean = project_velodyne_to_depth(pts, P_SIMPLE, (H, W), depth_from="camera", duplicates="nearest")
        assert clean[0, 3] == 5.0 and clean[1, 0] == 3.0
        assert exact[0, 3] == 3.0 and exact[1, 0] == 3.0  # the first point's pixel gets the merged minimum
        assert np.count_nonzero(exact) == np.count_nonzero(clean) == 2

    @pytest.mark.parametrize("duplicates", ["monodepth2", "nearest"])
    def test_against_loop_reference(self, duplicates):
        rng = np.random.default_rng(0)
        H, W = 6, 7
        n = 400
        pix = [
            ((int(rng.integers(-1, H + 1)), int(rng.integers(-1, W + 1))), float(rng.uniform(1, 50))) for _ in range(n)
        ]
        pts = _simple_points(pix)
        got = project_velodyne_to_depth(pts, P_SIMPLE, (H, W), depth_from="camera", duplicates=duplicates)

        # loop reference written from the rule: last write wins, then duplicate groups get their minimum
        vals = [((r, c), np.float64(np.float32(d))) for (r, c), d in pix if 0 <= r < H and 0 <= c < W]
        ref = np.zeros((H, W))
        if duplicates == "nearest":
            best: dict = {}
            for rc, d in vals:
                best[rc] = min(d, best.get(rc, np.inf))
            for rc, d in best.items():
                ref[rc] = d
        else:
            for rc, d in vals:
                ref[rc] = d
            groups = defaultdict(list)
            for rc, d in vals:
                groups[rc[0] * (W - 1) + rc[1] - 1].append((rc, d))
            for members in groups.values():
                if len(members) > 1:
                    ref[members[0][0]] = min(d for _, d in members)
        np.testing.assert_allclose(got, ref, rtol=1e-6)

    def test_half_pixel_rounding_is_to_even(self):
        # u = 2.5 -> round 2 -> column 1 ; u = 3.5 -> round 4 -> column 3
        pts = np.array([[2.5, 1.0, 1.0, 0], [3.5 * 2, 1.0 * 2, 2.0, 0]], np.float32)
        depth = project_velodyne_to_depth(pts, P_SIMPLE, (2, 6), depth_from="camera")
        assert depth[0, 1] == 1.0 and depth[0, 3] == 2.0 and np.count_nonzero(depth) == 2

    def test_bad_inputs(self):
        with pytest.raises(ValueError):
            project_velodyne_to_depth(np.zeros((3, 5)), P_SIMPLE, (2, 2))
        with pytest.raises(ValueError):
            project_velodyne_to_depth(np.zeros((3, 4)), np.eye(3), (2, 2))
        with pytest.raises(ValueError, match="image_size"):
            project_velodyne_to_depth(np.zeros((3, 4)), P_SIMPLE)


def test_read_velodyne_points(tmp_path):
    pts = np.arange(12, dtype=np.float32).reshape(3, 4)
    pts.tofile(tmp_path / "0000000000.bin")
    np.testing.assert_array_equal(read_velodyne_points(tmp_path / "0000000000.bin"), pts)
    np.arange(5, dtype=np.float32).tofile(tmp_path / "bad.bin")
    with pytest.raises(ValueError, match="bad.bin"):
        read_velodyne_points(tmp_path / "bad.bin")
    with pytest.raises(FileNotFoundError, match="none.bin"):
        read_velodyne_points(tmp_path / "none.bin")


def test_parse_split_line():
    folder = "2011_09_26/2011_09_26_drive_0002_sync"
    assert parse_split_line(f"{folder} 69 l") == (folder, 69, "l")
    assert parse_split_line("a/b 3")[2] == "l"
    with pytest.raises(ValueError):
        parse_split_line("a/b x l")
    with pytest.raises(ValueError):
        parse_split_line("a/b 1 q")


def _write_png16(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr.astype(np.uint16)).save(path)


class TestBenchmarkExport:
    def test_png_over_256(self, tmp_path):
        arr = np.array([[0, 256, 2560], [65535, 1, 512]], dtype=np.uint16)
        _write_png16(tmp_path / "d.png", arr)
        out = read_benchmark_depth_png(tmp_path / "d.png")
        assert out.dtype == np.float32
        np.testing.assert_allclose(out, arr / 256.0)

    def test_export_and_read_back(self, tmp_path):
        raw = tmp_path / "raw"
        ann = tmp_path / "annotated"
        a = np.full((4, 6), 2560, np.uint16)
        b = np.full((5, 7), 512, np.uint16)
        _write_png16(raw / "2011_09_26/2011_09_26_drive_0001_sync/proj_depth/groundtruth/image_02/0000000005.png", a)
        _write_png16(ann / "val/2011_09_26_drive_0002_sync/proj_depth/groundtruth/image_03/0000000007.png", b)
        lines = ["2011_09_26/2011_09_26_drive_0001_sync 5 l", "2011_09_26/2011_09_26_drive_0002_sync 7 r"]
        out = export_gt_depths(raw, lines, tmp_path / "gt_depths.npz", mode="benchmark", gt_path=ann)
        with np.load(out, allow_pickle=True) as f:
            assert f.files == ["data"] and f["data"].dtype == object and f["data"].shape == (2,)
            assert f["data"][0].dtype == np.float32
        maps = load_gt_depths(out)
        assert maps[0].shape == (4, 6) and maps[1].shape == (5, 7)
        assert np.all(maps[0] == 10.0) and np.all(maps[1] == 2.0)

        with pytest.raises(FileNotFoundError, match="0000000009.png"):
            export_gt_depths(raw, ["2011_09_26/2011_09_26_drive_0001_sync 9 l"], tmp_path / "x.npz", mode="benchmark")

    def test_save_gt_depths_same_size_maps_stay_object_array(self, tmp_path):
        out = save_gt_depths(tmp_path / "g", [np.ones((2, 3)), np.zeros((2, 3))])
        assert out.name == "g.npz"
        with np.load(out, allow_pickle=True) as f:
            assert f["data"].dtype == object
        assert [m.shape for m in load_gt_depths(out)] == [(2, 3), (2, 3)]


@pytest.mark.realdata
def test_velodyne_export_with_real_calibration(tmp_path, shared_data, calib):
    """Export from a synthetic scan with the real calibration (calibration files linked, not copied)."""
    root = tmp_path / "raw"
    (root / DATE).mkdir(parents=True)
    for name in ("calib_cam_to_cam.txt", "calib_velo_to_cam.txt"):
        (root / DATE / name).symlink_to(shared_data / "kitti_raw_tiny" / DATE / name)
    rng = np.random.default_rng(1)
    pts = np.column_stack(
        [rng.uniform(-5, 60, 3000), rng.uniform(-20, 20, 3000), rng.uniform(-2, 1, 3000), rng.uniform(0, 1, 3000)]
    ).astype(np.float32)
    velo_dir = root / DATE / DRIVE / "velodyne_points" / "data"
    velo_dir.mkdir(parents=True)
    pts.tofile(velo_dir / "0000000004.bin")
    out = export_gt_depths(root, [f"{DATE}/{DRIVE} 4 l"], tmp_path / "gt.npz", mode="velodyne")
    maps = load_gt_depths(out)
    expected = project_velodyne_to_depth(pts, calib).astype(np.float32)
    assert np.count_nonzero(expected) > 100
    np.testing.assert_array_equal(maps[0], expected)
    with pytest.raises(FileNotFoundError, match="0000000005.bin"):
        export_gt_depths(root, [f"{DATE}/{DRIVE} 5 l"], tmp_path / "gt2.npz")


@pytest.mark.realdata
def test_projected_depth_of_kitti_tiny_against_itself_and_perturbed(shared_data):
    d = shared_data / "kitti_raw_tiny" / DATE / DRIVE / "proj_depth/velodyne/image_02"
    with np.load(d / "0000000002.npz") as f:
        gt = f["velodyne_depth"]
    res = evaluate_depth([gt], [gt.copy()], protocol="eigen", scaling=None)
    assert res.metrics["rmse"] == 0.0 and res.metrics["a1"] == 1.0
    pred = np.where(gt > 0, gt + 1.0, 1.0).astype(np.float32)
    res = evaluate_depth([gt], [pred], protocol="eigen", scaling=None)
    h, w = gt.shape
    m = (gt > 1e-3) & (gt < 80)
    m[: int(0.40810811 * h)] = False
    m[int(0.99189189 * h) :] = False
    m[:, : int(0.03594771 * w)] = False
    m[:, int(0.96405229 * w) :] = False
    g = gt[m].astype(np.float64)
    p = np.clip(pred[m].astype(np.float64), 1e-3, 80)
    assert res.metrics["rmse"] == pytest.approx(np.sqrt(np.mean((g - p) ** 2)), rel=1e-9)
    assert res.metrics["abs_rel"] == pytest.approx(np.mean(np.abs(g - p) / g), rel=1e-9)
    assert res.metrics["abs_rel"] > 0
