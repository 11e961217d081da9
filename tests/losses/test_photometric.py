"""Tests of featdepth.losses.photometric and featdepth.losses.feature_metric (docs/method.md §2.1-2.3)."""

from __future__ import annotations

import math

import pytest
import torch

from featdepth.losses import (
    MinReprojection,
    appearance_error,
    feature_metric_error,
    feature_metric_loss,
    min_reprojection,
    photometric_loss,
    robust_l1,
)


def _const(value: float, shape: tuple[int, ...] = (1, 3, 4, 4)) -> torch.Tensor:
    return torch.full(shape, value, dtype=torch.float64)


def _map(rows: list[list[float]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float64)[None, None]


class TestRobustL1:
    def test_hand_values(self) -> None:
        x = torch.tensor([0.5, 0.8, 0.2], dtype=torch.float64)
        y = torch.tensor([0.5, 0.5, 0.5], dtype=torch.float64)
        expected = torch.tensor([1e-3, math.sqrt(0.09 + 1e-6), math.sqrt(0.09 + 1e-6)], dtype=torch.float64)
        torch.testing.assert_close(robust_l1(x, y), expected, rtol=1e-12, atol=0)

    def test_eps(self) -> None:
        x = torch.zeros(3, dtype=torch.float64)
        torch.testing.assert_close(robust_l1(x, x, eps=0.1), torch.full_like(x, 0.1))

    def test_shape_mismatch_raises(self) -> None:
        with pytest.raises(ValueError, match=r"\(2,\).*\(3,\)"):
            robust_l1(torch.zeros(2), torch.zeros(3))


class TestAppearanceError:
    @pytest.mark.parametrize("robust", [True, False])
    def test_stack_against_one_target_equals_per_image(self, robust: bool) -> None:
        from featdepth.losses.ssim import ssim_target

        target = torch.rand(2, 3, 5, 6, dtype=torch.float64)
        preds = torch.rand(3, 2, 3, 5, 6, dtype=torch.float64)
        for tgt in (target, ssim_target(target)):
            stacked = appearance_error(preds, tgt, robust=robust)
            assert stacked.shape == (3, 2, 1, 5, 6)
            for k in range(3):
                torch.testing.assert_close(stacked[k], appearance_error(preds[k], target, robust=robust), rtol=0, atol=1e-12)

    def test_constant_images_by_hand(self) -> None:
        a, b = 0.2, 0.5
        ssim = (2 * a * b + 1e-4) / (a * a + b * b + 1e-4)  # variances are 0 for constant images
        ssim_d = (1 - ssim) / 2
        robust = math.sqrt((a - b) ** 2 + 1e-6)
        out = appearance_error(_const(a), _const(b))
        assert out.shape == (1, 1, 4, 4)
        torch.testing.assert_close(out, torch.full_like(out, 0.85 * ssim_d + 0.15 * robust), rtol=1e-12, atol=0)
        plain = appearance_error(_const(a), _const(b), robust=False)
        torch.testing.assert_close(plain, torch.full_like(out, 0.85 * ssim_d + 0.15 * abs(a - b)), rtol=1e-12, atol=0)
        l1_only = appearance_error(_const(a), _const(b), ssim_weight=0.0)
        torch.testing.assert_close(l1_only, torch.full_like(out, robust), rtol=1e-12, atol=0)

    def test_channel_mean(self) -> None:
        # per-channel constants: the error is the mean of the per-channel errors
        pred = torch.cat([_const(0.1, (1, 1, 3, 3)), _const(0.4, (1, 1, 3, 3))], dim=1)
        target = _const(0.4, (1, 2, 3, 3))
        e0 = appearance_error(pred[:, :1], target[:, :1])
        e1 = appearance_error(pred[:, 1:], target[:, 1:])
        torch.testing.assert_close(appearance_error(pred, target), (e0 + e1) / 2)

    def test_identical_is_charbonnier_floor(self) -> None:
        x = torch.rand(2, 3, 5, 6, dtype=torch.float64)
        torch.testing.assert_close(appearance_error(x, x), torch.full((2, 1, 5, 6), 0.15e-3, dtype=torch.float64))

    def test_bad_inputs_raise(self) -> None:
        with pytest.raises(ValueError, match="pred must have shape"):
            appearance_error(torch.rand(3, 4, 4), torch.rand(3, 4, 4))
        with pytest.raises(ValueError, match="same shape"):
            appearance_error(torch.rand(1, 3, 4, 4), torch.rand(1, 3, 4, 5))
        with pytest.raises(ValueError, match="ssim_weight"):
            appearance_error(torch.rand(1, 3, 4, 4), torch.rand(1, 3, 4, 4), ssim_weight=1.5)

    def test_bf16_autocast(self) -> None:
        x, y = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8)
        ref = appearance_error(x, y)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = appearance_error(x.bfloat16(), y.bfloat16())
        assert out.dtype == torch.float32 and torch.isfinite(out).all()
        torch.testing.assert_close(out, ref, rtol=0, atol=2e-2)


