"""Edge-aware first- and second-order smoothness (docs/method.md §2.4), shared with the FeatureNet terms (§2.5).

Derivatives are forward differences on the last two axes::

    gradient_x(t) = t[..., :, 1:] - t[..., :, :-1]     # (..., H, W-1)
    gradient_y(t) = t[..., 1:, :] - t[..., :-1, :]     # (..., H-1, W)

Second derivatives are taken on the *signed* first derivatives, for the field and for the image:
``(dxx, dxy) = (gradient_x(dx), gradient_y(dx))`` and ``(dyx, dyy) = (gradient_x(dy), gradient_y(dy))``.
Each edge weight is ``exp(-edge_scale * mean_c |d_ab I|)`` (a 1-channel map broadcast over the
field's channels) and each term is ``mean(|d_ab field| * weight)`` over all of its elements.

A term whose difference map is empty (a size-1 axis, or a size-2 axis for ``dxx``/``dyy``)
contributes 0 instead of NaN, so tiny feature maps (e.g. the 2x2 deepest FeatureNet level of a
64x64 input) stay finite.

Precision: half/bfloat16 inputs are upcast to float32 and autocast is disabled inside (the
second differences and the mean-normalisation need it); float64 stays float64.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from featdepth.losses.ssim import _autocast_disabled, _check_4d, _upcast

__all__ = ["edge_aware_smoothness", "gradient_x", "gradient_y", "smoothness_terms"]


def gradient_x(t: Tensor) -> Tensor:
    """Forward difference along the width: ``t[..., 1:] - t[..., :-1]``, shape ``(..., H, W-1)``."""
    return t[..., :, 1:] - t[..., :, :-1]


def gradient_y(t: Tensor) -> Tensor:
    """Forward difference along the height: ``t[..., 1:, :] - t[..., :-1, :]``, shape ``(..., H-1, W)``."""
    return t[..., 1:, :] - t[..., :-1, :]


def _weighted_abs_mean(field_grad: Tensor, image_grad: Tensor, edge_scale: float) -> Tensor:
    """``mean(|field_grad| * exp(-edge_scale * mean_c |image_grad|))``; 0 for an empty map."""
    weight = torch.exp(-edge_scale * image_grad.abs().mean(1, keepdim=True))
    term = field_grad.abs() * weight
    return term.mean() if term.numel() > 0 else term.sum()


def _prepare_image(image: Tensor, size: tuple[int, int]) -> Tensor:
    if tuple(image.shape[-2:]) != tuple(size):
        image = F.interpolate(image, size=size, mode="area")
    return image


def _edge_aware_terms(
    field: Tensor, image: Tensor, edge_scale: float, second_order: bool
) -> tuple[Tensor, Tensor | None]:
    """First- and (optionally) second-order edge-aware terms of ``field (B, C, h, w)``.

    ``image (B, C_img, H, W)`` is area-downsampled to ``(h, w)`` when the sizes differ. Inputs
    must already be validated and upcast. Returns ``(S1, S2)`` with ``S2`` None when not requested.
    """
    image = _prepare_image(image, (field.shape[-2], field.shape[-1]))
    f_dx, f_dy = gradient_x(field), gradient_y(field)
    i_dx, i_dy = gradient_x(image), gradient_y(image)
    s1 = _weighted_abs_mean(f_dx, i_dx, edge_scale) + _weighted_abs_mean(f_dy, i_dy, edge_scale)
    if not second_order:
        return s1, None
    pairs = (
        (gradient_x(f_dx), gradient_x(i_dx)),  # xx
        (gradient_y(f_dx), gradient_y(i_dx)),  # xy
        (gradient_x(f_dy), gradient_x(i_dy)),  # yx
        (gradient_y(f_dy), gradient_y(i_dy)),  # yy
    )
    s2 = sum((_weighted_abs_mean(f, i, edge_scale) for f, i in pairs), start=field.new_zeros(()))
    return s1, s2


def _check_field_image(field: Tensor, image: Tensor, field_name: str) -> None:
    _check_4d(field, field_name)
    _check_4d(image, "image")
    if image.shape[0] != field.shape[0]:
        raise ValueError(
            f"{field_name} and image must have the same batch size, got {tuple(field.shape)} and {tuple(image.shape)}"
        )
    if image.shape[1] < 1:
        raise ValueError(f"image must have at least one channel, got {tuple(image.shape)}")


def _normalise_disp(disp: Tensor) -> Tensor:
    return disp / (disp.mean(dim=(2, 3), keepdim=True) + 1e-7)


def smoothness_terms(
    disp: Tensor,
    image: Tensor,
    *,
    edge_scale: float = 0.5,
    normalize: bool = True,
) -> tuple[Tensor, Tensor]:
    r"""First- and second-order edge-aware disparity smoothness ``(S1, S2)``, docs/method.md §2.4.

    .. math::

        S_1 = \operatorname{mean}(|\partial_x \tilde d|\, e^{-a|\partial_x I|})
            + \operatorname{mean}(|\partial_y \tilde d|\, e^{-a|\partial_y I|}), \qquad
        S_2 = \sum_{ab \in \{xx, xy, yx, yy\}} \operatorname{mean}(|\partial_{ab} \tilde d|\, e^{-a|\partial_{ab} I|})

    where :math:`|\partial I|` is the channel mean of the absolute (signed-then-differenced) image
    derivative, :math:`a` = ``edge_scale`` and :math:`\tilde d = d / (\operatorname{mean}_{H,W} d + 10^{-7})`
    when ``normalize`` (mono mode), else :math:`d`.

    Args:
        disp: disparity ``(B, 1, h, w)`` at its native resolution (the raw sigmoid output).
        image: target image ``(B, 3, H, W)`` in ``[0, 1]`` (any channel count works); area-downsampled
            (``F.interpolate(mode="area")``) to ``(h, w)`` when the sizes differ.
        edge_scale: the exponent factor ``a`` (0.5 in FeatDepth, 1.0 in monodepth2).
        normalize: mean-normalise ``disp`` per image first.

    Returns:
        ``(S1, S2)`` scalar tensors (float32 for half/bfloat16 inputs).

    Raises:
        ValueError: if ``disp`` is not ``(B, 1, h, w)`` or ``image`` is not 4-D with the same batch.
    """
    _check_field_image(disp, image, "disp")
    if disp.shape[1] != 1:
        raise ValueError(f"disp must have shape (B, 1, h, w), got {tuple(disp.shape)}")
    with _autocast_disabled(disp.device):
        disp, image = _upcast(disp, image)
        if normalize:
            disp = _normalise_disp(disp)
        s1, s2 = _edge_aware_terms(disp, image, edge_scale, second_order=True)
        assert s2 is not None
        return s1, s2


def edge_aware_smoothness(
    disp: Tensor,
    image: Tensor,
    *,
    second_order: bool = True,
    edge_scale: float = 0.5,
    normalize: bool = True,
) -> Tensor:
    """Scalar edge-aware smoothness ``S1 (+ S2)`` of docs/method.md §2.4 (``L_sm,s`` before its weights).

    The defaults are FeatDepth's mono setting (first + second order, ``exp(-0.5 |dI|)``,
    mean-normalised disparity); use ``normalize=False`` in stereo / MS mode. The weighting
    ``smoothness_weight / 2**s / N_scales`` is applied by the caller.

    Oracle: with ``edge_scale=1.0, second_order=False, normalize=False`` this equals
    ``kornia.losses.inverse_depth_smoothness_loss(disp, image)`` (monodepth2's first-order term
    on a disparity that is already normalised); the tests check it to float64 round-off.

    Args:
        disp: disparity ``(B, 1, h, w)``.
        image: image ``(B, 3, H, W)``, area-downsampled to ``(h, w)`` when the sizes differ.
        second_order: add the second-order term ``S2``.
        edge_scale: exponent factor of the edge weights.
        normalize: mean-normalise ``disp`` first.

    Returns:
        Scalar tensor (float32 for half/bfloat16 inputs).
    """
    _check_field_image(disp, image, "disp")
    if disp.shape[1] != 1:
        raise ValueError(f"disp must have shape (B, 1, h, w), got {tuple(disp.shape)}")
    with _autocast_disabled(disp.device):
        disp, image = _upcast(disp, image)
        if normalize:
            disp = _normalise_disp(disp)
        s1, s2 = _edge_aware_terms(disp, image, edge_scale, second_order=second_order)
        return s1 if s2 is None else s1 + s2
