"""Tests of featdepth.geometry.warp (backproject / project / warp)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from kornia.geometry.camera.perspective import project_points as kornia_project_points
from kornia.geometry.depth import depth_to_3d_v2 as kornia_depth_to_3d_v2

from featdepth.geometry import (
    BackprojectDepth,
    Project3D,
    Warper,
    axis_angle_to_matrix,
    backproject,
    invert_intrinsics,
    pixel_grid,
    pixels_to_grid,
    pose_from_axis_angle_translation,
    project,
    to_homogeneous_intrinsics,
    transform_points,
    warp,
)


def _random_K(batch: int, height: int, width: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    K = torch.zeros(batch, 3, 3, dtype=dtype)
    K[:, 0, 0] = width * (0.5 + torch.rand(batch, dtype=dtype))
    K[:, 1, 1] = height * (0.5 + torch.rand(batch, dtype=dtype))
    K[:, 0, 2] = width * (0.3 + 0.4 * torch.rand(batch, dtype=dtype))
    K[:, 1, 2] = height * (0.3 + 0.4 * torch.rand(batch, dtype=dtype))
    K[:, 2, 2] = 1.0
    return K


def _eye_poses(batch: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.eye(4, dtype=dtype).expand(batch, 4, 4).clone()


def _translation(tx: float, ty: float, tz: float, batch: int = 1) -> torch.Tensor:
    T = _eye_poses(batch)
    T[:, :3, 3] = torch.tensor([tx, ty, tz])
    return T


# ----------------------------------------------------------------------------------------------------------------
# analytic scene: a tilted plane with a smooth procedural texture, rendered by ray-plane intersection
# ----------------------------------------------------------------------------------------------------------------

_PLANE_POINT = torch.tensor([0.0, 0.0, 5.0], dtype=torch.float64)
_PLANE_NORMAL = torch.nn.functional.normalize(torch.tensor([0.3, -0.2, 1.0], dtype=torch.float64), dim=0)


def _plane_basis() -> tuple[torch.Tensor, torch.Tensor]:
    up = torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64)
    e1 = torch.nn.functional.normalize(torch.linalg.cross(_PLANE_NORMAL, up), dim=0)
    e2 = torch.linalg.cross(_PLANE_NORMAL, e1)
    return e1, e2


def _texture(X_tgt: torch.Tensor) -> torch.Tensor:
    """RGB texture (3, H, W) of target-frame plane points X_tgt (3, H, W); wavelengths of 10-20 pixels."""
    e1, e2 = _plane_basis()
    d = X_tgt - _PLANE_POINT[:, None, None]
    a = (d * e1[:, None, None]).sum(0)
    b = (d * e2[:, None, None]).sum(0)
    channels = [
        0.5
        + 0.2 * torch.sin(2.0 * a + 0.3 * c)
        + 0.15 * torch.cos(2.5 * b + 0.7 * c)
        + 0.1 * torch.sin(3.0 * (a + b) + c)
        for c in range(3)
    ]
    return torch.stack(channels, dim=0)


def _render(
    K: torch.Tensor, R: torch.Tensor, t: torch.Tensor, height: int, width: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Render the plane from a camera with T_cam_tgt = [R | t]; returns image (3,H,W) and depth z (1,H,W)."""
    v, u = torch.meshgrid(
        torch.arange(height, dtype=torch.float64), torch.arange(width, dtype=torch.float64), indexing="ij"
    )
    pix = torch.stack([u, v, torch.ones_like(u)], dim=0).reshape(3, -1)
    rays = torch.linalg.inv(K) @ pix  # z = 1
    n_cam = R @ _PLANE_NORMAL
    d_cam = _PLANE_NORMAL @ _PLANE_POINT + n_cam @ t  # plane n_cam . X = d_cam in this camera
    lam = d_cam / (n_cam @ rays)
    X_cam = rays * lam
    X_tgt = R.T @ (X_cam - t[:, None])
    image = _texture(X_tgt.reshape(3, height, width))
    return image, X_cam[2].reshape(1, height, width)