class TestMinReprojection:
    def test_hand_example_ties_and_order(self) -> None:
        identity = [_map([[0.5, 0.1, 0.3]])]
        warped = [_map([[0.2, 0.1, 0.4]]), _map([[0.3, 0.2, 0.3]])]
        out = min_reprojection(warped, identity, noise_std=0.0)
        assert isinstance(out, MinReprojection)
        # stack = [identity, warped0, warped1]; ties (columns 1 and 2) go to the identity (index 0)
        torch.testing.assert_close(out.loss_map, _map([[0.2, 0.1, 0.3]]))
        assert out.selection.dtype == torch.long
        assert out.selection.tolist() == [[[[1, 0, 0]]]]
        assert out.automask.dtype == torch.bool
        assert out.automask.tolist() == [[[[True, False, False]]]]

    def test_two_identity_errors_ordered_first(self) -> None:
        identity = [_map([[0.9, 0.9, 0.05]]), _map([[0.9, 0.01, 0.9]])]
        warped = [_map([[0.1, 0.5, 0.5]])]
        out = min_reprojection(warped, identity, noise_std=0.0)
        assert out.selection.tolist() == [[[[2, 1, 0]]]]
        assert out.automask.tolist() == [[[[True, False, False]]]]

    def test_without_identity_is_plain_min(self) -> None:
        errors = [torch.rand(2, 1, 4, 5) for _ in range(3)]
        out = min_reprojection(errors)
        values, indices = torch.cat(errors, 1).min(1, keepdim=True)
        torch.testing.assert_close(out.loss_map, values)
        assert torch.equal(out.selection, indices)
        assert out.automask.all()
        assert torch.equal(min_reprojection(errors, []).loss_map, out.loss_map)
        torch.testing.assert_close(photometric_loss(errors), values.mean())

    def test_noise_is_tiny_and_seeded(self) -> None:
        identity = [torch.rand(1, 1, 16, 16, dtype=torch.float64) + 1.0 for _ in range(2)]  # never win
        warped = [torch.rand(1, 1, 16, 16, dtype=torch.float64) for _ in range(2)]
        a = min_reprojection(warped, identity, generator=torch.Generator().manual_seed(3))
        b = min_reprojection(warped, identity, generator=torch.Generator().manual_seed(3))
        assert torch.equal(a.loss_map, b.loss_map)
        assert a.automask.all()
        # identity values move by N(0, 1e-5^2): where the identity wins, the shift is below 6 sigma
        identity_win = min_reprojection(warped, [w.clone() - 1e-3 for w in warped], generator=torch.Generator())
        assert not identity_win.automask.any()
        shift = identity_win.loss_map - (torch.cat(warped, 1).min(1, keepdim=True).values - 1e-3)
        assert shift.abs().max() < 6e-5 and shift.abs().max() > 0
        # noise std: the sample std of many noisy identity values is about 1e-5
        zeros = [torch.zeros(1, 1, 64, 64, dtype=torch.float64)]
        noisy = min_reprojection([torch.ones_like(zeros[0])], zeros, generator=torch.Generator().manual_seed(0))
        assert 0.8e-5 < noisy.loss_map.std() < 1.2e-5

    def test_noise_breaks_exact_ties(self) -> None:
        e = torch.full((1, 1, 32, 32), 0.3, dtype=torch.float64)
        out = min_reprojection([e], [e.clone()], generator=torch.Generator().manual_seed(1))
        # about half the pixels: noise pushed the identity below the tie
        assert 0.3 < out.automask.double().mean() < 0.7

    def test_photometric_loss_is_mean(self) -> None:
        identity = [torch.rand(2, 1, 4, 4)]
        warped = [torch.rand(2, 1, 4, 4), torch.rand(2, 1, 4, 4)]
        g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
        loss = photometric_loss(warped, identity, generator=g1)
        torch.testing.assert_close(loss, min_reprojection(warped, identity, generator=g2).loss_map.mean())

    def test_bad_inputs_raise(self) -> None:
        with pytest.raises(ValueError, match="at least one"):
            min_reprojection([])
        with pytest.raises(ValueError, match=r"reprojection_errors\[0\].*\(1, 3, 4, 4\)"):
            min_reprojection([torch.rand(1, 3, 4, 4)])
        with pytest.raises(ValueError, match=r"reprojection_errors\[1\]"):
            min_reprojection([torch.rand(1, 1, 4, 4), torch.rand(1, 1, 4, 5)])
        with pytest.raises(ValueError, match=r"identity_errors\[0\]"):
            min_reprojection([torch.rand(1, 1, 4, 4)], [torch.rand(2, 1, 4, 4)])


