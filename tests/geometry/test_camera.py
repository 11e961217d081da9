"""Tests of featdepth.geometry.camera (intrinsics conversions)."""

from __future__ import annotations

import pytest
import torch

from featdepth.geometry import (
    from_homogeneous_intrinsics,
    intrinsics_for_stride,
    intrinsics_from_normalized,
    invert_intrinsics,
    normalize_intrinsics,
    resize_intrinsics,
    scale_intrinsics,
    to_homogeneous_intrinsics,
)

KITTI_NORM = (0.58, 1.92, 0.5, 0.5)


def _random_K(batch: int, dtype: torch.dtype = torch.float64, skew: bool = False) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    K = torch.zeros(batch, 3, 3, dtype=dtype)
    K[:, 0, 0] = 100 + 500 * torch.rand(batch, generator=g, dtype=dtype)
    K[:, 1, 1] = 100 + 500 * torch.rand(batch, generator=g, dtype=dtype)
    K[:, 0, 2] = 50 + 300 * torch.rand(batch, generator=g, dtype=dtype)
    K[:, 1, 2] = 20 + 100 * torch.rand(batch, generator=g, dtype=dtype)
    K[:, 2, 2] = 1.0
    if skew:
        K[:, 0, 1] = torch.randn(batch, generator=g, dtype=dtype)
    return K


class TestNormalized:
    def test_kitti_values(self) -> None:
        K = intrinsics_from_normalized(list(KITTI_NORM), 320, 1024)
        assert K.shape == (3, 3)
        assert K.dtype == torch.float32
        expected = torch.tensor([[593.92, 0.0, 512.0], [0.0, 614.4, 160.0], [0.0, 0.0, 1.0]])
        torch.testing.assert_close(K, expected, rtol=0, atol=1e-4)

    def test_tensor_batched_keeps_dtype(self) -> None:
        norm = torch.tensor([KITTI_NORM, (0.5, 0.6, 0.45, 0.55)], dtype=torch.float64)
        K = intrinsics_from_normalized(norm, 192, 640)
        assert K.shape == (2, 3, 3) and K.dtype == torch.float64
        assert K[1, 0, 0].item() == pytest.approx(0.5 * 640)
        assert K[1, 1, 2].item() == pytest.approx(0.55 * 192)

    def test_round_trip(self) -> None:
        norm = torch.rand(2, 3, 4, dtype=torch.float64) + 0.1
        K = intrinsics_from_normalized(norm, 37, 91)
        assert K.shape == (2, 3, 3, 3)
        torch.testing.assert_close(normalize_intrinsics(K, 37, 91), norm)
        # and the other way round, starting from pixel intrinsics (also in 4x4 form)
        K0 = _random_K(4)
        back = intrinsics_from_normalized(normalize_intrinsics(to_homogeneous_intrinsics(K0), 120, 400), 120, 400)
        torch.testing.assert_close(back, K0)

    def test_bad_shapes(self) -> None:
        with pytest.raises(ValueError, match=r"\(2, 3\)"):
            intrinsics_from_normalized(torch.rand(2, 3), 10, 10)
        with pytest.raises(ValueError, match="4 values"):
            intrinsics_from_normalized([0.5, 0.5, 0.5], 10, 10)
        with pytest.raises(ValueError, match="height"):
            intrinsics_from_normalized(list(KITTI_NORM), 0, 10)
        with pytest.raises(ValueError, match=r"\(3, 4\)"):
            normalize_intrinsics(torch.rand(3, 4), 10, 10)