class TestPixelGrid:
    def test_values_and_cache(self) -> None:
        grid = pixel_grid(3, 4)
        assert grid.shape == (1, 3, 3, 4) and grid.dtype == torch.float32
        torch.testing.assert_close(grid[0, 0, 2], torch.tensor([0.0, 1.0, 2.0, 3.0]))
        torch.testing.assert_close(grid[0, 1, :, 3], torch.tensor([0.0, 1.0, 2.0]))
        torch.testing.assert_close(grid[0, 2], torch.ones(3, 4))
        assert pixel_grid(3, 4, device="cpu", dtype=torch.float32) is grid
        grid64 = pixel_grid(3, 4, dtype=torch.float64)
        assert grid64.dtype == torch.float64 and grid64 is not grid

    def test_grid_created_in_inference_mode_is_usable_with_autograd(self) -> None:
        with torch.inference_mode():
            pixel_grid(7, 11, dtype=torch.float64)
        inv_K = invert_intrinsics(_random_K(1, 7, 11, torch.float64)).requires_grad_(True)
        depth = torch.rand(1, 1, 7, 11, dtype=torch.float64) + 1.0
        backproject(depth, inv_K).sum().backward()
        assert inv_K.grad is not None and torch.isfinite(inv_K.grad).all()


class TestBackprojectProject:
    def test_backproject_vs_kornia(self) -> None:
        B, H, W = 3, 6, 8
        K = _random_K(B, H, W)
        depth = torch.rand(B, 1, H, W) * 10 + 0.5
        points = backproject(depth, invert_intrinsics(K))
        assert points.shape == (B, 3, H, W)
        expected = kornia_depth_to_3d_v2(depth[:, 0], K).permute(0, 3, 1, 2)
        torch.testing.assert_close(points, expected, rtol=1e-5, atol=1e-5)

    def test_project_vs_kornia(self) -> None:
        B, H, W = 2, 5, 7
        K = _random_K(B, H, W)
        points = torch.randn(B, 3, H, W)
        points[:, 2] = points[:, 2].abs() + 0.5
        pixels, z = project(points, K)
        assert pixels.shape == (B, H, W, 2) and z.shape == (B, 1, H, W)
        expected = kornia_project_points(points.permute(0, 2, 3, 1), K[:, None, None].expand(B, H, W, 3, 3))
        torch.testing.assert_close(pixels, expected, rtol=1e-5, atol=1e-4)
        torch.testing.assert_close(z, points[:, 2:3])

    @pytest.mark.parametrize("batch", [1, 3])
    @pytest.mark.parametrize("homogeneous", [False, True])
    def test_round_trip_identity(self, batch: int, homogeneous: bool) -> None:
        H, W = 5, 9
        K = _random_K(batch, H, W)
        inv_K = invert_intrinsics(K)
        if homogeneous:
            K, inv_K = to_homogeneous_intrinsics(K), to_homogeneous_intrinsics(inv_K)
        depth = torch.rand(batch, 1, H, W) * 50 + 0.1
        pixels, z = project(backproject(depth, inv_K), K)
        expected = pixel_grid(H, W)[0, :2].permute(1, 2, 0).expand(batch, H, W, 2)
        torch.testing.assert_close(pixels, expected, rtol=0, atol=1e-4)
        torch.testing.assert_close(z, depth, rtol=1e-6, atol=0)

    def test_unbatched_K_is_expanded(self) -> None:
        K = _random_K(1, 4, 6)
        depth = torch.rand(3, 1, 4, 6) + 1.0
        a = backproject(depth, invert_intrinsics(K[0]))
        b = backproject(depth, invert_intrinsics(K).expand(3, 3, 3))
        torch.testing.assert_close(a, b)

    def test_transform_points(self) -> None:
        B, H, W = 2, 3, 4
        aa, t = 0.3 * torch.randn(B, 3), torch.randn(B, 3)
        T = pose_from_axis_angle_translation(aa, t)
        points = torch.randn(B, 3, H, W)
        out = transform_points(T, points)
        expected = torch.einsum("bij,bjhw->bihw", axis_angle_to_matrix(aa), points) + t[:, :, None, None]
        torch.testing.assert_close(out, expected)

    def test_points_behind_camera_project_finitely(self) -> None:
        points = torch.tensor([0.5, -0.3, -2.0]).reshape(1, 3, 1, 1).repeat(1, 1, 2, 2)
        points[0, 2, 0, 0] = 0.0
        pixels, z = project(points, _random_K(1, 2, 2))
        assert torch.isfinite(pixels).all()
        assert (z <= 0).all()

    def test_module_twins_any_batch(self) -> None:
        bp, pr = BackprojectDepth(), Project3D()
        for batch in (1, 3, 2):
            K = _random_K(batch, 4, 5)
            depth = torch.rand(batch, 1, 4, 5) + 1.0
            points = bp(depth, invert_intrinsics(K))
            torch.testing.assert_close(points, backproject(depth, invert_intrinsics(K)))
            pixels, z = pr(points, K)
            torch.testing.assert_close(pixels, project(points, K)[0])

    def test_bad_shapes(self) -> None:
        K = _random_K(2, 4, 5)
        with pytest.raises(ValueError, match=r"depth.*\(2, 4, 5\)"):
            backproject(torch.rand(2, 4, 5), K)
        with pytest.raises(ValueError, match=r"inv_K.*\(3, 3, 3\)"):
            backproject(torch.rand(2, 1, 4, 5), _random_K(3, 4, 5))
        with pytest.raises(ValueError, match=r"K.*\(2, 3, 4\)"):
            project(torch.rand(2, 3, 4, 5), torch.rand(2, 3, 4))
        with pytest.raises(ValueError, match=r"points.*\(2, 4, 4, 5\)"):
            project(torch.rand(2, 4, 4, 5), K)
        with pytest.raises(ValueError, match=r"T.*\(2, 3, 4\)"):
            transform_points(torch.rand(2, 3, 4), torch.rand(2, 3, 4, 5))


