"""Small building blocks shared by the networks, plus disparity/depth conversions.

Submodule names follow the official FeatDepth layout so that official checkpoints map onto ours by a
prefix rename (docs/method.md §1.7):

- :class:`Conv3x3` holds ``pad`` (reflection, 1 pixel) and ``conv`` (3×3, with bias);
- :class:`Conv1x1` holds ``conv`` (1×1, no bias by default);
- :class:`ConvBlock` holds ``conv`` (a :class:`Conv3x3`) and ``nonlin`` (ELU);
- :class:`CRPBlock` holds ``maxpool`` and the 1×1 stages ``1_pointwise`` … ``n_pointwise``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "IMAGE_MEAN",
    "IMAGE_STD",
    "disp_to_depth",
    "depth_to_disp",
    "normalize_image",
    "check_input_size",
    "check_image_batch",
    "Conv3x3",
    "Conv1x1",
    "ConvBlock",
    "CRPBlock",
    "DispSigmoid",
    "disp_sigmoid",
    "upsample",
]

#: Normalisation constants used by DepthNet and PoseNet (docs/method.md §8): ``(x - 0.45) / 0.225``.
IMAGE_MEAN: float = 0.45
IMAGE_STD: float = 0.225


def _check_depth_range(min_depth: float, max_depth: float) -> None:
    if not (min_depth > 0 and max_depth > min_depth):
        raise ValueError(
            f"need 0 < min_depth < max_depth, got min_depth={min_depth}, max_depth={max_depth}"
        )


def disp_to_depth(disp: Tensor, min_depth: float, max_depth: float) -> tuple[Tensor, Tensor]:
    """Map sigmoid disparity to (scaled disparity, depth).

    ``scaled_disp = 1/max_depth + (1/min_depth - 1/max_depth) * disp`` and ``depth = 1/scaled_disp``.

    Args:
        disp: sigmoid disparity in ``[0, 1]``, any shape (usually ``(B,1,H,W)``).
        min_depth: depth (metres, or the training scale's units) that ``disp = 1`` maps to, e.g. 0.1.
        max_depth: depth that ``disp = 0`` maps to, e.g. 100.

    Returns:
        ``(scaled_disp, depth)``, both with the shape of ``disp``; ``scaled_disp`` lies in
        ``[1/max_depth, 1/min_depth]`` and ``depth`` in ``[min_depth, max_depth]``.
    """
    _check_depth_range(min_depth, max_depth)
    min_disp = 1.0 / max_depth
    max_disp = 1.0 / min_depth
    scaled_disp = min_disp + (max_disp - min_disp) * disp
    depth = 1.0 / scaled_disp
    return scaled_disp, depth


def depth_to_disp(depth: Tensor, min_depth: float, max_depth: float) -> Tensor:
    """Inverse of :func:`disp_to_depth`: depth to sigmoid-space disparity.

    Args:
        depth: positive depth, any shape.
        min_depth, max_depth: the range used by :func:`disp_to_depth`.

    Returns:
        ``disp = (1/depth - 1/max_depth) / (1/min_depth - 1/max_depth)``, shape of ``depth``;
        in ``[0, 1]`` when ``depth`` is inside ``[min_depth, max_depth]``.
    """
    _check_depth_range(min_depth, max_depth)
    min_disp = 1.0 / max_depth
    max_disp = 1.0 / min_depth
    return (1.0 / depth - min_disp) / (max_disp - min_disp)


def normalize_image(x: Tensor) -> Tensor:
    """Normalise an image in ``[0, 1]`` as DepthNet/PoseNet expect: ``(x - 0.45) / 0.225``.

    Args:
        x: ``(B,C,H,W)`` (any shape works; the operation is element-wise).
    """
    return (x - IMAGE_MEAN) / IMAGE_STD


def _nearest_multiples(value: int, multiple: int) -> str:
    low = (value // multiple) * multiple
    high = low + multiple
    return f"{low} or {high}" if low > 0 else f"{high}"


def check_input_size(height: int, width: int, multiple: int = 32, what: str = "input", min_size: int = 0) -> None:
    """Raise ``ValueError`` unless ``height`` and ``width`` are positive multiples of ``multiple``.

    The ResNet encoders downsample by 32 and the depth decoders concatenate skip features, so
    other sizes fail deep inside the network (official issue #40: 360×640). The message names the
    offending value(s) and suggests the nearest valid ones. With ``min_size`` the sides must also be
    at least that large (the reflection-padded 3×3 convs on the H/32 level need 2 pixels there,
    so DepthNet and FeatureNet use ``min_size=64``).
    """
    problems = []
    for name, value in (("height", height), ("width", width)):
        if int(value) != value or value <= 0 or value % multiple != 0:
            problems.append(
                f"{name} {value} is not a multiple of {multiple} "
                f"(nearest valid: {_nearest_multiples(int(value), multiple)})"
            )
        elif value < min_size:
            problems.append(f"{name} {value} is smaller than the minimum {min_size}")
    if problems:
        raise ValueError(
            f"{what} size {height}x{width} (HxW) is not supported: "
            + "; ".join(problems)
            + f". Height and width must be multiples of {multiple}"
            + (f" and at least {min_size}." if min_size > multiple else ".")
        )


class Conv3x3(nn.Module):
    """3×3 convolution (stride 1, with bias) after 1-pixel reflection (or zero) padding.

    Shapes: ``(B, in_channels, H, W) -> (B, out_channels, H, W)``.
    """

    def __init__(self, in_channels: int, out_channels: int, use_refl: bool = True) -> None:
        super().__init__()
        self.pad = nn.ReflectionPad2d(1) if use_refl else nn.ZeroPad2d(1)
        self.conv = nn.Conv2d(int(in_channels), int(out_channels), kernel_size=3, bias=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(self.pad(x))


class Conv1x1(nn.Module):
    """1×1 convolution, no bias by default. ``(B, in, H, W) -> (B, out, H, W)``."""

    def __init__(self, in_channels: int, out_channels: int, bias: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(int(in_channels), int(out_channels), kernel_size=1, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class ConvBlock(nn.Module):
    """Reflection-padded 3×3 convolution followed by ELU. ``(B, in, H, W) -> (B, out, H, W)``."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = Conv3x3(in_channels, out_channels)
        self.nonlin = nn.ELU()

    def forward(self, x: Tensor) -> Tensor:
        return self.nonlin(self.conv(x))


class CRPBlock(nn.Module):
    """Chained residual pooling (Light-Weight RefineNet).

    ``top = x``; for each of ``n_stages`` stages: ``top = conv1x1_i(maxpool5x5(top))``, ``x = x + top``.
    The max-pool has stride 1 and padding 2, so the size is kept.

    Shapes: ``(B, in_planes, H, W) -> (B, out_planes, H, W)``; the residual sum needs
    ``in_planes == out_planes``.
    """

    def __init__(self, in_planes: int, out_planes: int, n_stages: int = 4) -> None:
        super().__init__()
        if in_planes != out_planes:
            raise ValueError(
                f"CRPBlock adds its stages to the input, so in_planes ({in_planes}) must equal "
                f"out_planes ({out_planes})"
            )
        self.n_stages = int(n_stages)
        self.maxpool = nn.MaxPool2d(kernel_size=5, stride=1, padding=2)
        for i in range(self.n_stages):
            # Names "1_pointwise", "2_pointwise", ... as in the official checkpoints.
            self.add_module(f"{i + 1}_pointwise", Conv1x1(in_planes if i == 0 else out_planes, out_planes))

    def forward(self, x: Tensor) -> Tensor:
        top = x
        for i in range(self.n_stages):
            top = getattr(self, f"{i + 1}_pointwise")(self.maxpool(top))
            x = x + top
        return x


class _SigmoidGradFloor(torch.autograd.Function):
    """``sigmoid(z)`` whose backward uses ``max(sigmoid'(z), floor)`` instead of ``sigmoid'(z)``."""

    @staticmethod
    def forward(ctx, z: Tensor, floor: float) -> Tensor:  # type: ignore[override]
        s = torch.sigmoid(z)
        ctx.save_for_backward(s)
        ctx.floor = floor
        return s

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        (s,) = ctx.saved_tensors
        # grad * (1 - s) * s in that order: bit-identical to torch.sigmoid's backward where the floor is not hit
        one_minus = 1.0 - s
        plain = grad * one_minus * s
        return torch.where(one_minus * s < ctx.floor, grad * ctx.floor, plain), None


def disp_sigmoid(z: Tensor, grad_floor: float = 0.0) -> Tensor:
    """The disparity heads' sigmoid. Same shape as ``z``; the output is exactly ``torch.sigmoid(z)``.

    With ``grad_floor > 0`` and ``z`` requiring grad (training), the backward pass uses
    ``max(sigmoid'(z), grad_floor)``: a saturated head (``sigmoid'(z) ~ 0``, e.g. the whole image at the far
    limit) still receives the loss gradient and can come back. ``0`` (the default) is the paper's sigmoid.
    See docs/method.md, "Disparity sigmoid gradient floor".
    """
    if grad_floor > 0 and z.requires_grad:
        return _SigmoidGradFloor.apply(z, float(grad_floor))
    return torch.sigmoid(z)


class DispSigmoid(nn.Module):
    """Module form of :func:`disp_sigmoid` (no parameters, so state dicts are unchanged)."""

    def __init__(self, grad_floor: float = 0.0) -> None:
        super().__init__()
        self.grad_floor = float(grad_floor)

    def forward(self, z: Tensor) -> Tensor:
        return disp_sigmoid(z, self.grad_floor)


def upsample(x: Tensor, scale_factor: int = 2) -> Tensor:
    """Nearest-neighbour upsampling by ``scale_factor`` (default 2): ``(B,C,H,W) -> (B,C,2H,2W)``."""
    return F.interpolate(x, scale_factor=scale_factor, mode="nearest")


def check_image_batch(x: Tensor, channels: int, what: str) -> None:
    """Raise ``ValueError`` unless ``x`` is a ``(B, channels, H, W)`` tensor (message names ``what``)."""
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[1] != channels:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{what} must have shape (B, {channels}, H, W), got {shape}")
