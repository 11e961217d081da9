"""Tests of featdepth.losses.featurenet (discriminative / convergent / reconstruction, docs/method.md §2.5)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from featdepth.losses import appearance_error, feature_gradient_terms, feature_regularization, reconstruction_loss

# 3x3 feature map with hand-computed forward differences:
#   d_x  = [[1, 2], [0, 0], [0, 6]]          mean |.| = 9/6
#   d_y  = [[2, 1, -1], [-2, -2, 4]]          mean |.| = 12/6   -> S1 = 3.5
#   d_xx = [[1], [0], [6]]                    mean 7/3
#   d_xy = d_yx = [[-1, -2], [0, 6]]          mean 9/4 each
#   d_yy = [[-4, -3, 5]]                      mean 4            -> S2 = 7/3 + 9/2 + 4 = 65/6
F33 = torch.tensor([[0.0, 1.0, 3.0], [2.0, 2.0, 2.0], [0.0, 0.0, 6.0]], dtype=torch.float64)[None, None]
S1_F33 = 3.5
S2_F33 = 65 / 6


def _t(v: float) -> torch.Tensor:
    return torch.tensor(v, dtype=torch.float64)


class TestFeatureGradientTerms:
    def test_constant_image_by_hand(self) -> None:
        image = torch.full((1, 3, 3, 3), 0.4, dtype=torch.float64)
        s1, s2 = feature_gradient_terms(F33, image)
        torch.testing.assert_close(s1, _t(S1_F33))
        torch.testing.assert_close(s2, _t(S2_F33))

    def test_two_by_two_features(self) -> None:
        # d_x = [[1], [4]], d_y = [[3, 6]]; d_xx, d_yy empty (contribute 0); d_xy = d_yx = [[3]]
        f = torch.tensor([[0.0, 1.0], [3.0, 7.0]], dtype=torch.float64)[None, None]
        s1, s2 = feature_gradient_terms(f, torch.zeros(1, 3, 2, 2, dtype=torch.float64))
        torch.testing.assert_close(s1, _t(2.5 + 4.5))
        torch.testing.assert_close(s2, _t(6.0))

    def test_known_image_gradient(self) -> None:
        # image I = 0.1 x^2 in every channel: d_x I = (0.1, 0.3), d_xx I = 0.2, all y-derivatives 0
        col = torch.tensor([0.0, 0.1, 0.4], dtype=torch.float64)
        image = col.expand(1, 3, 3, 3).contiguous()
        s1, s2 = feature_gradient_terms(F33, image)
        e = math.exp
        s1_expected = (1 * e(-0.1) + 2 * e(-0.3) + 0 + 0 + 0 + 6 * e(-0.3)) / 6 + 12 / 6
        s2_expected = (1 + 0 + 6) * e(-0.2) / 3 + 9 / 4 + 9 / 4 + 4  # exponent weight 1, not 0.5
        torch.testing.assert_close(s1, _t(s1_expected))
        torch.testing.assert_close(s2, _t(s2_expected))

    def test_mean_over_channels_and_batch(self) -> None:
        # a zero channel halves the mean; a batch of identical samples does not change it
        f = torch.cat([F33, torch.zeros_like(F33)], dim=1).expand(2, 2, 3, 3)
        image = torch.rand(1, 3, 3, 3, dtype=torch.float64).expand(2, 3, 3, 3)
        s1_one, s2_one = feature_gradient_terms(F33, image[:1])
        s1, s2 = feature_gradient_terms(f, image)
        torch.testing.assert_close(s1, s1_one / 2)
        torch.testing.assert_close(s2, s2_one / 2)

    def test_image_area_downsampled(self) -> None:
        image = torch.rand(1, 3, 6, 6, dtype=torch.float64)
        a = feature_gradient_terms(F33, image)
        b = feature_gradient_terms(F33, F.avg_pool2d(image, 2))
        torch.testing.assert_close(a, b)

    def test_bad_inputs_raise(self) -> None:
        with pytest.raises(ValueError, match=r"features must have shape \(B, C, H, W\), got \(3, 3\)"):
            feature_gradient_terms(torch.rand(3, 3), torch.rand(1, 3, 3, 3))
        with pytest.raises(ValueError, match="same batch size"):
            feature_gradient_terms(torch.rand(2, 4, 3, 3), torch.rand(1, 3, 3, 3))


class TestFeatureRegularization:
    def test_weights_and_signs(self) -> None:
        # encoder-like pyramid (H/2 .. H/32 of a 64x64 image) on a textured image: the total is the
        # 1/(5 * 2**i)-weighted sum of the per-level terms, with the discriminative term negative
        image = torch.rand(1, 3, 64, 64, dtype=torch.float64)
        levels = [torch.randn(1, 2 * 2**i, 32 // 2**i, 32 // 2**i, dtype=torch.float64) for i in range(5)]
        s = [feature_gradient_terms(f, image) for f in levels]
        disc = sum(s1 / (5 * 2**i) for i, (s1, _) in enumerate(s))
        conv = sum(s2 / (5 * 2**i) for i, (_, s2) in enumerate(s))
        total, terms = feature_regularization(levels, image)
        assert set(terms) == {"discriminative", "convergent"}
        torch.testing.assert_close(terms["discriminative"], disc)
        torch.testing.assert_close(terms["convergent"], conv)
        torch.testing.assert_close(total, -1e-3 * disc + 1e-3 * conv)
        assert terms["discriminative"] > 0  # reported as a positive magnitude
        only_dis, _ = feature_regularization(levels, image, dis=1.0, cvt=0.0)
        torch.testing.assert_close(only_dis, -disc)
        only_cvt, _ = feature_regularization(levels, image, dis=0.0, cvt=1.0)
        torch.testing.assert_close(only_cvt, conv)

    def test_pure_hand_values(self) -> None:
        # five identical unpadded 3x3 levels, scaled by (i + 1): closed form of the weights
        image = torch.zeros(1, 3, 12, 12, dtype=torch.float64)
        levels = [(i + 1) * F33 for i in range(5)]
        total, terms = feature_regularization(levels, image, dis=2.0, cvt=3.0)
        w = sum((i + 1) / (5 * 2**i) for i in range(5))
        torch.testing.assert_close(terms["discriminative"], _t(S1_F33 * w))
        torch.testing.assert_close(terms["convergent"], _t(S2_F33 * w))
        torch.testing.assert_close(total, _t(-2.0 * S1_F33 * w + 3.0 * S2_F33 * w))

    def test_empty_raises(self) -> None:
        with pytest.raises(ValueError, match="at least one"):
            feature_regularization([], torch.rand(1, 3, 8, 8))
        with pytest.raises(ValueError, match=r"features\[1\]"):
            feature_regularization([torch.rand(1, 4, 4, 4), torch.rand(4, 2, 2)], torch.rand(1, 3, 8, 8))

    def test_bf16_autocast(self) -> None:
        image = torch.rand(2, 3, 32, 32)
        feats = [torch.randn(2, 8 * 2**i, 16 // 2**i, 16 // 2**i) for i in range(5)]  # deepest 1x1
        ref, ref_terms = feature_regularization(feats, image)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out, terms = feature_regularization([f.bfloat16() for f in feats], image.bfloat16())
        assert out.dtype == torch.float32 and torch.isfinite(out)
        for k in ("discriminative", "convergent"):
            torch.testing.assert_close(terms[k], ref_terms[k], rtol=2e-2, atol=0)


class TestReconstructionLoss:
    @staticmethod
    def _successive_targets(image: torch.Tensor) -> dict[int, torch.Tensor]:
        # independent oracle: bilinear 1/2 resizing with align_corners=False is exact 2x2 averaging,
        # so successive halving gives avg_pool2d(image, 2**s)
        return {s: F.avg_pool2d(image, 2**s) if s else image for s in range(4)}

    def test_perfect_reconstruction_hits_charbonnier_floor(self) -> None:
        image = torch.rand(2, 3, 16, 24, dtype=torch.float64)
        loss = reconstruction_loss(self._successive_targets(image), image)
        torch.testing.assert_close(loss, _t(0.15 * 1e-3))  # SSIM term 0, Charbonnier sqrt(0 + eps^2)

    def test_matches_direct_computation(self) -> None:
        image = torch.rand(1, 3, 16, 16, dtype=torch.float64)
        recs = {s: torch.rand(1, 3, 16 // 2**s, 16 // 2**s, dtype=torch.float64) for s in range(4)}
        targets = self._successive_targets(image)
        expected = sum(appearance_error(recs[s], targets[s]).mean() for s in range(4)) / 4
        torch.testing.assert_close(reconstruction_loss(recs, image), expected)
        expected_l1 = sum(appearance_error(recs[s], targets[s], ssim_weight=0.0).mean() for s in range(4)) / 4
        torch.testing.assert_close(reconstruction_loss(recs, image, ssim_weight=0.0), expected_l1)

    def test_successive_differs_from_one_step(self) -> None:
        # one-step bilinear 1/4 samples only the centre 2x2 of each 4x4 block, successive halving
        # averages the whole block: a block with a bright border separates them
        block = torch.zeros(4, 4, dtype=torch.float64)
        block[0, :] = block[-1, :] = block[:, 0] = block[:, -1] = 1.0
        image = block.repeat(4, 4).expand(1, 3, 16, 16).contiguous()
        one_step = {
            s: F.interpolate(image, scale_factor=0.5**s, mode="bilinear", align_corners=False) for s in range(4)
        }
        successive = self._successive_targets(image)
        assert not torch.allclose(one_step[2], successive[2])
        assert reconstruction_loss(one_step, image) > reconstruction_loss(successive, image) + 1e-2

    def test_scale_order_independent_of_mapping_order(self) -> None:
        image = torch.rand(1, 3, 8, 8, dtype=torch.float64)
        recs = {s: torch.rand(1, 3, 8 // 2**s, 8 // 2**s, dtype=torch.float64) for s in range(3)}
        reversed_recs = {s: recs[s] for s in (2, 1, 0)}
        torch.testing.assert_close(reconstruction_loss(reversed_recs, image), reconstruction_loss(recs, image))

    def test_bad_inputs_raise(self) -> None:
        image = torch.rand(1, 3, 8, 8)
        with pytest.raises(ValueError, match="at least one scale"):
            reconstruction_loss({}, image)
        with pytest.raises(ValueError, match=r"reconstructions\[1\].*\(2, 3, 4, 4\)"):
            reconstruction_loss({0: torch.rand(1, 3, 8, 8), 1: torch.rand(2, 3, 4, 4)}, image)
        with pytest.raises(ValueError, match="image must have shape"):
            reconstruction_loss({0: torch.rand(1, 3, 8, 8)}, torch.rand(3, 8, 8))

    def test_bf16_autocast(self) -> None:
        image = torch.rand(1, 3, 16, 16)
        recs = {s: torch.rand(1, 3, 16 // 2**s, 16 // 2**s) for s in range(4)}
        ref = reconstruction_loss(recs, image)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = reconstruction_loss({s: r.bfloat16() for s, r in recs.items()}, image.bfloat16())
        assert out.dtype == torch.float32 and torch.isfinite(out)
        torch.testing.assert_close(out, ref, rtol=2e-2, atol=0)
