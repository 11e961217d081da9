"""Tests of featdepth.geometry.scale_recovery (metric scale from the camera height, DNet-style)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from featdepth.geometry import (
    ScaleRecoveryResult,
    axis_angle_to_matrix,
    fit_plane,
    recover_scale_from_camera_height,
    recover_scale_from_camera_height_batch,
    sequence_scale,
)

pytestmark = pytest.mark.usefixtures("single_thread")

SIZE = (96, 320)  # (H, W) of the synthetic frames


def _kitti_like_K(h: int = SIZE[0], w: int = SIZE[1]) -> torch.Tensor:
    """monodepth2's normalised KITTI intrinsics (fx 0.58 W, fy 1.92 H, principal point at the centre)."""
    return torch.tensor([[0.58 * w, 0.0, 0.5 * w], [0.0, 1.92 * h, 0.5 * h], [0.0, 0.0, 1.0]], dtype=torch.float64)


def _rotation(pitch_deg: float = 0.0, roll_deg: float = 0.0) -> torch.Tensor:
    """``R_world_cam`` of a camera pitched about x and rolled about z (world frame: x right, y down, z forward)."""
    aa_pitch = torch.tensor([math.radians(pitch_deg), 0.0, 0.0], dtype=torch.float64)
    aa_roll = torch.tensor([0.0, 0.0, math.radians(roll_deg)], dtype=torch.float64)
    return axis_angle_to_matrix(aa_pitch) @ axis_angle_to_matrix(aa_roll)