class TestPixelsToGrid:
    def test_hand_values(self) -> None:
        H, W = 3, 5
        pix = torch.tensor([[0.0, 0.0], [W - 1.0, H - 1.0], [-0.5, -0.5], [W - 0.5, H - 0.5], [2.0, 1.0]])
        pix = pix.reshape(1, 1, 5, 2)
        grid_t = pixels_to_grid(pix, H, W, align_corners=True)[0, 0]
        torch.testing.assert_close(grid_t[0], torch.tensor([-1.0, -1.0]))
        torch.testing.assert_close(grid_t[1], torch.tensor([1.0, 1.0]))
        torch.testing.assert_close(grid_t[4], torch.tensor([0.0, 0.0]))
        grid_f = pixels_to_grid(pix, H, W, align_corners=False)[0, 0]
        torch.testing.assert_close(grid_f[2], torch.tensor([-1.0, -1.0]))
        torch.testing.assert_close(grid_f[3], torch.tensor([1.0, 1.0]))
        torch.testing.assert_close(grid_f[4], torch.tensor([0.0, 0.0]))
        torch.testing.assert_close(grid_f[0], torch.tensor([-1.0 + 1.0 / W, -1.0 + 1.0 / H]))

    def test_bad_shape(self) -> None:
        with pytest.raises(ValueError, match=r"pixels.*\(1, 4, 3\)"):
            pixels_to_grid(torch.rand(1, 4, 3), 4, 3)


