"""Photometric primitives and the min-reprojection / auto-masking rule (docs/method.md §2.1, §2.2).

All functions return per-pixel maps except :func:`photometric_loss`, the reduced convenience.

Precision: half/bfloat16 inputs are upcast to float32 and autocast is disabled inside (SSIM
variances, the ``eps**2 = 1e-6`` of the Charbonnier penalty and the 1e-5 tie-breaking noise
are all lost in bfloat16); float64 stays float64. Outputs carry that computation dtype.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from featdepth.losses.ssim import (
    SSIMTarget,
    _autocast_disabled,
    _check_4d,
    _check_same_shape,
    _upcast,
    ssim_dissimilarity,
)

__all__ = ["MinReprojection", "appearance_error", "min_reprojection", "photometric_loss", "robust_l1"]


def robust_l1(x: Tensor, y: Tensor, eps: float = 1e-3) -> Tensor:
    r"""Element-wise Charbonnier penalty :math:`\sqrt{(x - y)^2 + \epsilon^2}` (docs/method.md §2.1).

    Note this is *not* kornia's ``charbonnier_loss`` (a different formula); at ``x == y`` it is ``eps``.

    Args:
        x: tensor of any shape, typically ``(B, C, H, W)``.
        y: tensor of the same shape as ``x``.
        eps: smoothing constant, default ``1e-3``.

    Returns:
        Tensor of the shape of ``x`` (no reduction), float32 for half/bfloat16 inputs.

    Raises:
        ValueError: if the shapes differ.
    """
    if not isinstance(x, Tensor) or not isinstance(y, Tensor):
        raise TypeError("x and y must be torch.Tensor")
    _check_same_shape(x, y, "x", "y")
    with _autocast_disabled(x.device):
        x, y = _upcast(x, y)
        return _charbonnier(x - y, eps)


def _charbonnier(diff: Tensor, eps: float = 1e-3) -> Tensor:
    return torch.sqrt(diff * diff + eps**2)


def appearance_error(
    pred: Tensor, target: Tensor | SSIMTarget, ssim_weight: float = 0.85, robust: bool = True
) -> Tensor:
    r"""Per-pixel appearance error ``e(pred, target)`` of docs/method.md §2.1.

    .. math::

        e = w \cdot \operatorname{mean}_c \mathrm{SSIM_d}(\hat I, I)
            + (1 - w) \cdot \operatorname{mean}_c \rho(\hat I, I)

    with :math:`\rho` the Charbonnier :func:`robust_l1` (``robust=True``, the code) or plain
    :math:`|\hat I - I|` (``robust=False``, the paper) and :math:`\mathrm{SSIM_d}` from
    :func:`featdepth.losses.ssim.ssim_dissimilarity`.

    Args:
        pred: reconstructed / warped image ``(B, C, H, W)`` in ``[0, 1]``, or a stack ``(S, B, C, H, W)``
            of images all compared with the same target (one SSIM pass, target statistics computed once).
        target: target image ``(B, C, H, W)``, or its :class:`~featdepth.losses.ssim.SSIMTarget`
            (:func:`~featdepth.losses.ssim.ssim_target`) to reuse across calls (the loss does, across
            scales and the auto-masking identity errors).
        ssim_weight: ``w`` in ``[0, 1]``, default 0.85. With 0 the SSIM term is skipped.
        robust: Charbonnier (True) or plain L1 (False).

    Returns:
        ``(B, 1, H, W)`` error map (``(S, B, 1, H, W)`` for a stack), float32 for half/bfloat16 inputs.

    Raises:
        ValueError: on non-4-D or mismatched inputs, or ``ssim_weight`` outside ``[0, 1]``.
    """
    if not isinstance(pred, Tensor):
        raise TypeError(f"pred must be a torch.Tensor, got {type(pred).__name__}")
    pred4 = pred[0] if pred.ndim == 5 else pred
    _check_4d(pred4, "pred")
    if isinstance(target, SSIMTarget):
        stats: SSIMTarget | None = target
        image = target.padded[..., 1:-1, 1:-1]
    else:
        stats = None
        _check_4d(target, "target")
        image = target
    _check_same_shape(pred4, image, "pred", "target")
    if not 0.0 <= ssim_weight <= 1.0:
        raise ValueError(f"ssim_weight must be in [0, 1], got {ssim_weight}")
    with _autocast_disabled(pred.device):
        pred, image = _upcast(pred, image)
        diff = pred - image  # broadcasts over the stack dimension
        if robust:
            l1 = _charbonnier(diff).mean(-3, keepdim=True)
        else:
            l1 = diff.abs().mean(-3, keepdim=True)
        if ssim_weight == 0.0:
            return l1
        ssim_d = ssim_dissimilarity(pred, stats if stats is not None else image).mean(-3, keepdim=True)
        return ssim_weight * ssim_d + (1 - ssim_weight) * l1


class MinReprojection(NamedTuple):
    """Result of :func:`min_reprojection`.

    Attributes:
        loss_map: ``(B, 1, H, W)`` per-pixel minimum error.
        selection: ``(B, 1, H, W)`` int64 index of the winning candidate in the stack
            ``[identity errors..., reprojection errors...]``.
        automask: ``(B, 1, H, W)`` bool, True where a warped (reprojection) error won.
    """

    loss_map: Tensor
    selection: Tensor
    automask: Tensor


def _stack_errors(errors: Sequence[Tensor], name: str, ref: Tensor | None) -> Tensor:
    for k, e in enumerate(errors):
        _check_4d(e, f"{name}[{k}]")
        if e.shape[1] != 1:
            raise ValueError(f"{name}[{k}] must have shape (B, 1, H, W), got {tuple(e.shape)}")
        if ref is not None and e.shape != ref.shape:
            raise ValueError(
                f"{name}[{k}] has shape {tuple(e.shape)}, expected {tuple(ref.shape)} like the first error map"
            )
        ref = e
    return torch.cat(list(_upcast(*errors)), dim=1)


def min_reprojection(
    reprojection_errors: Sequence[Tensor],
    identity_errors: Sequence[Tensor] | None = None,
    noise_std: float = 1e-5,
    generator: torch.Generator | None = None,
) -> MinReprojection:
    """Per-pixel minimum over sources with monodepth2-style auto-masking (docs/method.md §2.2).

    The candidates are stacked as ``[identity errors + N(0, noise_std^2), reprojection errors]``,
    identity errors **before** the warped ones exactly as the reference code, and the per-pixel
    minimum is taken over that stack. On an exact tie the first (identity) candidate wins
    (``torch.min`` returns the first minimal index); with the default noise exact ties are
    practically impossible. Pixels where an identity error wins are the auto-masked ones
    (static scene / moving with the camera); their loss is the (unwarped) identity error, as in
    the code, so they still contribute to the mean.

    Args:
        reprojection_errors: non-empty sequence of ``(B, 1, H, W)`` errors ``e(I_hat_f, I_t)`` of the
            warped sources.
        identity_errors: ``None`` (no auto-masking, e.g. stereo / MS training) or a sequence of
            ``(B, 1, H, W)`` errors ``e(I_f, I_t)`` of the unwarped sources. An empty sequence
            behaves like ``None``.
        noise_std: standard deviation of the Gaussian noise added to the identity errors (1e-5 in
            the code); 0 disables it.
        generator: optional ``torch.Generator`` (on the errors' device) for reproducible noise.

    Returns:
        :class:`MinReprojection` ``(loss_map, selection, automask)``. Without identity errors
        ``loss_map`` is the plain minimum, ``selection`` indexes the reprojection errors and
        ``automask`` is all True. ``loss_map`` is float32 for half/bfloat16 inputs.

    Raises:
        ValueError: if ``reprojection_errors`` is empty or any map is not ``(B, 1, H, W)`` or the
            maps differ in shape.
    """
    if len(reprojection_errors) == 0:
        raise ValueError("reprojection_errors must contain at least one (B, 1, H, W) map, got an empty sequence")
    first = reprojection_errors[0]
    with _autocast_disabled(first.device if isinstance(first, Tensor) else torch.device("cpu")):
        warped = _stack_errors(reprojection_errors, "reprojection_errors", None)
        ref = reprojection_errors[0]
        num_identity = 0 if identity_errors is None else len(identity_errors)
        if num_identity > 0:
            identity = _stack_errors(identity_errors, "identity_errors", ref)  # type: ignore[arg-type]
            if noise_std != 0.0:
                noise = torch.randn(
                    identity.shape, generator=generator, device=identity.device, dtype=identity.dtype
                )
                identity = identity + noise * noise_std
            candidates = torch.cat(_upcast(identity, warped), dim=1)
        else:
            candidates = warped
        loss_map, selection = torch.min(candidates, dim=1, keepdim=True)
        automask = selection >= num_identity
        return MinReprojection(loss_map, selection, automask)


def photometric_loss(
    reprojection_errors: Sequence[Tensor],
    identity_errors: Sequence[Tensor] | None = None,
    noise_std: float = 1e-5,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Scalar photometric loss: the mean over ``B x H x W`` of :func:`min_reprojection`'s ``loss_map``.

    This is ``L_ph,s`` of docs/method.md §2.2 for one scale (before the ``1 / N_scales`` weight). Arguments
    as in :func:`min_reprojection`.
    """
    return min_reprojection(reprojection_errors, identity_errors, noise_std, generator).loss_map.mean()
