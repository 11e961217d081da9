"""Per-pixel SSIM with a 3x3 box window (the FeatDepth / monodepth2 variant).

docs/method.md §2.1: both images are reflection-padded by 1 pixel, then a 3x3 average pooling with stride 1
gives the local means, variances and covariance; ``C1 = 0.01**2`` and ``C2 = 0.03**2`` (images in
``[0, 1]``). The dissimilarity used by the photometric loss is ``clamp((1 - SSIM) / 2, 0, 1)``.

Precision: the variances are differences of nearly equal numbers (``E[x^2] - E[x]^2``), which is
meaningless in bfloat16/float16. Half-precision inputs are therefore upcast to float32 and autocast
is disabled inside; float64 inputs stay float64. The output dtype is that computation dtype.

The module also holds the small precision helpers shared by the other loss modules.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["SSIM", "SSIMTarget", "ssim_dissimilarity", "ssim_map", "ssim_target"]


# --------------------------------------------------------------------------------------------------
# shared private helpers (precision policy and shape checks of featdepth.losses)
# --------------------------------------------------------------------------------------------------


def _compute_dtype(*tensors: Tensor) -> torch.dtype:
    """Result dtype of the inputs promoted with float32 (half/bf16/int -> float32, float64 stays)."""
    dtype = torch.float32
    for t in tensors:
        dtype = torch.promote_types(dtype, t.dtype)
    return dtype


def _upcast(*tensors: Tensor) -> tuple[Tensor, ...]:
    """Cast all tensors to :func:`_compute_dtype` of them (a no-op for float32/float64 inputs)."""
    dtype = _compute_dtype(*tensors)
    return tuple(t.to(dtype) for t in tensors)


@contextlib.contextmanager
def _autocast_disabled(device: torch.device) -> Iterator[None]:
    """Disable autocast for ``device`` inside the block (no-op where autocast is unsupported)."""
    try:
        ctx: contextlib.AbstractContextManager = torch.autocast(device_type=device.type, enabled=False)
    except (RuntimeError, ValueError):  # pragma: no cover - exotic device types
        ctx = contextlib.nullcontext()
    with ctx:
        yield


def _check_4d(t: object, name: str) -> None:
    if not isinstance(t, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.ndim != 4:
        raise ValueError(f"{name} must have shape (B, C, H, W), got {tuple(t.shape)}")


def _check_same_shape(x: Tensor, y: Tensor, name_x: str, name_y: str) -> None:
    if x.shape != y.shape:
        raise ValueError(f"{name_x} and {name_y} must have the same shape, got {tuple(x.shape)} and {tuple(y.shape)}")


# --------------------------------------------------------------------------------------------------
# SSIM
# --------------------------------------------------------------------------------------------------


def _box3_sum(t: Tensor) -> Tensor:
    """Sum over 3x3 windows of the last two dims (stride 1, no padding): ``(..., H+2, W+2) -> (..., H, W)``."""
    rows = t[..., :, :-2] + t[..., :, 1:-1] + t[..., :, 2:]
    return rows[..., :-2, :] + rows[..., 1:-1, :] + rows[..., 2:, :]


class _Box3Mean(torch.autograd.Function):
    """3x3 mean filter (valid, stride 1) with a hand-written backward.

    Autograd through the six slices of :func:`_box3_sum` allocates and zero-fills a full-size gradient
    per slice (about 40% of a CPU training step of the baseline went there). The adjoint of a valid
    box sum is the *full* box sum: zero-pad the output gradient by 2 and box-sum it again.
    """

    @staticmethod
    def forward(ctx, t: Tensor) -> Tensor:  # type: ignore[override]
        return _box3_sum(t) / 9.0

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # type: ignore[override]
        # differentiable (plain tensor ops), so double backward works too
        return _box3_sum(F.pad(grad, (2, 2, 2, 2))) / 9.0


def _box3(t: Tensor) -> Tensor:
    """Mean over 3x3 windows (stride 1, no padding): ``(..., H+2, W+2) -> (..., H, W)``, separable."""
    return _Box3Mean.apply(t)


def _reflect_pad(t: Tensor) -> Tensor:
    """Reflection padding by 1 of the last two dims of a tensor with any number of leading dims."""
    lead = t.shape[:-3]
    flat = t.reshape(-1, *t.shape[-3:])
    return F.pad(flat, (1, 1, 1, 1), mode="reflect").reshape(*lead, *flat.shape[1:-2], t.shape[-2] + 2, t.shape[-1] + 2)


class SSIMTarget(NamedTuple):
    """The statistics of the second SSIM argument, computed once and reused against many images.

    In the photometric loss the target image is compared with every warped source at every scale
    and with every un-warped source (auto-masking); its local mean and variance do not change.
    Build with :func:`ssim_target`; pass instead of the tensor ``y`` to :func:`ssim_map`.

    Attributes:
        padded: the reflection-padded target ``(B, C, H+2, W+2)`` in the computation dtype.
        mu: its 3x3 local mean ``(B, C, H, W)``.
        var: its 3x3 local variance ``(B, C, H, W)``.
    """

    padded: Tensor
    mu: Tensor
    var: Tensor


def ssim_target(y: Tensor) -> SSIMTarget:
    """Precompute the SSIM statistics of a target image ``(B, C, H, W)`` (see :class:`SSIMTarget`)."""
    _check_4d(y, "y")
    if y.shape[-2] < 2 or y.shape[-1] < 2:
        raise ValueError(f"y needs H >= 2 and W >= 2 for reflection padding, got {tuple(y.shape)}")
    with _autocast_disabled(y.device):
        (y,) = _upcast(y)
        yp = _reflect_pad(y)
        mu = _box3(yp)
        return SSIMTarget(yp, mu, _box3(yp * yp) - mu * mu)


def ssim_map(x: Tensor, y: Tensor | SSIMTarget, c1: float = 0.01**2, c2: float = 0.03**2) -> Tensor:
    r"""Per-pixel, per-channel SSIM with a 3x3 box window after reflection padding by 1.

    .. math::

        \mathrm{SSIM} = \frac{(2\mu_x\mu_y + C_1)(2\sigma_{xy} + C_2)}
                             {(\mu_x^2 + \mu_y^2 + C_1)(\sigma_x^2 + \sigma_y^2 + C_2)}

    with :math:`\mu`, :math:`\sigma^2`, :math:`\sigma_{xy}` the 3x3 box-window (a separable 3x3 mean,
    stride 1) moments of the reflection-padded images. The variances are not clamped (as in the
    reference code), so tiny negative rounding residues are possible in float32.

    Args:
        x: image ``(B, C, H, W)``, values in ``[0, 1]`` (the constants assume a unit data range); or a
            stack ``(S, B, C, H, W)`` of images compared with the same ``y`` (the target's statistics
            are then computed once, not ``S`` times).
        y: image ``(B, C, H, W)``, or its precomputed :class:`SSIMTarget` (:func:`ssim_target`) to reuse
            across calls.
        c1: luminance stabiliser, default ``0.01**2``.
        c2: contrast stabiliser, default ``0.03**2``.

    Returns:
        SSIM map of the shape of ``x``, in about ``[-1, 1]`` (1 where ``x == y``), in float32 for
        half/bfloat16 inputs (float64 stays float64); autocast is disabled inside.

    Raises:
        ValueError: if the inputs are not 4-D (``x`` may be 5-D), differ in shape, or ``H`` or ``W``
            is below 2 (reflection padding needs at least 2 pixels).
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim == 5:
        x4 = x[0]
    else:
        _check_4d(x, "x")
        x4 = x
    if isinstance(y, SSIMTarget):
        target = y
        _check_same_shape(x4, target.mu, "x", "y")
    else:
        _check_4d(y, "y")
        _check_same_shape(x4, y, "x", "y")
        if x.shape[-2] < 2 or x.shape[-1] < 2:
            raise ValueError(f"x and y need H >= 2 and W >= 2 for reflection padding, got {tuple(x.shape)}")
        target = ssim_target(y)
    with _autocast_disabled(x.device):
        dtype = torch.promote_types(_compute_dtype(x), target.mu.dtype)
        x = _reflect_pad(x.to(dtype))
        yp, mu_y, sigma_y = (t.to(dtype) for t in target)
        # Separable box filters with an analytic backward; only the statistics involving x are
        # computed here (the target's come precomputed).
        mu_x = _box3(x)
        sigma_x = _box3(x * x) - mu_x * mu_x
        sigma_xy = _box3(x * yp) - mu_x * mu_y
        numerator = (2 * mu_x * mu_y + c1) * (2 * sigma_xy + c2)
        denominator = (mu_x * mu_x + mu_y * mu_y + c1) * (sigma_x + sigma_y + c2)
        return numerator / denominator