class TestWarp:
    @pytest.mark.parametrize("align_corners", [True, False])
    def test_identity_pose_reproduces_source(self, align_corners: bool) -> None:
        B, C, H, W = 2, 3, 6, 8
        source = torch.rand(B, C, H, W)
        depth = torch.rand(B, 1, H, W) * 20 + 0.5
        K = _random_K(B, H, W)
        warped, mask = warp(source, depth, _eye_poses(B), K, align_corners=align_corners, return_mask=True)
        torch.testing.assert_close(warped, source, rtol=0, atol=2e-5)
        assert mask.shape == (B, 1, H, W) and (mask == 1).all()

    def test_mixed_conventions_do_not_reproduce_source(self) -> None:
        # The official code normalises with (W-1) (the align_corners=True convention) but grid_sample runs with
        # PyTorch's default align_corners=False: a sub-pixel misregistration even for the identity warp.
        B, C, H, W = 1, 3, 6, 8
        source = torch.rand(B, C, H, W)
        pixels = pixel_grid(H, W)[:, :2].permute(0, 2, 3, 1)
        consistent = F.grid_sample(
            source, pixels_to_grid(pixels, H, W, align_corners=True), padding_mode="border", align_corners=True
        )
        mixed = F.grid_sample(
            source, pixels_to_grid(pixels, H, W, align_corners=True), padding_mode="border", align_corners=False
        )
        torch.testing.assert_close(consistent, source, rtol=0, atol=1e-6)
        assert (mixed - source).abs().mean() > 0.05

    @pytest.mark.parametrize("align_corners", [True, False])
    def test_rendered_plane_true_pose_reproduces_target(self, align_corners: bool) -> None:
        H, W = 32, 48
        K = torch.tensor([[40.0, 0.0, 23.5], [0.0, 40.0, 15.5], [0.0, 0.0, 1.0]], dtype=torch.float64)
        aa = torch.tensor([0.02, -0.03, 0.01], dtype=torch.float64)
        t = torch.tensor([0.2, -0.1, 0.15], dtype=torch.float64)
        R = axis_angle_to_matrix(aa)
        target, depth = _render(K, torch.eye(3, dtype=torch.float64), torch.zeros(3, dtype=torch.float64), H, W)
        source, _ = _render(K, R, t, H, W)
        target, depth, source = target[None].float(), depth[None].float(), source[None].float()
        K32 = K.float()

        def error(T: torch.Tensor, align: bool = align_corners) -> float:
            warped, mask = warp(source, depth, T, K32, align_corners=align, return_mask=True)
            valid = mask[:, :, 3:-3, 3:-3].expand(-1, 3, -1, -1) > 0
            diff = (warped - target).abs()[:, :, 3:-3, 3:-3]
            assert valid.float().mean() > 0.9
            return diff[valid].mean().item()

        T_true = pose_from_axis_angle_translation(aa[None], t[None]).float()
        err_true = error(T_true)
        assert err_true < 4e-3  # bilinear interpolation error of the texture (see the convergence test)
        # the same scene with wrong poses: no motion, the inverse motion, a slightly perturbed translation
        T_inverse = pose_from_axis_angle_translation(aa[None], t[None], invert=True).float()
        T_perturbed = T_true.clone()
        T_perturbed[0, 0, 3] += 0.1  # 0.8 px at this depth
        assert error(_eye_poses(1)) > 10 * err_true
        assert error(T_inverse) > 10 * err_true
        assert error(T_perturbed) > 5 * err_true
        # and the mixed convention (grid for align_corners=True, sampled with False) is measurably worse
        if align_corners:
            pixels, _ = project(transform_points(T_true, backproject(depth, invert_intrinsics(K32))), K32)
            grid = pixels_to_grid(pixels, H, W, align_corners=True)
            mixed = F.grid_sample(source, grid, padding_mode="border", align_corners=False)
            err_mixed = (mixed - target).abs()[:, :, 3:-3, 3:-3].mean().item()
            assert err_mixed > 3 * err_true

    def test_rendered_plane_error_converges_with_resolution(self) -> None:
        # With exact geometry the only error left is bilinear interpolation, O(h^2): rendering the same views at
        # twice the resolution (pixel-centre-consistent K) must cut the error about 4x. A geometric bias (a
        # half-pixel shift, a wrong pose convention) would not shrink like this.
        aa = torch.tensor([0.02, -0.03, 0.01], dtype=torch.float64)
        t = torch.tensor([0.2, -0.1, 0.15], dtype=torch.float64)
        T = pose_from_axis_angle_translation(aa[None], t[None])
        errors = []
        for s in (1, 2):
            H, W = 32 * s, 48 * s
            c = (s - 1) / 2
            K = torch.tensor(
                [[40.0 * s, 0.0, 23.5 * s + c], [0.0, 40.0 * s, 15.5 * s + c], [0.0, 0.0, 1.0]], dtype=torch.float64
            )
            target, depth = _render(K, torch.eye(3, dtype=torch.float64), torch.zeros(3, dtype=torch.float64), H, W)
            source, _ = _render(K, axis_angle_to_matrix(aa), t, H, W)
            warped = warp(source[None], depth[None], T, K)
            assert warped.dtype == torch.float64
            errors.append((warped[0] - target)[:, 3 * s : -3 * s, 3 * s : -3 * s].abs().mean().item())
        assert errors[1] < errors[0] / 3.5

    def test_mask_point_behind_source_camera(self) -> None:
        H, W = 5, 5
        K = torch.tensor([[4.0, 0.0, 2.0], [0.0, 4.0, 2.0], [0.0, 0.0, 1.0]])
        depth = torch.full((1, 1, H, W), 10.0)
        depth[0, 0, 2, 2] = 1.0  # on the optical axis: z' = 1 - 2 < 0, yet its (clamped) projection is (cx, cy)
        source = torch.rand(1, 1, H, W)
        for align_corners in (True, False):
            T = _translation(0.0, 0.0, -2.0)
            _, mask = warp(source, depth, T, K, align_corners=align_corners, return_mask=True)
            assert mask[0, 0, 2, 2] == 0
            assert mask[0, 0, 2, 3] == 1 and mask[0, 0, 1, 2] == 1  # z' = 8, projecting near the centre

    @pytest.mark.parametrize(
        ("shift", "align_corners", "valid_columns"),
        [
            (2.5, True, [0, 1, 2]),  # u' = u + 2.5 <= W - 1 = 5
            (2.5, False, [0, 1, 2, 3]),  # u' <= W - 0.5 = 5.5
            (-2.5, True, [3, 4, 5]),  # u' >= 0
            (-2.5, False, [2, 3, 4, 5]),  # u' >= -0.5
        ],
    )
    def test_mask_projection_outside(self, shift: float, align_corners: bool, valid_columns: list[int]) -> None:
        H, W, fx = 4, 6, 5.0
        K = torch.tensor([[fx, 0.0, 2.5], [0.0, fx, 1.5], [0.0, 0.0, 1.0]])
        depth = torch.ones(1, 1, H, W)
        T = _translation(shift / fx, 0.0, 0.0)
        _, mask = warp(torch.rand(1, 2, H, W), depth, T, K, align_corners=align_corners, return_mask=True)
        expected = torch.zeros(1, 1, H, W)
        expected[..., valid_columns] = 1.0
        torch.testing.assert_close(mask, expected)

    def test_padding_mode_is_used(self) -> None:
        H, W, fx = 3, 6, 5.0
        K = torch.tensor([[fx, 0.0, 2.5], [0.0, fx, 1.0], [0.0, 0.0, 1.0]])
        source = torch.rand(1, 1, H, W) + 1.0
        T = _translation(3.0 / fx, 0.0, 0.0)  # u' = u + 3: columns 3..5 land at 6..8, fully outside
        border = warp(source, torch.ones(1, 1, H, W), T, K, padding_mode="border")
        zeros = warp(source, torch.ones(1, 1, H, W), T, K, padding_mode="zeros")
        torch.testing.assert_close(border[..., 3:], source[..., -1:].expand(-1, -1, -1, 3))
        torch.testing.assert_close(zeros[..., 3:], torch.zeros(1, 1, H, 3))
        torch.testing.assert_close(border[..., :3], source[..., 3:])
        with pytest.raises(ValueError, match="padding_mode"):
            warp(source, torch.ones(1, 1, H, W), T, K, padding_mode="edge")

    @pytest.mark.parametrize("align_corners", [True, False])
    def test_gradcheck(self, align_corners: bool) -> None:
        H, W = 4, 5
        K = torch.tensor([[4.0, 0.0, 2.1], [0.0, 4.0, 1.4], [0.0, 0.0, 1.0]], dtype=torch.float64)
        source = torch.rand(1, 2, H, W, dtype=torch.float64, requires_grad=True)
        depth = (torch.rand(1, 1, H, W, dtype=torch.float64) * 2 + 2).requires_grad_(True)
        aa = (0.05 * torch.randn(1, 3, dtype=torch.float64)).requires_grad_(True)
        t = (0.1 * torch.randn(1, 3, dtype=torch.float64)).requires_grad_(True)

        def fn(src: torch.Tensor, d: torch.Tensor, a: torch.Tensor, tr: torch.Tensor) -> torch.Tensor:
            return warp(src, d, pose_from_axis_angle_translation(a, tr), K, align_corners=align_corners)

        assert torch.autograd.gradcheck(fn, (source, depth, aa, t), eps=1e-6, atol=1e-6)

    def test_autocast_bfloat16(self) -> None:
        B, C, H, W = 2, 3, 12, 16
        K = _random_K(B, H, W)
        source = torch.rand(B, C, H, W)
        depth = torch.rand(B, 1, H, W) * 10 + 1
        T = pose_from_axis_angle_translation(0.02 * torch.randn(B, 3), 0.1 * torch.randn(B, 3))
        reference, ref_mask = warp(source, depth, T, K, return_mask=True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out32, mask = warp(source, depth, T, K, return_mask=True)
            out16 = warp(source.bfloat16(), depth.bfloat16(), T, K)
        assert out32.dtype == torch.float32 and torch.isfinite(out32).all()
        torch.testing.assert_close(out32, reference, rtol=0, atol=1e-6)  # geometry really ran in float32
        torch.testing.assert_close(mask, ref_mask)
        assert out16.dtype == torch.bfloat16 and torch.isfinite(out16).all()
        assert (out16.float() - reference).abs().max() < 0.1
        assert (out16.float() - reference).abs().mean() < 0.02

    def test_float64(self) -> None:
        K = _random_K(1, 4, 5, torch.float64)
        source = torch.rand(1, 1, 4, 5, dtype=torch.float64)
        out = warp(source, torch.ones(1, 1, 4, 5, dtype=torch.float64), _eye_poses(1, torch.float64), K)
        torch.testing.assert_close(out, source)
        assert out.dtype == torch.float64

    def test_same_module_batch_sizes_and_inv_K(self) -> None:
        warper = Warper(align_corners=True, padding_mode="border")
        H, W = 6, 7
        for batch in (1, 3):
            K = _random_K(batch, H, W)
            source = torch.rand(batch, 2, H, W)
            depth = torch.rand(batch, 1, H, W) * 5 + 1
            T = pose_from_axis_angle_translation(0.05 * torch.randn(batch, 3), 0.2 * torch.randn(batch, 3))
            out, mask = warper(source, depth, T, K, return_mask=True)
            assert out.shape == (batch, 2, H, W) and mask.shape == (batch, 1, H, W)
            # per-sample results equal the batched ones; a given inv_K and a 4x4 K give the same result
            for i in range(batch):
                single = warp(source[i : i + 1], depth[i : i + 1], T[i : i + 1], K[i])
                torch.testing.assert_close(out[i : i + 1], single, rtol=0, atol=1e-6)
            K4 = to_homogeneous_intrinsics(K)
            inv_K4 = to_homogeneous_intrinsics(invert_intrinsics(K))
            torch.testing.assert_close(warper(source, depth, T, K4, inv_K4), out)

    def test_bad_inputs(self) -> None:
        B, H, W = 2, 4, 5
        source, depth, K, T = torch.rand(B, 3, H, W), torch.ones(B, 1, H, W), _random_K(B, H, W), _eye_poses(B)
        with pytest.raises(ValueError, match=r"depth.*\(2, 1, 4, 6\)"):
            warp(source, torch.ones(B, 1, H, W + 1), T, K)
        with pytest.raises(ValueError, match=r"K.*\(1, 3, 3\)"):
            warp(source, depth, T, K[:1])
        with pytest.raises(ValueError, match=r"T_src_tgt.*\(2, 3, 4\)"):
            warp(source, depth, T[:, :3], K)
        with pytest.raises(ValueError, match=r"source.*\(3, 4, 5\)"):
            warp(source[0], depth, T, K)
        with pytest.raises(ValueError, match="padding_mode"):
            Warper(padding_mode="nearest")


def test_scene_texture_is_smooth_enough() -> None:
    # guard for the rendered-plane test: the texture must vary by less than ~0.15 between neighbouring pixels
    # (so bilinear interpolation is accurate) yet have real contrast (so a wrong pose is visible)
    K = torch.tensor([[40.0, 0.0, 23.5], [0.0, 40.0, 15.5], [0.0, 0.0, 1.0]], dtype=torch.float64)
    image, depth = _render(K, torch.eye(3, dtype=torch.float64), torch.zeros(3, dtype=torch.float64), 32, 48)
    assert image.std() > 0.1
    assert image.diff(dim=-1).abs().max() < 0.15 and image.diff(dim=-2).abs().max() < 0.15
    assert math.isclose(depth[0, 15, 23].item(), 5.0, rel_tol=0.05)
