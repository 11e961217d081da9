"""Tests of featdepth.geometry.pose (Rodrigues, pose assembly, inversion, composition)."""

from __future__ import annotations

import pytest
import torch
from kornia.geometry.conversions import axis_angle_to_rotation_matrix as kornia_axis_angle_to_matrix
from scipy.spatial.transform import Rotation

from featdepth.geometry import (
    axis_angle_to_matrix,
    compose_poses,
    invert_pose,
    matrix_to_axis_angle,
    pose_from_axis_angle_translation,
    relative_pose,
)

ANGLES = [1e-8, 1e-6, 1e-4, 1e-3, 1e-2, 0.1, 0.5, 1.0]


def _axis_angles(angles: list[float], dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """One random unit axis per angle, scaled by the angle: (N, 3)."""
    g = torch.Generator().manual_seed(3)
    axes = torch.randn(len(angles), 3, generator=g, dtype=torch.float64)
    axes = axes / axes.norm(dim=-1, keepdim=True)
    return (axes * torch.tensor(angles, dtype=torch.float64)[:, None]).to(dtype)


def _skew(w: torch.Tensor) -> torch.Tensor:
    x, y, z = w.tolist()
    return torch.tensor([[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]], dtype=w.dtype)


def _random_poses(batch: int) -> torch.Tensor:
    aa = torch.randn(batch, 3, dtype=torch.float64)
    t = torch.randn(batch, 3, dtype=torch.float64)
    return pose_from_axis_angle_translation(aa, t)


class TestAxisAngleToMatrix:
    def test_scipy_oracle_float64(self) -> None:
        aa = torch.cat([_axis_angles(ANGLES), _axis_angles([2.0, 3.0])])
        R = axis_angle_to_matrix(aa)
        expected = torch.from_numpy(Rotation.from_rotvec(aa.numpy()).as_matrix())
        torch.testing.assert_close(R, expected, rtol=0, atol=1e-14)

    def test_kornia_oracle_float32(self) -> None:
        aa = _axis_angles(ANGLES, torch.float32)
        R = axis_angle_to_matrix(aa)
        assert R.dtype == torch.float32
        torch.testing.assert_close(R, kornia_axis_angle_to_matrix(aa), rtol=0, atol=5e-7)

    def test_small_angles_not_biased(self) -> None:
        # off-diagonal entries carry the rotation: R - R^T = 2 sin(theta) [axis]_x; at 1e-6 rad the official
        # axis = v / (|v| + 1e-7) would shrink it by 10 %.
        aa = _axis_angles([1e-6], torch.float32)
        R = axis_angle_to_matrix(aa)[0]
        w = 0.5 * torch.stack([R[2, 1] - R[1, 2], R[0, 2] - R[2, 0], R[1, 0] - R[0, 1]])
        torch.testing.assert_close(w, aa[0], rtol=1e-5, atol=0)

    def test_orthonormal_det_one(self) -> None:
        aa = torch.cat([_axis_angles(ANGLES), 2.0 * torch.randn(16, 3, dtype=torch.float64)])
        R = axis_angle_to_matrix(aa)
        eye = torch.eye(3, dtype=R.dtype).expand_as(R)
        torch.testing.assert_close(R @ R.transpose(-1, -2), eye, rtol=0, atol=1e-13)
        torch.testing.assert_close(torch.linalg.det(R), torch.ones(R.shape[0], dtype=R.dtype), rtol=0, atol=1e-13)

    def test_zero_is_identity_and_shapes(self) -> None:
        R = axis_angle_to_matrix(torch.zeros(2, 5, 3))
        assert R.shape == (2, 5, 3, 3)
        torch.testing.assert_close(R, torch.eye(3).expand(2, 5, 3, 3))

    @pytest.mark.parametrize("angle", [0.0, 1e-6, 1e-3, 0.1, 1.0])
    def test_gradcheck(self, angle: float) -> None:
        aa = _axis_angles([angle] * 2) if angle > 0 else torch.zeros(2, 3, dtype=torch.float64)
        aa.requires_grad_(True)
        assert torch.autograd.gradcheck(axis_angle_to_matrix, (aa,), eps=1e-6, atol=1e-6)

    def test_gradient_at_zero_is_the_so3_generators(self) -> None:
        aa = torch.zeros(3, dtype=torch.float32, requires_grad=True)
        jac = torch.autograd.functional.jacobian(axis_angle_to_matrix, aa)  # (3, 3, 3): R_ij / v_k
        for k in range(3):
            e = torch.zeros(3)
            e[k] = 1.0
            torch.testing.assert_close(jac[..., k], _skew(e))

    def test_float32_gradients_match_float64(self) -> None:
        # float64 gradients are validated by gradcheck; float32 ones must be finite and agree from 1e-8 to 1 rad
        for aa64 in _axis_angles(ANGLES):
            aa32 = aa64.float()
            j32 = torch.autograd.functional.jacobian(axis_angle_to_matrix, aa32)
            j64 = torch.autograd.functional.jacobian(axis_angle_to_matrix, aa64)
            assert torch.isfinite(j32).all()
            torch.testing.assert_close(j32.double(), j64, rtol=0, atol=2e-6)

    def test_half_precision_input_upcast(self) -> None:
        aa = _axis_angles([0.3], torch.float32)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            R = axis_angle_to_matrix(aa.bfloat16())
        assert R.dtype == torch.float32
        torch.testing.assert_close(R, axis_angle_to_matrix(aa.bfloat16().float()))

    def test_bad_shape(self) -> None:
        with pytest.raises(ValueError, match=r"axis_angle.*\(4, 2\)"):
            axis_angle_to_matrix(torch.zeros(4, 2))


class TestMatrixToAxisAngle:
    def test_round_trip(self) -> None:
        aa = torch.cat([_axis_angles(ANGLES), _axis_angles([2.0, 3.0])])
        back = matrix_to_axis_angle(axis_angle_to_matrix(aa))
        torch.testing.assert_close(back, aa, rtol=1e-9, atol=1e-12)

    def test_scipy_oracle(self) -> None:
        rot = Rotation.random(8, random_state=4)
        R = torch.from_numpy(rot.as_matrix())
        torch.testing.assert_close(matrix_to_axis_angle(R), torch.from_numpy(rot.as_rotvec()), rtol=0, atol=1e-10)

    def test_identity(self) -> None:
        torch.testing.assert_close(matrix_to_axis_angle(torch.eye(4).expand(2, 4, 4)), torch.zeros(2, 3))

    def test_bad_shape(self) -> None:
        with pytest.raises(ValueError, match=r"\(3, 4\)"):
            matrix_to_axis_angle(torch.zeros(3, 4))


class TestPoses:
    def test_pose_maps_points_as_R_X_plus_t(self) -> None:
        aa = torch.randn(4, 3, dtype=torch.float64)
        t = torch.randn(4, 3, dtype=torch.float64)
        T = pose_from_axis_angle_translation(aa, t)
        assert T.shape == (4, 4, 4)
        X = torch.randn(4, 3, dtype=torch.float64)
        X_h = torch.cat([X, torch.ones(4, 1, dtype=X.dtype)], dim=-1)
        mapped = (T @ X_h[..., None])[..., 0]
        expected = torch.from_numpy(Rotation.from_rotvec(aa.numpy()).apply(X.numpy())) + t
        torch.testing.assert_close(mapped[:, :3], expected, rtol=0, atol=1e-12)
        torch.testing.assert_close(mapped[:, 3], torch.ones(4, dtype=X.dtype))

    def test_invert_flag_is_exact_inverse(self) -> None:
        aa = 0.01 * torch.randn(5, 3, dtype=torch.float64)  # PoseNet-sized outputs
        t = 0.01 * torch.randn(5, 3, dtype=torch.float64)
        T = pose_from_axis_angle_translation(aa, t, invert=False)
        T_inv = pose_from_axis_angle_translation(aa, t, invert=True)
        torch.testing.assert_close(T_inv, invert_pose(T), rtol=0, atol=1e-15)
        torch.testing.assert_close(T_inv, torch.linalg.inv(T), rtol=0, atol=1e-13)
        torch.testing.assert_close(T @ T_inv, torch.eye(4, dtype=T.dtype).expand(5, 4, 4), rtol=0, atol=1e-14)

    def test_invert_pose(self) -> None:
        T = _random_poses(6)
        T_inv = invert_pose(T)
        eye = torch.eye(4, dtype=T.dtype).expand(6, 4, 4)
        torch.testing.assert_close(T @ T_inv, eye, rtol=0, atol=1e-13)
        torch.testing.assert_close(T_inv @ T, eye, rtol=0, atol=1e-13)
        torch.testing.assert_close(T_inv, torch.linalg.inv(T), rtol=0, atol=1e-12)

    def test_compose_and_relative(self) -> None:
        T_world_tgt, T_world_src = _random_poses(3), _random_poses(3)
        T_src_tgt = relative_pose(T_world_tgt, T_world_src)
        # a target-camera point mapped through the world into the source camera
        X_tgt = torch.cat([torch.randn(3, 3, dtype=torch.float64), torch.ones(3, 1, dtype=torch.float64)], -1)
        X_world = (T_world_tgt @ X_tgt[..., None])[..., 0]
        X_src = torch.linalg.solve(T_world_src, X_world)
        torch.testing.assert_close((T_src_tgt @ X_tgt[..., None])[..., 0], X_src, rtol=0, atol=1e-12)
        # composing back gives the target pose; a pose relative to itself is the identity
        torch.testing.assert_close(compose_poses(T_world_src, T_src_tgt), T_world_tgt, rtol=0, atol=1e-12)
        eye = torch.eye(4, dtype=torch.float64).expand(3, 4, 4)
        torch.testing.assert_close(relative_pose(T_world_tgt, T_world_tgt), eye, rtol=0, atol=1e-13)
        # design.md: target i, source j -> inv(T_world_cam[j]) @ T_world_cam[i]
        torch.testing.assert_close(T_src_tgt, torch.linalg.inv(T_world_src) @ T_world_tgt, rtol=0, atol=1e-12)

    def test_compose_under_autocast_stays_float32(self) -> None:
        T_a_b = _random_poses(2).float()
        T_b_c = _random_poses(2).float()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            T_a_c = compose_poses(T_a_b, T_b_c)
        assert T_a_c.dtype == torch.float32
        torch.testing.assert_close(T_a_c, T_a_b @ T_b_c)

    def test_gradcheck_pose(self) -> None:
        aa = (0.05 * torch.randn(2, 3, dtype=torch.float64)).requires_grad_(True)
        t = torch.randn(2, 3, dtype=torch.float64).requires_grad_(True)
        for invert in (False, True):
            fn = lambda a, b: pose_from_axis_angle_translation(a, b, invert=invert)  # noqa: E731
            assert torch.autograd.gradcheck(fn, (aa, t), eps=1e-6, atol=1e-6)

    def test_bad_shapes(self) -> None:
        with pytest.raises(ValueError, match=r"translation.*\(2, 4\)"):
            pose_from_axis_angle_translation(torch.zeros(2, 3), torch.zeros(2, 4))
        with pytest.raises(ValueError, match=r"same shape"):
            pose_from_axis_angle_translation(torch.zeros(2, 3), torch.zeros(1, 3))
        with pytest.raises(ValueError, match=r"T.*\(3, 4\)"):
            invert_pose(torch.zeros(3, 4))
        with pytest.raises(ValueError, match=r"T_b_c.*\(2, 3, 3\)"):
            compose_poses(torch.eye(4).expand(2, 4, 4), torch.zeros(2, 3, 3))
