"""Depth decoders: FeatDepth's CRP/RefineNet decoder and a monodepth2-style skip decoder.

Both take the 5-level encoder pyramid ``[f0..f4]`` (see :class:`~featdepth.models.encoders.ResnetEncoder`)
and return ``{scale: disp}`` with sigmoid disparities ``(B,1,h,w)`` in ``(0, 1)``; ``scale_strides``
gives each scale's downsampling factor relative to the input image.

Submodule names of :class:`FeatDepthDecoder` follow the official ``DepthDecoder`` (docs/method.md §1.7), so an
official checkpoint maps by replacing the prefix ``DepthDecoder.`` with ``decoder.`` (in DepthNet):
``reduce1..reduce4`` (:class:`Conv1x1`), ``iconv1..iconv4`` / ``merge1..merge4`` (:class:`Conv3x3`),
``crp1..crp4`` (``nn.Sequential`` holding one :class:`CRPBlock`, hence ``crp2.0.1_pointwise.conv.weight``),
and the disparity heads ``disp4..disp1`` (``nn.Sequential(Conv3x3, DispSigmoid)``), where ``disp{s+1}``
produces output scale ``s`` (``disp4`` -> scale 3 at H/16, …, ``disp1`` -> scale 0 at H/2).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from featdepth.models.layers import Conv1x1, Conv3x3, ConvBlock, CRPBlock, DispSigmoid, disp_sigmoid, upsample

__all__ = ["FeatDepthDecoder", "MonoDepth2Decoder", "DECODERS"]


def _check_num_ch_enc(num_ch_enc: Sequence[int]) -> list[int]:
    channels = [int(c) for c in num_ch_enc]
    if len(channels) != 5:
        raise ValueError(f"num_ch_enc must list the channels of the 5 encoder levels, got {list(num_ch_enc)}")
    return channels


def _check_features(features: Sequence[Tensor], num_ch_enc: Sequence[int], who: str) -> None:
    if len(features) != 5:
        raise ValueError(f"{who} expects 5 encoder features [f0..f4], got {len(features)}")
    for i, (f, c) in enumerate(zip(features, num_ch_enc)):
        if f.dim() != 4 or f.shape[1] != c:
            raise ValueError(f"{who}: feature f{i} must have shape (B, {c}, h, w), got {tuple(f.shape)}")


class FeatDepthDecoder(nn.Module):
    """FeatDepth's Light-Weight-RefineNet decoder with chained residual pooling (docs/method.md §1.3).

    Args:
        num_ch_enc: channels of ``f0..f4`` (``f0`` is not used).
        bottleneck: width of the decoder (256 in the paper).
        dropout: dropout probability applied to ``f4`` and ``f3`` (active in training mode only).
        sigmoid_grad_floor: see :func:`~featdepth.models.layers.disp_sigmoid` (0: the paper's sigmoid).

    Per level ``k`` = 4..1 (``x5`` and ``d5`` absent at level 4)::

        x_k = up(lrelu(merge_k(crp_k(lrelu(iconv_k(cat[reduce_k(f_k), x_{k+1}, d_{k+1}]))))))
        d_k = sigmoid(Conv3x3(x_k))          # output scale k-1

    with ``reduce4: c4 -> 512``, ``iconv4: 512 -> 256``, ``reduce{3,2,1}: c_k -> 256`` and
    ``iconv{3,2,1}: 513 -> 256``; leaky ReLU slope 0.01, nearest ×2 upsampling.

    Input: ``[f0..f4]`` from an image ``(B,3,H,W)``, H and W multiples of 32.
    Output: ``{0: (B,1,H/2,W/2), 1: (B,1,H/4,W/4), 2: (B,1,H/8,W/8), 3: (B,1,H/16,W/16)}`` in ``(0, 1)``.
    """

    scale_strides: dict[int, int] = {0: 2, 1: 4, 2: 8, 3: 16}

    def __init__(self, num_ch_enc: Sequence[int], bottleneck: int = 256, dropout: float = 0.5, crp_stages: int = 4,
                 sigmoid_grad_floor: float = 0.0) -> None:
        super().__init__()
        self.num_ch_enc = _check_num_ch_enc(num_ch_enc)
        self.scale_strides = dict(FeatDepthDecoder.scale_strides)
        b = int(bottleneck)
        c = self.num_ch_enc
        self.dropout = nn.Dropout(p=dropout)

        self.reduce4 = Conv1x1(c[4], 2 * b)
        self.reduce3 = Conv1x1(c[3], b)
        self.reduce2 = Conv1x1(c[2], b)
        self.reduce1 = Conv1x1(c[1], b)

        self.iconv4 = Conv3x3(2 * b, b)
        self.iconv3 = Conv3x3(2 * b + 1, b)
        self.iconv2 = Conv3x3(2 * b + 1, b)
        self.iconv1 = Conv3x3(2 * b + 1, b)

        for k in (4, 3, 2, 1):
            self.add_module(f"crp{k}", nn.Sequential(CRPBlock(b, b, crp_stages)))
        for k in (4, 3, 2, 1):
            self.add_module(f"merge{k}", Conv3x3(b, b))
        for k in (4, 3, 2, 1):
            self.add_module(f"disp{k}", nn.Sequential(Conv3x3(b, 1), DispSigmoid(sigmoid_grad_floor)))

    def forward(self, features: Sequence[Tensor]) -> dict[int, Tensor]:
        _check_features(features, self.num_ch_enc, "FeatDepthDecoder")
        _, f1, f2, f3, f4 = features
        f4 = self.dropout(f4)
        f3 = self.dropout(f3)
        skips = {4: f4, 3: f3, 2: f2, 1: f1}

        outputs: dict[int, Tensor] = {}
        x: Tensor | None = None
        disp: Tensor | None = None
        for k in (4, 3, 2, 1):
            y = getattr(self, f"reduce{k}")(skips[k])
            if x is not None and disp is not None:
                y = torch.cat((y, x, disp), dim=1)
            y = F.leaky_relu(getattr(self, f"iconv{k}")(y), negative_slope=0.01)
            y = getattr(self, f"crp{k}")(y)
            y = F.leaky_relu(getattr(self, f"merge{k}")(y), negative_slope=0.01)
            x = upsample(y)
            disp = getattr(self, f"disp{k}")(x)
            outputs[k - 1] = disp
        return {s: outputs[s] for s in sorted(outputs)}


class MonoDepth2Decoder(nn.Module):
    """monodepth2-style decoder: ConvBlocks, nearest ×2 upsampling, skip concatenation.

    Args:
        num_ch_enc: channels of ``f0..f4``.
        scales: output scales (subset of 0..3).
        use_skips: concatenate encoder features after each upsampling.
        sigmoid_grad_floor: see :func:`~featdepth.models.layers.disp_sigmoid` (0: the plain sigmoid).

    For level ``i`` = 4..0: ``x = upconv{i}_0(x)`` (ConvBlock to ``num_ch_dec[i]``, with
    ``num_ch_dec = (16, 32, 64, 128, 256)``), ``x = up(x)``, concatenate ``f_{i-1}`` (if ``use_skips``
    and ``i > 0``), ``x = upconv{i}_1(x)``; for ``i`` in ``scales``: ``disp = sigmoid(dispconv{i}(x))``.

    Submodules: ``upconv{i}_0``, ``upconv{i}_1`` (:class:`ConvBlock`), ``dispconv{s}`` (:class:`Conv3x3`).

    Output: ``{0: (B,1,H,W), 1: (B,1,H/2,W/2), 2: (B,1,H/4,W/4), 3: (B,1,H/8,W/8)}`` (the requested scales).
    """

    def __init__(self, num_ch_enc: Sequence[int], scales: Sequence[int] = (0, 1, 2, 3), use_skips: bool = True,
                 sigmoid_grad_floor: float = 0.0) -> None:
        super().__init__()
        self.num_ch_enc = _check_num_ch_enc(num_ch_enc)
        self.scales = tuple(sorted(int(s) for s in scales))
        if not self.scales or any(s not in (0, 1, 2, 3) for s in self.scales):
            raise ValueError(f"scales must be a non-empty subset of (0, 1, 2, 3), got {tuple(scales)}")
        self.use_skips = bool(use_skips)
        self.sigmoid_grad_floor = float(sigmoid_grad_floor)
        self.num_ch_dec = (16, 32, 64, 128, 256)
        self.scale_strides: dict[int, int] = {s: 2**s for s in self.scales}

        for i in range(4, -1, -1):
            c_in = self.num_ch_enc[4] if i == 4 else self.num_ch_dec[i + 1]
            self.add_module(f"upconv{i}_0", ConvBlock(c_in, self.num_ch_dec[i]))
            c_in = self.num_ch_dec[i] + (self.num_ch_enc[i - 1] if self.use_skips and i > 0 else 0)
            self.add_module(f"upconv{i}_1", ConvBlock(c_in, self.num_ch_dec[i]))
        for s in self.scales:
            self.add_module(f"dispconv{s}", Conv3x3(self.num_ch_dec[s], 1))

    def forward(self, features: Sequence[Tensor]) -> dict[int, Tensor]:
        _check_features(features, self.num_ch_enc, "MonoDepth2Decoder")
        outputs: dict[int, Tensor] = {}
        x = features[4]
        for i in range(4, -1, -1):
            x = upsample(getattr(self, f"upconv{i}_0")(x))
            if self.use_skips and i > 0:
                x = torch.cat((x, features[i - 1]), dim=1)
            x = getattr(self, f"upconv{i}_1")(x)
            if i in self.scales:
                outputs[i] = disp_sigmoid(getattr(self, f"dispconv{i}")(x), self.sigmoid_grad_floor)
        return {s: outputs[s] for s in sorted(outputs)}


#: Registry of depth decoders, keyed by the config name.
DECODERS: dict[str, type[nn.Module]] = {"featdepth": FeatDepthDecoder, "monodepth2": MonoDepth2Decoder}
