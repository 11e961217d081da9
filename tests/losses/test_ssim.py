"""Tests of featdepth.losses.ssim (3x3 box-window SSIM, docs/method.md §2.1)."""

from __future__ import annotations

import pytest
import torch
from torchmetrics.functional.image import structural_similarity_index_measure as tm_ssim

from featdepth.losses import SSIM, ssim_dissimilarity, ssim_map
from featdepth.losses.ssim import SSIMTarget, ssim_target


def _oracle(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    # torchmetrics pads by (kernel_size - 1) // 2 = 1 with mode="reflect", runs a valid 3x3 box
    # convolution and returns the full (B, C, H, W) map, i.e. the same geometry as ours with no
    # cropping. It clamps the variances at 0, which only matters at round-off level.
    _, full = tm_ssim(x, y, gaussian_kernel=False, kernel_size=3, data_range=1.0, return_full_image=True)
    return full


class TestSSIMMap:
    def test_smoke_shape(self) -> None:
        x, y = torch.rand(2, 3, 5, 7), torch.rand(2, 3, 5, 7)
        assert ssim_map(x, y).shape == (2, 3, 5, 7)
        assert ssim_dissimilarity(x, y).shape == (2, 3, 5, 7)

    @pytest.mark.parametrize("shape", [(2, 3, 8, 9), (1, 1, 2, 2), (1, 2, 3, 5)])
    def test_matches_torchmetrics_float64(self, shape: tuple[int, ...]) -> None:
        x = torch.rand(shape, dtype=torch.float64)
        y_random = torch.rand(shape, dtype=torch.float64)
        y_correlated = (x + 0.05 * torch.randn(shape, dtype=torch.float64)).clamp(0, 1)
        for y in (y_random, y_correlated):
            ours = ssim_map(x, y)
            assert ours.dtype == torch.float64
            torch.testing.assert_close(ours, _oracle(x, y), rtol=0, atol=1e-8)

    def test_identical_images(self) -> None:
        x = torch.rand(2, 3, 6, 6, dtype=torch.float64)
        torch.testing.assert_close(ssim_map(x, x), torch.ones_like(x), rtol=0, atol=1e-12)
        assert torch.all(ssim_dissimilarity(x, x) == 0)

    def test_constant_images_by_hand(self) -> None:
        # Constant images: mu = a, b and all (co)variances 0, so SSIM = (2ab + C1) / (a^2 + b^2 + C1).
        a, b = 0.2, 0.5
        x = torch.full((1, 1, 4, 4), a, dtype=torch.float64)
        y = torch.full((1, 1, 4, 4), b, dtype=torch.float64)
        expected = (2 * a * b + 1e-4) / (a * a + b * b + 1e-4)
        torch.testing.assert_close(ssim_map(x, y), torch.full_like(x, expected), rtol=0, atol=1e-12)
        torch.testing.assert_close(
            ssim_dissimilarity(x, y), torch.full_like(x, (1 - expected) / 2), rtol=0, atol=1e-12
        )

    def test_dissimilarity_range(self) -> None:
        x, y = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8)
        d = ssim_dissimilarity(x, y)
        assert d.min() >= 0 and d.max() <= 1
        d_opposite = ssim_dissimilarity(x, 1 - x)  # anti-correlated: SSIM < 0, still clamped range
        assert d_opposite.min() >= 0 and d_opposite.max() <= 1 and d_opposite.mean() > 0.5

    def test_module_twin(self) -> None:
        x, y = torch.rand(1, 3, 5, 5), torch.rand(1, 3, 5, 5)
        torch.testing.assert_close(SSIM()(x, y), ssim_dissimilarity(x, y))
        assert "c1=" in repr(SSIM())

    def test_gradcheck(self) -> None:
        x = torch.rand(1, 1, 3, 4, dtype=torch.float64, requires_grad=True)
        y = torch.rand(1, 1, 3, 4, dtype=torch.float64)
        assert torch.autograd.gradcheck(lambda a: ssim_map(a, y), (x,))

    def test_gradcheck_both_inputs_and_double_backward(self) -> None:
        # the box filter has a hand-written backward: check it (and its own derivative) numerically
        x = torch.rand(2, 2, 4, 5, dtype=torch.float64, requires_grad=True)
        y = torch.rand(2, 2, 4, 5, dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradcheck(ssim_map, (x, y))
        assert torch.autograd.gradgradcheck(ssim_map, (x, y))

    def test_stack_and_precomputed_target_match_oracle(self) -> None:
        # a stack (S, B, C, H, W) against one target, and a reused SSIMTarget, give per-image oracle values
        y = torch.rand(2, 3, 6, 7, dtype=torch.float64)
        xs = torch.rand(3, 2, 3, 6, 7, dtype=torch.float64)
        stats = ssim_target(y)
        assert isinstance(stats, SSIMTarget)
        stacked = ssim_map(xs, stats)
        assert stacked.shape == xs.shape
        for k in range(3):
            torch.testing.assert_close(stacked[k], _oracle(xs[k], y), rtol=0, atol=1e-8)
            torch.testing.assert_close(ssim_map(xs[k], stats), _oracle(xs[k], y), rtol=0, atol=1e-8)
        torch.testing.assert_close(ssim_map(xs, y), stacked, rtol=0, atol=0)

    def test_precomputed_target_shape_mismatch_raises(self) -> None:
        with pytest.raises(ValueError, match="same shape"):
            ssim_map(torch.rand(1, 3, 4, 4), ssim_target(torch.rand(1, 3, 4, 5)))

    @pytest.mark.parametrize(
        ("x_shape", "y_shape", "match"),
        [
            ((3, 4, 4), (3, 4, 4), "x must have shape"),
            ((1, 3, 4, 4), (1, 3, 4, 5), r"same shape.*\(1, 3, 4, 4\).*\(1, 3, 4, 5\)"),
            ((1, 3, 1, 4), (1, 3, 1, 4), "H >= 2"),
        ],
    )
    def test_bad_shapes_raise(self, x_shape: tuple[int, ...], y_shape: tuple[int, ...], match: str) -> None:
        with pytest.raises(ValueError, match=match):
            ssim_map(torch.rand(x_shape), torch.rand(y_shape))

    def test_bf16_autocast(self) -> None:
        x, y = torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8)
        ref = ssim_dissimilarity(x, y)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = ssim_dissimilarity(x.bfloat16(), y.bfloat16())
        assert out.dtype == torch.float32
        assert torch.isfinite(out).all()
        torch.testing.assert_close(out, ref, rtol=0, atol=3e-2)
