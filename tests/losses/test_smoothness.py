"""Tests of featdepth.losses.smoothness (edge-aware 1st + 2nd order smoothness, docs/method.md §2.4)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from kornia.losses import inverse_depth_smoothness_loss

from featdepth.losses import edge_aware_smoothness, gradient_x, gradient_y, smoothness_terms


def _grid(h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    ys, xs = torch.meshgrid(
        torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij"
    )
    return xs[None, None], ys[None, None]


class TestGradients:
    def test_forward_differences(self) -> None:
        t = torch.tensor([[1.0, 2.0, 4.0], [0.0, 5.0, 5.0]])[None, None]
        assert gradient_x(t).tolist() == [[[[1.0, 2.0], [5.0, 0.0]]]]
        assert gradient_y(t).tolist() == [[[[-1.0, 3.0, 1.0]]]]


class TestEdgeAwareSmoothness:
    @pytest.mark.parametrize("shape", [(2, 1, 5, 7), (1, 1, 2, 3)])
    def test_first_order_equals_kornia(self, shape: tuple[int, ...]) -> None:
        # Oracle: monodepth2's first-order term == kornia.losses.inverse_depth_smoothness_loss
        disp = torch.rand(shape, dtype=torch.float64)
        image = torch.rand(shape[0], 3, *shape[2:], dtype=torch.float64)
        ours = edge_aware_smoothness(disp, image, edge_scale=1.0, second_order=False, normalize=False)
        torch.testing.assert_close(ours, inverse_depth_smoothness_loss(disp, image), rtol=1e-14, atol=0)

    def test_first_order_term_of_terms_with_scale(self) -> None:
        disp, image = torch.rand(1, 1, 4, 6, dtype=torch.float64), torch.rand(1, 3, 4, 6, dtype=torch.float64)
        s1, s2 = smoothness_terms(disp, image, edge_scale=0.5, normalize=False)
        # exp(-0.5 |dI|) == exp(-|dI / 2|): kornia on a halved image gives the same first-order term
        torch.testing.assert_close(s1, inverse_depth_smoothness_loss(disp, image / 2), rtol=1e-14, atol=0)
        torch.testing.assert_close(edge_aware_smoothness(disp, image, normalize=False), s1 + s2)

    def test_constant_disp_is_zero(self) -> None:
        disp = torch.full((2, 1, 6, 8), 0.3)
        image = torch.rand(2, 3, 12, 16)
        assert edge_aware_smoothness(disp, image) == 0
        s1, s2 = smoothness_terms(disp, image)
        assert s1 == 0 and s2 == 0

    def test_edge_awareness(self) -> None:
        # image edge between columns 3 and 4; the same disparity step at the edge costs less than
        # in the flat left half of the image
        image = torch.zeros(1, 3, 6, 8, dtype=torch.float64)
        image[..., 4:] = 1.0
        aligned = torch.full((1, 1, 6, 8), 0.2, dtype=torch.float64)
        aligned[..., 4:] = 0.6
        misaligned = torch.full((1, 1, 6, 8), 0.2, dtype=torch.float64)
        misaligned[..., 2:] = 0.6
        for second_order in (False, True):
            a = edge_aware_smoothness(aligned, image, second_order=second_order, normalize=False)
            m = edge_aware_smoothness(misaligned, image, second_order=second_order, normalize=False)
            assert a < m
        # first order by hand: one step of 0.4 in each of 6 rows among 6 * 7 x-differences
        s1, _ = smoothness_terms(aligned, image, normalize=False)
        torch.testing.assert_close(s1, torch.tensor(6 * 0.4 * math.exp(-0.5) / 42, dtype=torch.float64))
        s1, _ = smoothness_terms(misaligned, image, normalize=False)
        torch.testing.assert_close(s1, torch.tensor(6 * 0.4 / 42, dtype=torch.float64))

    def test_second_order_linear_vs_quadratic(self) -> None:
        xs, ys = _grid(6, 7)
        image = torch.full((1, 3, 6, 7), 0.5, dtype=torch.float64)
        ramp = 0.1 + 0.05 * xs + 0.02 * ys
        s1, s2 = smoothness_terms(ramp, image, normalize=False)
        torch.testing.assert_close(s1, torch.tensor(0.07, dtype=torch.float64))
        assert s2.abs() < 1e-12
        quad = 0.01 * xs**2
        s1, s2 = smoothness_terms(quad, image, normalize=False)
        # only d_xx is non-zero: constant 0.02 on its (6, 5) support, mean 0.02
        torch.testing.assert_close(s2, torch.tensor(0.02, dtype=torch.float64))

    def test_second_order_uses_signed_image_derivatives(self) -> None:
        # image = |x - 3| / 10 (a V): |d_x I| is constant 0.1 but the signed d_xx I is 0.2 at the kink,
        # so the d_xx weight there is exp(-0.5 * 0.2); differencing |d_x I| instead would give 1.
        xs, _ = _grid(3, 7)
        image = (xs - 3).abs().expand(1, 3, 3, 7).contiguous() / 10
        disp = 0.01 * xs**2  # d_xx = 0.02 everywhere (5 columns)
        _, s2 = smoothness_terms(disp, image, normalize=False)
        weights = [1.0, 1.0, math.exp(-0.5 * 0.2), 1.0, 1.0]
        torch.testing.assert_close(s2, torch.tensor(0.02 * sum(weights) / 5, dtype=torch.float64))

    def test_mean_normalisation_scale_invariance(self) -> None:
        disp = torch.rand(2, 1, 5, 6, dtype=torch.float64) + 0.1
        image = torch.rand(2, 3, 5, 6, dtype=torch.float64)
        base = edge_aware_smoothness(disp, image)
        torch.testing.assert_close(edge_aware_smoothness(3.7 * disp, image), base, rtol=1e-6, atol=0)
        # without normalisation the loss is linear in the scale
        raw = edge_aware_smoothness(disp, image, normalize=False)
        torch.testing.assert_close(edge_aware_smoothness(3.7 * disp, image, normalize=False), 3.7 * raw)
        # normalised == unnormalised on d / (mean d + 1e-7)
        manual = disp / (disp.mean(dim=(2, 3), keepdim=True) + 1e-7)
        torch.testing.assert_close(base, edge_aware_smoothness(manual, image, normalize=False))

    def test_image_area_downsampled(self) -> None:
        disp = torch.rand(1, 1, 4, 5, dtype=torch.float64)
        image = torch.rand(1, 3, 8, 10, dtype=torch.float64)
        small = F.avg_pool2d(image, 2)  # "area" to an exact half size is 2x2 averaging
        torch.testing.assert_close(edge_aware_smoothness(disp, image), edge_aware_smoothness(disp, small))

    def test_gradcheck(self) -> None:
        disp = (torch.rand(1, 1, 4, 4, dtype=torch.float64) + 0.1).requires_grad_()
        image = torch.rand(1, 3, 4, 4, dtype=torch.float64)
        assert torch.autograd.gradcheck(lambda d: edge_aware_smoothness(d, image), (disp,))

    def test_bad_inputs_raise(self) -> None:
        with pytest.raises(ValueError, match=r"disp must have shape \(B, 1, h, w\), got \(1, 2, 4, 4\)"):
            edge_aware_smoothness(torch.rand(1, 2, 4, 4), torch.rand(1, 3, 4, 4))
        with pytest.raises(ValueError, match="disp must have shape"):
            smoothness_terms(torch.rand(4, 4), torch.rand(1, 3, 4, 4))
        with pytest.raises(ValueError, match="image must have shape"):
            edge_aware_smoothness(torch.rand(1, 1, 4, 4), torch.rand(3, 4, 4))
        with pytest.raises(ValueError, match="same batch size"):
            edge_aware_smoothness(torch.rand(2, 1, 4, 4), torch.rand(1, 3, 4, 4))

    def test_tiny_maps_are_finite(self) -> None:
        out = edge_aware_smoothness(torch.rand(1, 1, 2, 2), torch.rand(1, 3, 8, 8))
        assert torch.isfinite(out)

    def test_bf16_autocast(self) -> None:
        disp, image = torch.rand(2, 1, 6, 8) + 0.1, torch.rand(2, 3, 12, 16)
        ref = edge_aware_smoothness(disp, image)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = edge_aware_smoothness(disp.bfloat16(), image.bfloat16())
        assert out.dtype == torch.float32 and torch.isfinite(out)
        torch.testing.assert_close(out, ref, rtol=3e-2, atol=0)