class TestScaling:
    def test_scale_rows(self) -> None:
        K = torch.tensor([[500.0, 2.0, 300.0], [0.0, 400.0, 100.0], [0.0, 0.0, 1.0]])
        K2 = scale_intrinsics(K, 0.5, 0.25)
        expected = torch.tensor([[250.0, 1.0, 150.0], [0.0, 100.0, 25.0], [0.0, 0.0, 1.0]])
        torch.testing.assert_close(K2, expected)
        assert K[0, 0].item() == 500.0  # input untouched

    def test_scale_homogeneous(self) -> None:
        K4 = to_homogeneous_intrinsics(_random_K(3))
        out = scale_intrinsics(K4, 2.0, 3.0)
        assert out.shape == (3, 4, 4)
        torch.testing.assert_close(out[:, 0], 2.0 * K4[:, 0])
        torch.testing.assert_close(out[:, 1], 3.0 * K4[:, 1])
        torch.testing.assert_close(out[:, 2:], K4[:, 2:])

    def test_stride_two_matches_half_size_denormalisation(self) -> None:
        K = intrinsics_from_normalized(list(KITTI_NORM), 320, 1024)
        K_half = intrinsics_for_stride(K, 2)
        expected = torch.tensor([[296.96, 0.0, 256.0], [0.0, 307.2, 80.0], [0.0, 0.0, 1.0]])
        torch.testing.assert_close(K_half, expected, rtol=0, atol=1e-4)
        # independent route: denormalise at (H/2, W/2)
        torch.testing.assert_close(K_half, intrinsics_from_normalized(list(KITTI_NORM), 160, 512))

    def test_resize(self) -> None:
        K = intrinsics_from_normalized(list(KITTI_NORM), 320, 1024)
        K_small = resize_intrinsics(K, (320, 1024), (192, 640))
        torch.testing.assert_close(K_small, intrinsics_from_normalized(list(KITTI_NORM), 192, 640))

    def test_bad_arguments(self) -> None:
        with pytest.raises(ValueError, match="stride"):
            intrinsics_for_stride(torch.eye(3), 0)
        with pytest.raises(ValueError, match=r"\(2, 2\)"):
            scale_intrinsics(torch.eye(2), 2.0, 2.0)
        with pytest.raises(ValueError, match="new_size"):
            resize_intrinsics(torch.eye(3), (10, 10), (10,))


class TestHomogeneousAndInverse:
    def test_homogeneous_round_trip(self) -> None:
        K = _random_K(2)
        K4 = to_homogeneous_intrinsics(K)
        assert K4.shape == (2, 4, 4)
        torch.testing.assert_close(K4[:, 3], torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=K.dtype).expand(2, 4))
        torch.testing.assert_close(K4[:, :3, 3], torch.zeros(2, 3, dtype=K.dtype))
        torch.testing.assert_close(from_homogeneous_intrinsics(K4), K)
        with pytest.raises(ValueError, match=r"\(4, 4\)"):
            to_homogeneous_intrinsics(torch.eye(4))
        with pytest.raises(ValueError, match=r"\(3, 3\)"):
            from_homogeneous_intrinsics(torch.eye(3))

    def test_inverse_3x3_vs_linalg(self) -> None:
        K = _random_K(5, skew=True)
        inv = invert_intrinsics(K)
        torch.testing.assert_close(inv, torch.linalg.inv(K), rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(K @ inv, torch.eye(3, dtype=K.dtype).expand(5, 3, 3), rtol=0, atol=1e-12)

    def test_inverse_4x4_vs_linalg(self) -> None:
        K4 = to_homogeneous_intrinsics(_random_K(4, skew=True))
        K4[:, :3, 3] = torch.randn(4, 3, dtype=K4.dtype)  # a projection-style translation column
        inv = invert_intrinsics(K4)
        assert inv.shape == (4, 4, 4)
        torch.testing.assert_close(inv, torch.linalg.inv(K4), rtol=1e-10, atol=1e-12)

    def test_inverse_unbatched_float32(self) -> None:
        K = intrinsics_from_normalized(list(KITTI_NORM), 320, 1024)
        inv = invert_intrinsics(K)
        assert inv.shape == (3, 3) and inv.dtype == torch.float32
        torch.testing.assert_close(inv, torch.linalg.inv(K))

    def test_inverse_bad_shape(self) -> None:
        with pytest.raises(ValueError, match=r"\(2, 3, 4\)"):
            invert_intrinsics(torch.rand(2, 3, 4))
        with pytest.raises(ValueError, match=r"\(3,\)"):
            invert_intrinsics(torch.rand(3))