class TestFeatureMetric:
    def test_error_by_hand(self) -> None:
        target = torch.zeros(1, 2, 1, 2, dtype=torch.float64)
        warped = torch.tensor([[[[0.3, 0.0]], [[0.0, -0.4]]]], dtype=torch.float64)
        # pixel 0: mean(sqrt(0.09 + 1e-6), 1e-3); pixel 1: mean(1e-3, sqrt(0.16 + 1e-6))
        expected = torch.tensor(
            [[[[(math.sqrt(0.09 + 1e-6) + 1e-3) / 2, (1e-3 + math.sqrt(0.16 + 1e-6)) / 2]]]], dtype=torch.float64
        )
        out = feature_metric_error(target, warped)
        assert out.shape == (1, 1, 1, 2)
        torch.testing.assert_close(out, expected, rtol=1e-12, atol=0)

    def test_loss_is_min_over_sources(self) -> None:
        target = torch.zeros(1, 1, 1, 3, dtype=torch.float64)
        w1 = torch.tensor([[[[0.1, 0.5, 0.0]]]], dtype=torch.float64)
        w2 = torch.tensor([[[[0.2, 0.2, 0.3]]]], dtype=torch.float64)
        c = lambda d: math.sqrt(d * d + 1e-6)  # noqa: E731
        expected = (c(0.1) + c(0.2) + c(0.0)) / 3
        torch.testing.assert_close(feature_metric_loss(target, [w1, w2]), torch.tensor(expected, dtype=torch.float64))
        torch.testing.assert_close(
            feature_metric_loss(target, [w1]), feature_metric_error(target, w1).mean()
        )

    def test_bad_inputs_raise(self) -> None:
        with pytest.raises(ValueError, match="at least one"):
            feature_metric_loss(torch.rand(1, 4, 3, 3), [])
        with pytest.raises(ValueError, match=r"same shape.*\(1, 4, 3, 3\).*\(1, 4, 3, 2\)"):
            feature_metric_loss(torch.rand(1, 4, 3, 3), [torch.rand(1, 4, 3, 2)])
        with pytest.raises(ValueError, match="target_features must have shape"):
            feature_metric_error(torch.rand(4, 3, 3), torch.rand(4, 3, 3))

    def test_gradient_reaches_warped_only(self) -> None:
        target = torch.rand(1, 4, 3, 3)
        warped = torch.rand(1, 4, 3, 3, requires_grad=True)
        feature_metric_loss(target, [warped]).backward()
        assert warped.grad is not None and torch.isfinite(warped.grad).all()

    def test_bf16_autocast(self) -> None:
        target, w1, w2 = torch.rand(2, 8, 6, 6), torch.rand(2, 8, 6, 6), torch.rand(2, 8, 6, 6)
        ref = feature_metric_loss(target, [w1, w2])
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = feature_metric_loss(target.bfloat16(), [w1.bfloat16(), w2.bfloat16()])
        assert out.dtype == torch.float32 and torch.isfinite(out)
        torch.testing.assert_close(out, ref, rtol=1e-2, atol=1e-3)
