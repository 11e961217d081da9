"""FeatureNet (auto-encoder) losses, docs/method.md §2.5: discriminative + convergent regularisation and
multi-scale reconstruction.

Sign convention (docs/method.md §7 item 14/16): :func:`feature_regularization` reports the unweighted terms as
*positive* magnitudes (``discriminative`` is a mean feature-gradient magnitude); the loss uses
``-dis * discriminative + cvt * convergent``. The discriminative term is unbounded below, so
monitor the reported ``discriminative`` value (it grows with the feature norm).

Precision: half/bfloat16 inputs are upcast to float32 and autocast is disabled inside.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch.nn.functional as F
from torch import Tensor

from featdepth.losses.photometric import appearance_error
from featdepth.losses.smoothness import _check_field_image, _edge_aware_terms
from featdepth.losses.ssim import _autocast_disabled, _check_4d, _upcast

__all__ = ["feature_gradient_terms", "feature_regularization", "reconstruction_loss"]


def feature_gradient_terms(features: Tensor, image: Tensor) -> tuple[Tensor, Tensor]:
    r"""Edge-aware first- and second-order gradient magnitudes ``(S1, S2)`` of a feature map.

    .. math::

        S_1 = \operatorname{mean}(|\partial_x f|\, e^{-|\partial_x I|}) + \operatorname{mean}(|\partial_y f|\, e^{-|\partial_y I|}),
        \quad S_2 = \sum_{ab \in \{xx,xy,yx,yy\}} \operatorname{mean}(|\partial_{ab} f|\, e^{-|\partial_{ab} I|})

    with exponent weight 1 (not FeatDepth's disparity 0.5), :math:`|\partial I|` the channel mean of
    the absolute image derivative (second derivatives of the signed first ones), the 1-channel
    weight broadcast over the feature channels, and each mean over all of ``B x C x h' x w'``.
    Empty difference maps (size-1 or size-2 axes) contribute 0; see
    :mod:`featdepth.losses.smoothness`.

    Args:
        features: ``(B, C, h, w)`` feature map.
        image: ``(B, 3, H, W)`` image in ``[0, 1]``, area-downsampled to ``(h, w)`` when sizes differ.

    Returns:
        ``(S1, S2)`` scalar tensors (float32 for half/bfloat16 inputs).
    """
    _check_field_image(features, image, "features")
    with _autocast_disabled(features.device):
        features, image = _upcast(features, image)
        s1, s2 = _edge_aware_terms(features, image, edge_scale=1.0, second_order=True)
        assert s2 is not None
        return s1, s2


def feature_regularization(
    features: Sequence[Tensor],
    image: Tensor,
    dis: float = 1e-3,
    cvt: float = 1e-3,
) -> tuple[Tensor, dict[str, Tensor]]:
    r"""Discriminative + convergent feature regularisation over the encoder levels (docs/method.md §2.5).

    .. math::

        L = \sum_{i=0}^{N-1} \frac{-\mathrm{dis}\, S_1(f_i) + \mathrm{cvt}\, S_2(f_i)}{N\, 2^i}

    with :math:`S_1, S_2` from :func:`feature_gradient_terms` and ``N = len(features)`` (5 for the
    FeatureNet encoder, so the level weights are ``1 / (5 * 2**i)``).

    Args:
        features: encoder features ``f_0 .. f_{N-1}``, each ``(B, C_i, h_i, w_i)``, finest first.
        image: the (non-augmented) target image ``(B, 3, H, W)``.
        dis: weight of the discriminative term (alpha, 1e-3); it enters the loss with a minus sign.
        cvt: weight of the convergent term (beta, 1e-3).

    Returns:
        ``(total, terms)``: the weighted scalar total and a dict of unweighted scalars
        ``"discriminative"`` :math:`= \sum_i S_1(f_i)/(N 2^i)` (a positive magnitude; the loss uses
        ``-dis`` times it) and ``"convergent"`` :math:`= \sum_i S_2(f_i)/(N 2^i)`, so
        ``total = -dis * discriminative + cvt * convergent``.

    Raises:
        ValueError: if ``features`` is empty or a level/image shape is invalid.
    """
    if len(features) == 0:
        raise ValueError("features must contain at least one (B, C, h, w) level, got an empty sequence")
    n = len(features)
    discriminative: Tensor | None = None
    convergent: Tensor | None = None
    for i, f in enumerate(features):
        _check_field_image(f, image, f"features[{i}]")
        s1, s2 = feature_gradient_terms(f, image)
        w = 1.0 / (n * 2**i)
        discriminative = s1 * w if discriminative is None else discriminative + s1 * w
        convergent = s2 * w if convergent is None else convergent + s2 * w
    assert discriminative is not None and convergent is not None
    total = -dis * discriminative + cvt * convergent
    return total, {"discriminative": discriminative, "convergent": convergent}


def reconstruction_loss(
    reconstructions: Mapping[int, Tensor],
    image: Tensor,
    ssim_weight: float = 0.85,
) -> Tensor:
    r"""Multi-scale FeatureNet reconstruction loss (docs/method.md §2.5).

    .. math::

        L_{rec} = \frac{1}{N_s} \sum_s \operatorname{mean}_p\, e(\hat I_s, I_{\downarrow s})

    with ``e`` the :func:`featdepth.losses.photometric.appearance_error` (SSIM + Charbonnier).
    Targets are obtained by **successive** bilinear resizing (``align_corners=False``) exactly as
    the reference code: scales are visited in increasing order and each target is resized from
    the previous one to the size of that scale's reconstruction (scale 0 at full size is the image
    itself). Note that a perfect reconstruction still costs ``(1 - ssim_weight) * 1e-3``, the
    Charbonnier floor.

    Args:
        reconstructions: ``{s: (B, 3, H / 2**s, W / 2**s)}`` decoder outputs, any set of scales.
        image: the non-augmented target ``(B, 3, H, W)`` in ``[0, 1]``.
        ssim_weight: SSIM weight of the appearance error, default 0.85.

    Returns:
        Scalar tensor (float32 for half/bfloat16 inputs).

    Raises:
        ValueError: if ``reconstructions`` is empty or a shape does not match ``image``'s batch / channels.
    """
    if len(reconstructions) == 0:
        raise ValueError("reconstructions must map at least one scale to a (B, 3, h, w) image, got an empty mapping")
    _check_4d(image, "image")
    for s, rec in reconstructions.items():
        _check_4d(rec, f"reconstructions[{s}]")
        if rec.shape[:2] != image.shape[:2]:
            raise ValueError(
                f"reconstructions[{s}] must have shape (B, C, h, w) with (B, C) of image {tuple(image.shape)}, "
                f"got {tuple(rec.shape)}"
            )
    with _autocast_disabled(image.device):
        target = _upcast(image)[0]
        total: Tensor | None = None
        for s in sorted(reconstructions):
            rec = reconstructions[s]
            target = F.interpolate(target, size=tuple(rec.shape[-2:]), mode="bilinear", align_corners=False)
            term = appearance_error(rec, target, ssim_weight=ssim_weight).mean()
            total = term if total is None else total + term
        assert total is not None
        return total / len(reconstructions)