def ssim_dissimilarity(x: Tensor, y: Tensor | SSIMTarget, c1: float = 0.01**2, c2: float = 0.03**2) -> Tensor:
    """Per-pixel SSIM dissimilarity ``clamp((1 - SSIM) / 2, 0, 1)``, docs/method.md §2.1.

    Args:
        x: image ``(B, C, H, W)`` in ``[0, 1]``, or a stack ``(S, B, C, H, W)`` (see :func:`ssim_map`).
        y: image ``(B, C, H, W)``, or its precomputed :class:`SSIMTarget`.
        c1: luminance stabiliser, default ``0.01**2``.
        c2: contrast stabiliser, default ``0.03**2``.

    Returns:
        map of the shape of ``x`` in ``[0, 1]``; 0 where the images agree. Not averaged over channels
        (:func:`featdepth.losses.photometric.appearance_error` does that). Float32 for
        half/bfloat16 inputs, see :func:`ssim_map`.
    """
    return torch.clamp((1 - ssim_map(x, y, c1, c2)) / 2, 0, 1)


class SSIM(nn.Module):
    """Module twin of :func:`ssim_dissimilarity`: ``forward(x, y) -> (B, C, H, W)`` dissimilarity map.

    Args:
        c1: luminance stabiliser, default ``0.01**2``.
        c2: contrast stabiliser, default ``0.03**2``.
    """

    def __init__(self, c1: float = 0.01**2, c2: float = 0.03**2) -> None:
        super().__init__()
        self.c1 = float(c1)
        self.c2 = float(c2)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        """Dissimilarity map ``clamp((1 - SSIM(x, y)) / 2, 0, 1)`` of shape ``(B, C, H, W)``."""
        return ssim_dissimilarity(x, y, self.c1, self.c2)

    def extra_repr(self) -> str:
        return f"c1={self.c1}, c2={self.c2}"