def _render(
    K: torch.Tensor,
    height: float = 1.5,
    pitch_deg: float = 3.0,
    roll_deg: float = 0.0,
    size: tuple[int, int] = SIZE,
    ground: bool = True,
    walls: bool = True,
    boxes: bool = True,
    far_wall: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Analytic ray casting of a street: ground ``y = height``, side walls, two boxes, optionally a far wall.

    Returns the ``(H, W)`` float64 depth (camera ``z``; 0 where a ray hits nothing) and the ground normal in the
    camera frame (pointing down).
    """
    h, w = size
    R = _rotation(pitch_deg, roll_deg)
    v, u = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    pix = torch.stack([u, v, torch.ones_like(u)], dim=-1)  # (H, W, 3)
    rays_c = pix @ torch.linalg.inv(K).T  # camera-frame rays with z = 1, so depth = ray parameter t
    rays = rays_c @ R.T  # world-frame directions
    inf = torch.full((h, w), math.inf, dtype=torch.float64)
    t = inf.clone()

    def plane_hit(axis: int, value: float) -> torch.Tensor:
        d = rays[..., axis]
        hit = value / torch.where(d.abs() > 1e-12, d, torch.full_like(d, 1e-12))
        return torch.where(hit > 0, hit, inf)

    if ground:
        t = torch.minimum(t, plane_hit(1, height))
    if walls:  # 6 m high walls: rays above them see the sky
        for x_wall in (-4.0, 5.0):
            hit = plane_hit(0, x_wall)
            y_hit = hit * rays[..., 1]
            t = torch.minimum(t, torch.where(y_hit >= height - 6.0, hit, inf))
    if far_wall is not None:
        t = torch.minimum(t, plane_hit(2, far_wall))
    if boxes:  # axis-aligned boxes standing on the ground (slab method)
        boxes_lo_hi = (
            ((-3.5, height - 1.4, 9.0), (-1.5, height, 13.0)),
            ((1.0, height - 2.5, 16.0), (4.0, height, 22.0)),
        )
        for lo, hi in boxes_lo_hi:
            lo_t, hi_t = torch.tensor(lo, dtype=torch.float64), torch.tensor(hi, dtype=torch.float64)
            safe = torch.where(rays.abs() > 1e-12, rays, torch.full_like(rays, 1e-12))
            t0, t1 = lo_t / safe, hi_t / safe
            t_near = torch.minimum(t0, t1).amax(dim=-1)
            t_far = torch.maximum(t0, t1).amin(dim=-1)
            hit = (t_near <= t_far) & (t_near > 0)
            t = torch.where(hit, torch.minimum(t, t_near), t)
    depth = torch.where(torch.isfinite(t), t, torch.zeros_like(t))
    normal_cam = R.T @ torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64)
    return depth, normal_cam


# ----------------------------------------------------------------------------------------------------------------
# plane fitting
# ----------------------------------------------------------------------------------------------------------------


def _plane_points(n_in: int, n_out: int, sigma: float, seed: int):
    g = torch.Generator().manual_seed(seed)
    normal = torch.randn(3, generator=g, dtype=torch.float64)
    normal /= normal.norm()
    offset = 2.0 + 3.0 * float(torch.rand(1, generator=g, dtype=torch.float64))
    # orthonormal in-plane basis
    a = torch.linalg.cross(normal, torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64))
    if a.norm() < 0.1:
        a = torch.linalg.cross(normal, torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64))
    a /= a.norm()
    b = torch.linalg.cross(normal, a)
    st = (torch.rand(n_in, 2, generator=g, dtype=torch.float64) - 0.5) * 10.0  # a 10 x 10 patch
    noise = sigma * torch.randn(n_in, generator=g, dtype=torch.float64)
    on = offset * normal + st[:, :1] * a + st[:, 1:] * b + noise[:, None] * normal
    out = (torch.rand(n_out, 3, generator=g, dtype=torch.float64) - 0.5) * 12.0 + offset * normal
    pts = torch.cat([on, out])
    perm = torch.randperm(pts.shape[0], generator=g)
    is_inlier = torch.cat([torch.ones(n_in, dtype=torch.bool), torch.zeros(n_out, dtype=torch.bool)])
    return pts[perm], normal, offset, is_inlier[perm]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fit_plane_with_noise_and_30_percent_outliers(seed):
    sigma = 0.01
    pts, normal, offset, is_inlier = _plane_points(1400, 600, sigma, seed)  # 30 % outliers
    fit = fit_plane(pts, threshold=3 * sigma, generator=torch.Generator().manual_seed(seed))
    assert fit is not None
    # Orientation: normal . X = offset with offset >= 0 (the true offset is positive).
    # Tolerances: the total-least-squares normal of N = 1400 points with in-plane std 10/sqrt(12) = 2.9 and
    # noise sigma = 0.01 has an angular std of about sigma / (2.9 sqrt(N)) = 1e-4 rad and the offset a std of
    # sigma / sqrt(N) = 3e-4; outliers falling inside the +-3 sigma band (about 0.1 % of the box) add a bias
    # far below that. 1e-3 rad and 2e-3 are ~10 and ~7 standard deviations.
    angle = math.acos(min(1.0, float(fit.normal.double() @ normal)))
    assert angle < 1e-3
    assert fit.offset == pytest.approx(offset, abs=2e-3)
    assert fit.rms == pytest.approx(sigma, rel=0.15)
    # the inliers are the plane's points (minus the 0.3 % of Gaussian tails beyond 3 sigma, plus the few
    # outliers inside the band)
    found = fit.inliers
    assert int((found & is_inlier).sum()) >= 0.99 * 1400
    assert int((found & ~is_inlier).sum()) <= 0.02 * 600
    assert fit.inlier_fraction == pytest.approx(fit.num_inliers / 2000)


def test_fit_plane_is_reproducible_and_follows_the_prior():
    g = torch.Generator().manual_seed(3)
    # a large wall z = 8 and a smaller floor y = 1.5 (both noise-free)
    wall_xy = (torch.rand(3000, 2, generator=g, dtype=torch.float64) - 0.5) * 8
    wall = torch.cat([wall_xy, torch.full((3000, 1), 8.0, dtype=torch.float64)], 1)
    floor = (torch.rand(1000, 3, generator=g, dtype=torch.float64) - 0.5) * 8
    floor[:, 1] = 1.5
    floor[:, 2] += 4.0
    pts = torch.cat([wall, floor]).float()
    free = fit_plane(pts, threshold=0.01, generator=torch.Generator().manual_seed(0))
    assert free is not None and free.normal.dtype == torch.float32
    assert abs(float(free.normal[2])) == pytest.approx(1.0, abs=2e-5) and free.offset == pytest.approx(8.0, abs=2e-4)
    ground = fit_plane(
        pts, threshold=0.01, prior_normal=(0, 1, 0), max_angle_deg=20, generator=torch.Generator().manual_seed(0)
    )
    assert ground is not None
    # float32 points: agreement to float32 rounding of coordinates of size ~8
    torch.testing.assert_close(ground.normal, torch.tensor([0.0, 1.0, 0.0]), atol=2e-5, rtol=0)
    assert ground.offset == pytest.approx(1.5, abs=2e-5) and ground.num_inliers >= 1000
    again = fit_plane(
        pts, threshold=0.01, prior_normal=(0, 1, 0), max_angle_deg=20, generator=torch.Generator().manual_seed(0)
    )
    assert torch.equal(again.normal, ground.normal) and again.offset == ground.offset
    # the prior orients the normal: (0, -1, 0) gives the opposite normal and offset
    up = fit_plane(pts, threshold=0.01, prior_normal=(0, -1, 0), max_angle_deg=20)
    assert float(up.normal[1]) == pytest.approx(-1.0, abs=2e-5) and up.offset == pytest.approx(-1.5, abs=2e-5)
    # relative threshold and the mask: masking the floor out leaves nothing near (0, 1, 0) -> None
    no_floor = torch.cat([torch.ones(3000, dtype=torch.bool), torch.zeros(1000, dtype=torch.bool)])
    assert fit_plane(pts, no_floor, threshold=0.001, relative=True, prior_normal=(0, 1, 0), max_angle_deg=20) is None


def test_fit_plane_bad_arguments():
    pts = torch.randn(10, 3)
    with pytest.raises(ValueError, match=r"points must have shape \(N, 3\), got \(10, 2\)"):
        fit_plane(pts[:, :2], threshold=0.1)
    with pytest.raises(ValueError, match="2 valid points; a plane needs at least 3"):
        fit_plane(pts[:2], threshold=0.1)
    two = torch.zeros(10, dtype=torch.bool)
    two[:2] = True
    with pytest.raises(ValueError, match="2 valid points; a plane needs at least 3"):
        fit_plane(pts, two, threshold=0.1)
    with pytest.raises(ValueError, match=r"threshold must be > 0, got -0.1"):
        fit_plane(pts, threshold=-0.1)
    with pytest.raises(ValueError, match="prior_normal must be a finite non-zero 3-vector"):
        fit_plane(pts, threshold=0.1, prior_normal=(0, 0, 0))
    with pytest.raises(ValueError, match=r"mask must have shape \(10,\)"):
        fit_plane(pts, torch.ones(9, dtype=torch.bool), threshold=0.1)


# ----------------------------------------------------------------------------------------------------------------
# scale from the camera height: synthetic scenes
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("factor", [0.037, 1.0, 13.7])
def test_synthetic_street_recovers_the_factor(factor):
    K = _kitti_like_K()
    height = 1.5
    depth, normal_true = _render(K, height=height, pitch_deg=3.0, roll_deg=1.0)
    assert (depth == 0).any()  # the sky has no depth: invalid pixels are part of the test
    res = recover_scale_from_camera_height(depth * factor, K, camera_height=height)
    assert res.ok and res.reason == ""
    # noise-free: the only error is floating point -> tight tolerance
    assert res.scale * factor == pytest.approx(1.0, rel=1e-6)
    assert res.predicted_height == pytest.approx(height * factor, rel=1e-6) and res.offset == res.predicted_height
    angle_err = math.degrees(math.acos(min(1.0, float(torch.tensor(res.normal, dtype=torch.float64) @ normal_true))))
    assert angle_err < 1e-4
    expected_tilt = math.degrees(math.acos(float(normal_true[1])))
    assert res.angle_from_vertical_deg == pytest.approx(expected_tilt, abs=1e-4)
    assert 0.2 < res.inlier_fraction < 1.0  # walls and boxes occupy part of the lower image
    assert res.num_candidates < res.num_region_pixels  # the local-normal test removed wall / box pixels
    # float32 input and (1, 1, H, W) / (4, 4) forms give the same answer
    res32 = recover_scale_from_camera_height(
        (depth * factor).float()[None, None], torch.block_diag(K, torch.ones(1, 1, dtype=K.dtype)).float(), height
    )
    assert res32.ok and res32.scale * factor == pytest.approx(1.0, rel=1e-4)


def _inlier_heights(depth: torch.Tensor, K: torch.Tensor, res) -> torch.Tensor:
    """Camera-frame ``y`` of the lower-half pixels within the relative inlier band of the result's plane."""
    h, w = depth.shape
    v, u = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    pts = torch.stack([u, v, torch.ones_like(u)], -1) @ torch.linalg.inv(K).T * depth[..., None]
    n = torch.tensor(res.normal, dtype=torch.float64)
    region = (depth > 0) & (v >= h // 2) & (pts[..., 1] > 0)
    on = region & ((pts @ n - res.plane_height).abs() <= 0.05 * res.plane_height)
    return pts[..., 1][on]


def test_height_from_level_and_plane():
    """``height_from``: "plane" (default) is the plane's distance; "level" the median ``y`` of its inliers: equal
    for a level camera, different (by about the median ground distance x sin(pitch)) for a pitched one."""
    K = _kitti_like_K()
    level_cam, _ = _render(K, height=1.5, pitch_deg=0.0)
    for how in ("plane", "level"):
        r = recover_scale_from_camera_height(level_cam * 0.2, K, 1.5, height_from=how)
        assert r.ok and r.height_from == how and r.scale * 0.2 == pytest.approx(1.0, rel=1e-6)
        assert r.plane_height == pytest.approx(0.3, rel=1e-6) and r.level_height == pytest.approx(0.3, rel=1e-6)
    pitched, _ = _render(K, height=1.5, pitch_deg=3.0)
    plane = recover_scale_from_camera_height(pitched, K, 1.5)
    level = recover_scale_from_camera_height(pitched, K, 1.5, height_from="level")
    assert plane.height_from == "plane" and plane.predicted_height == plane.plane_height == plane.offset
    assert plane.scale == pytest.approx(1.0, rel=1e-6)  # the plane is exact for any orientation
    assert level.predicted_height == level.level_height and level.offset == pytest.approx(plane.offset, rel=1e-9)
    ys = _inlier_heights(pitched, K, level)
    assert level.level_height == pytest.approx(float(ys.median()), rel=1e-9)  # the hand computation
    assert abs(level.scale - 1.0) > 0.1  # a 3° pitch: "level" is wrong, as documented
    empty = recover_scale_from_camera_height(pitched, K, 1.5, mask=torch.zeros(SIZE, dtype=torch.bool), height_from="level")
    assert not empty.ok and empty.height_from == "level" and math.isnan(empty.level_height)
    with pytest.raises(ValueError, match="height_from must be 'level' or 'plane', got 'ground'"):
        recover_scale_from_camera_height(pitched, K, 1.5, height_from="ground")


def test_noisy_and_sparse_depth():
    K = _kitti_like_K()
    depth, _ = _render(K, height=1.65, pitch_deg=-2.0)
    factor = 0.31
    g = torch.Generator().manual_seed(7)
    # 2 % multiplicative noise on every pixel, as from an imperfect network: the scale stays within 1 % (the
    # noise is zero-mean and thousands of ground pixels average it)
    noisy = depth * factor * (1 + 0.02 * torch.randn(depth.shape, generator=g, dtype=torch.float64))
    res = recover_scale_from_camera_height(noisy, K, 1.65)
    assert res.ok and res.scale * factor == pytest.approx(1.0, rel=0.01)
    # lidar-like sparse depth: 4 % of the pixels kept, via a mask and via zeros; normals are rarely computable
    keep = torch.rand(depth.shape, generator=g) < 0.04
    by_mask = recover_scale_from_camera_height(depth * factor, K, 1.65, mask=keep)
    by_zeros = recover_scale_from_camera_height(torch.where(keep, depth, torch.zeros_like(depth)) * factor, K, 1.65)
    for r in (by_mask, by_zeros):
        assert r.ok and r.scale * factor == pytest.approx(1.0, rel=1e-6)
    assert by_mask.num_region_pixels == by_zeros.num_region_pixels < 0.05 * depth.numel()


def test_invalid_depth_values_and_mask():
    K = _kitti_like_K()
    depth, _ = _render(K, height=1.5)
    reference = recover_scale_from_camera_height(depth, K, 1.5)
    bad = depth.clone()
    bad[60:70, 10:40] = float("nan")
    bad[70:75, 100:140] = float("inf")
    bad[80:85, 200:240] = -3.0
    res = recover_scale_from_camera_height(bad, K, 1.5)
    assert res.ok and res.scale == pytest.approx(reference.scale, rel=1e-6)
    assert res.num_region_pixels < reference.num_region_pixels
    # a mask of zeros / an all-invalid lower image: rejected, not an error
    none = recover_scale_from_camera_height(depth, K, 1.5, mask=torch.zeros(SIZE, dtype=torch.bool))
    assert not none.ok and math.isnan(none.scale) and none.normal is None
    assert none.reason == (
        "no ground plane found: only 0 valid depth pixels in the lower 50% of the image below the camera "
        "(at least 100 needed)"
    )
    # an integer 0/1 mask works like a bool mask
    checker = ((torch.arange(SIZE[0])[:, None] + torch.arange(SIZE[1])[None, :]) % 2).to(torch.uint8)
    res_checker = recover_scale_from_camera_height(depth, K, 1.5, mask=checker)
    assert res_checker.ok and res_checker.scale == pytest.approx(1.0, rel=1e-6)
    assert res_checker.num_region_pixels == pytest.approx(reference.num_region_pixels / 2, abs=SIZE[1])


def test_wall_filling_the_view_is_rejected():
    K = _kitti_like_K()
    wall, _ = _render(K, pitch_deg=0.0, ground=False, walls=False, boxes=False, far_wall=10.0)
    assert bool((wall > 0).all())
    res = recover_scale_from_camera_height(wall * 0.2, K, 1.65)
    assert not res.ok and math.isnan(res.scale)
    assert res.reason.startswith("no ground plane found: only 0% of the lower 50% of the image below the camera")
    assert "has a near-horizontal surface" in res.reason and "within 30° of vertical" in res.reason
    assert res.reason.endswith("the dominant plane there covers 100% of it with its normal 90° from vertical")
    # without the local-normal test (as for sparse depth): every triplet of the noise-free wall spans the wall
    res = recover_scale_from_camera_height(wall * 0.2, K, 1.65, use_normals=False)
    assert not res.ok
    assert res.reason == (
        "no ground plane found: no plane through the points of the lower 50% of the image below the camera has "
        "its normal within 20° of vertical; the dominant plane there covers 100% of it with its normal 90° from "
        "vertical"
    )
    # a noisy wall (1 % depth noise): close triplets give near-horizontal hypotheses, but such a plane only
    # cuts a thin band out of the wall
    g = torch.Generator().manual_seed(1)
    noisy = wall * (1 + 0.01 * torch.randn(wall.shape, generator=g, dtype=torch.float64))
    res = recover_scale_from_camera_height(noisy, K, 1.65, use_normals=False)
    assert not res.ok
    assert res.reason.startswith("no ground plane found: only ")
    assert "of the lower 50% of the image below the camera lies on a near-horizontal plane" in res.reason
    assert res.inlier_fraction < 0.2 and "at least 20%" in res.reason and "90° from vertical" in res.reason


def test_steep_ground_is_rejected_with_its_angle():
    K = _kitti_like_K()
    depth, _ = _render(K, height=1.5, pitch_deg=0.0, roll_deg=40.0, walls=False, boxes=False)
    res = recover_scale_from_camera_height(depth, K, 1.5)
    assert not res.ok
    assert "the dominant plane there covers" in res.reason and "its normal 40° from vertical" in res.reason
    # with looser limits (the local-normal test too) the same frame is accepted
    ok = recover_scale_from_camera_height(depth, K, 1.5, max_plane_angle_deg=45.0, max_normal_angle_deg=45.0)
    assert ok.ok and ok.angle_from_vertical_deg == pytest.approx(40.0, abs=1e-3)
    assert ok.scale == pytest.approx(1.0, rel=1e-6)
    # a ground normal tilted 25° passes the 30° local-normal test but not the 20° plane limit
    tilted, _ = _render(K, height=1.5, pitch_deg=0.0, roll_deg=25.0, walls=False, boxes=False)
    res = recover_scale_from_camera_height(tilted, K, 1.5, max_plane_angle_deg=20.0)
    assert not res.ok and "25° from vertical" in res.reason


def test_batch_per_frame_heights_and_order_independence():
    K = _kitti_like_K()
    d1, _ = _render(K, height=1.5, pitch_deg=2.0)
    d2, _ = _render(K, height=2.0, pitch_deg=-1.0)
    wall, _ = _render(K, ground=False, walls=False, boxes=False, far_wall=10.0)
    depth = torch.stack([d1 * 0.5, d2 * 4.0, wall]).unsqueeze(1)  # (3, 1, H, W)
    results = recover_scale_from_camera_height_batch(depth, K.expand(3, 3, 3), torch.tensor([1.5, 2.0, 1.65]))
    assert [r.ok for r in results] == [True, True, False]
    assert results[0].scale == pytest.approx(2.0, rel=1e-6) and results[1].scale == pytest.approx(0.25, rel=1e-6)
    assert results[2].camera_height == pytest.approx(1.65)  # float32 tensor value
    # a frame's result does not depend on its position in the batch (fresh seeded generator per frame)
    alone = recover_scale_from_camera_height(depth[1, 0], K, 2.0)
    assert alone == results[1]
    reversed_results = recover_scale_from_camera_height_batch(depth.flip(0), K, [1.65, 2.0, 1.5])
    flipped = reversed_results[::-1]
    assert flipped[:2] == results[:2] and flipped[2].reason == results[2].reason
    seq = sequence_scale(results)
    assert (seq.num_accepted, seq.num_rejected) == (2, 1)
    assert seq.scale == pytest.approx((2.0 + 0.25) / 2, rel=1e-6)
    assert seq.rejected[0][0] == 2 and seq.rejected[0][1].startswith("no ground plane found")


@pytest.mark.parametrize(
    "height, fragment",
    [
        (0.0, "camera_height must be > 0, got 0.0"),
        (-1.65, "camera_height must be > 0, got -1.65"),
        (float("nan"), "camera_height must be a finite positive number, got nan"),
        (float("inf"), "camera_height must be a finite positive number, got inf"),
        (True, "camera_height must be a finite positive number, got True"),
        ("1.65", "camera_height must be a finite positive number, got '1.65'"),
    ],
)
def test_bad_camera_height(height, fragment):
    K = _kitti_like_K()
    with pytest.raises(ValueError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        recover_scale_from_camera_height(torch.ones(SIZE), K, height)


def test_bad_shapes_and_parameters():
    K = _kitti_like_K()
    depth = torch.ones(SIZE)
    one_frame = r"depth must have shape \(H, W\) or \(1, 1, H, W\) for one frame, got \(2, 1, 96, 320\)"
    with pytest.raises(ValueError, match=one_frame):
        recover_scale_from_camera_height(depth.expand(2, 1, *SIZE), K, 1.65)
    with pytest.raises(ValueError, match=r"depth must have shape \(H, W\) or \(B, 1, H, W\), got \(2, 3, 96, 320\)"):
        recover_scale_from_camera_height_batch(torch.ones(2, 3, *SIZE), K, 1.65)
    with pytest.raises(ValueError, match=r"K must have shape"):
        recover_scale_from_camera_height(depth, K[:2, :2], 1.65)
    with pytest.raises(ValueError, match=r"K must have shape \(2, 3, 3\).*got \(3, 3, 3\)"):
        recover_scale_from_camera_height_batch(depth.expand(2, 1, *SIZE), K.expand(3, 3, 3), 1.65)
    bad_K = K.clone()
    bad_K[0, 0] = 0.0
    with pytest.raises(ValueError, match="K must have positive focal lengths"):
        recover_scale_from_camera_height(depth, bad_K, 1.65)
    with pytest.raises(ValueError, match=r"mask must have the shape of depth \(96, 320\), got \(96, 319\)"):
        recover_scale_from_camera_height(depth, K, 1.65, mask=torch.ones(96, 319, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"camera_height must have 2 values \(one per frame\), got 3"):
        recover_scale_from_camera_height_batch(depth.expand(2, 1, *SIZE), K, [1.6, 1.7, 1.8])
    with pytest.raises(ValueError, match=r"camera_height must be > 0, got -1.0"):
        recover_scale_from_camera_height_batch(depth.expand(2, 1, *SIZE), K, torch.tensor([1.6, -1.0]))
    with pytest.raises(ValueError, match=r"ground_region must be <= 1, got 1.5"):
        recover_scale_from_camera_height(depth, K, 1.65, ground_region=1.5)
    with pytest.raises(ValueError, match=r"inlier_threshold must be > 0, got 0"):
        recover_scale_from_camera_height(depth, K, 1.65, inlier_threshold=0)
    with pytest.raises(ValueError, match=r"max_plane_angle_deg must be <= 90, got 120"):
        recover_scale_from_camera_height(depth, K, 1.65, max_plane_angle_deg=120)
    with pytest.raises(TypeError, match="depth must be a torch.Tensor"):
        recover_scale_from_camera_height(np.ones(SIZE), K, 1.65)


# ----------------------------------------------------------------------------------------------------------------
# sequence scale
# ----------------------------------------------------------------------------------------------------------------


def _result(scale: float | None, reason: str = "") -> ScaleRecoveryResult:
    ok = scale is not None
    return ScaleRecoveryResult(
        ok=ok,
        scale=scale if ok else math.nan,
        camera_height=1.65,
        predicted_height=1.65 / scale if ok else math.nan,
        normal=(0.0, 1.0, 0.0) if ok else None,
        offset=1.65 / scale if ok else math.nan,
        angle_from_vertical_deg=0.0 if ok else math.nan,
        inlier_fraction=0.5 if ok else 0.0,
        num_region_pixels=1000,
        num_candidates=900,
        num_inliers=500 if ok else 0,
        reason=reason,
    )


def _mad(values):
    med = float(np.median(values))
    return float(np.median(np.abs(np.asarray(values) - med)))


def test_sequence_scale_is_the_median_of_accepted_frames():
    results = [_result(2.0), _result(None, "no ground plane found: x"), _result(30.0), _result(2.2), _result(1.9)]
    seq = sequence_scale(results)
    assert seq.scale == pytest.approx(2.1)  # median of [2.0, 30.0, 2.2, 1.9]: mean of 2.0 and 2.2; 30 ignored
    assert (seq.num_accepted, seq.num_rejected) == (4, 1)
    assert seq.scales == (2.0, 30.0, 2.2, 1.9) and seq.rejected == ((1, "no ground plane found: x"),)
    assert seq.relative_spread == pytest.approx(_mad([2.0, 30.0, 2.2, 1.9]) / 2.1)
    assert sequence_scale(results[:3]).scale == pytest.approx(16.0)
    assert sequence_scale([_result(1.7)]).relative_spread == 0.0


def test_sequence_scale_errors():
    rejected = [_result(None, f"plane normal is {a}° from vertical (at most 20° allowed)") for a in range(40, 45)]
    with pytest.raises(ValueError) as info:
        sequence_scale(rejected)
    msg = str(info.value)
    assert msg.startswith("cannot recover a sequence scale: no frame was accepted of 5 (at least 1 needed); 5 rejected")
    assert "frame 0: plane normal is 40° from vertical" in msg and "and 2 more" in msg
    with pytest.raises(ValueError, match=r"only 1 frame\(s\) accepted of 2 \(at least 2 needed\)"):
        sequence_scale([_result(1.0), rejected[0]], min_accepted=2)
    with pytest.raises(ValueError, match="results is empty"):
        sequence_scale([])
    with pytest.raises(ValueError, match=r"results\[1\] must be a ScaleRecoveryResult, got float"):
        sequence_scale([_result(1.0), 1.0])


# ----------------------------------------------------------------------------------------------------------------
# real data: KITTI raw lidar ground truth with the real calibration
# ----------------------------------------------------------------------------------------------------------------

DRIVE = "2011_09_26/2011_09_26_drive_0023_sync"
KITTI_CAMERA_HEIGHT = 1.65  # metres, nominal height of the KITTI colour cameras


@pytest.mark.realdata
def test_kitti_lidar_ground_truth_known_factor(shared_data):
    from featdepth.data import KittiRawDataset

    raw_root = shared_data / "kitti_raw_tiny"
    ds = KittiRawDataset(raw_root, [f"{DRIVE} {i:010d} l" for i in range(7)], [0], 64, 192, load_depth=True)
    assert len(ds.items) == 7
    heights = []
    for item in ds.items:
        depth = torch.from_numpy(ds.get_depth(item))  # (375, 1242) metres, 0 = no lidar return
        K = torch.from_numpy(ds.get_intrinsics(item, tuple(depth.shape)))  # P_rect_02[:, :3] at that size
        valid = depth > 0
        base = recover_scale_from_camera_height(depth, K, KITTI_CAMERA_HEIGHT, mask=valid)
        assert base.ok, f"frame {item[1]}: {base.reason}"
        h0 = base.predicted_height  # the camera height measured on the unscaled lidar depth, metres
        heights.append(h0)
        # a sanity bound: the lidar-measured height is the nominal 1.65 m to within 10 cm (load, road camber)
        assert abs(h0 - KITTI_CAMERA_HEIGHT) < 0.10, f"frame {item[1]}: {h0:.3f} m"
        assert base.angle_from_vertical_deg < 3.0 and base.inlier_fraction > 0.3
        for seed, factor in enumerate((0.021, 0.37, 8.9)):
            # a different RANSAC seed per run: the factor must come back from the method, not from replaying
            # the same random sample on a scaled copy
            res = recover_scale_from_camera_height(
                depth * factor, K, h0, mask=valid, generator=torch.Generator().manual_seed(100 + seed)
            )
            assert res.ok, f"frame {item[1]}, factor {factor}: {res.reason}"
            assert res.scale == pytest.approx(1.0 / factor, rel=0.02), f"frame {item[1]}, factor {factor}"
    # per-sequence: scaling the whole sequence by f gives 1.65 / (f * median height)
    factor = 0.37
    results = [
        recover_scale_from_camera_height(
            torch.from_numpy(ds.get_depth(it)) * factor,
            torch.from_numpy(ds.get_intrinsics(it, (375, 1242))),
            KITTI_CAMERA_HEIGHT,
        )
        for it in ds.items
    ]
    seq = sequence_scale(results)
    assert seq.num_accepted == 7 and seq.num_rejected == 0
    assert seq.scale * factor == pytest.approx(KITTI_CAMERA_HEIGHT / float(np.median(heights)), rel=0.02)
