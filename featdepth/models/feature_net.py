"""FeatureNet (the paper's "autoencoder", docs/method.md §1.2): ResNet encoder + plain RGB decoder.

The encoder's ``f0`` (conv1 + BN + ReLU: 64 channels at H/2) is the feature map the
feature-metric loss warps. State-dict layout: ``encoder.encoder.*`` and
``decoder.{upconv5..upconv1, iconv5..iconv1}.conv.conv.*``, ``decoder.disp4..disp1.conv.*``; an
official autoencoder checkpoint maps by renaming ``Encoder.`` -> ``encoder.`` and ``Decoder.`` ->
``decoder.`` (and a ``mono_fm`` extractor by ``extractor.`` -> ``encoder.``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from featdepth.models.encoders import WeightsSpec, build_encoder
from featdepth.models.layers import Conv3x3, ConvBlock, check_image_batch, check_input_size, upsample

__all__ = ["FeatureDecoder", "FeatureNet"]


class FeatureDecoder(nn.Module):
    """Plain decoder from ``f4`` only (no skips) to multi-scale RGB reconstructions.

    Args:
        num_ch_enc: encoder channels ``[c0..c4]`` (only ``c4`` is used).
        num_ch_dec: decoder widths ``(16, 32, 64, 128, 256)`` for levels 1..5.
        num_output_channels: 3 (RGB).

    For level ``k`` = 5..1: ``x = iconv{k}(up(upconv{k}(x)))`` (ConvBlocks: reflection-pad 3×3 + ELU),
    starting from ``f4`` at H/32. Output scale ``s`` = ``sigmoid(disp{s+1}(x))`` after level ``s+1``
    (``disp4``..``disp1`` are :class:`Conv3x3` heads, names as in the official checkpoints).

    Output: ``{0: (B,3,H,W), 1: (B,3,H/2,W/2), 2: (B,3,H/4,W/4), 3: (B,3,H/8,W/8)}`` in ``(0,1)``,
    where ``H = 32 h4`` for an ``f4`` of height ``h4``.
    """

    scale_strides: dict[int, int] = {0: 1, 1: 2, 2: 4, 3: 8}

    def __init__(
        self,
        num_ch_enc: Sequence[int],
        num_ch_dec: Sequence[int] = (16, 32, 64, 128, 256),
        num_output_channels: int = 3,
    ) -> None:
        super().__init__()
        self.num_ch_enc = [int(c) for c in num_ch_enc]
        self.num_ch_dec = tuple(int(c) for c in num_ch_dec)
        if len(self.num_ch_dec) != 5:
            raise ValueError(f"num_ch_dec must have 5 entries, got {tuple(num_ch_dec)}")
        self.scale_strides = dict(FeatureDecoder.scale_strides)
        dec = self.num_ch_dec
        for k in (5, 4, 3, 2, 1):
            c_in = self.num_ch_enc[-1] if k == 5 else dec[k]
            self.add_module(f"upconv{k}", ConvBlock(c_in, dec[k - 1]))
        for k in (5, 4, 3, 2, 1):
            self.add_module(f"iconv{k}", ConvBlock(dec[k - 1], dec[k - 1]))
        for k in (4, 3, 2, 1):
            self.add_module(f"disp{k}", Conv3x3(dec[k - 1], num_output_channels))

    def forward(self, features: Sequence[Tensor]) -> dict[int, Tensor]:
        last = features[-1]
        if last.dim() != 4 or last.shape[1] != self.num_ch_enc[-1]:
            raise ValueError(
                f"FeatureDecoder expects the last feature with shape (B, {self.num_ch_enc[-1]}, h, w), "
                f"got {tuple(last.shape)}"
            )
        outputs: dict[int, Tensor] = {}
        x = last
        for k in (5, 4, 3, 2, 1):
            x = getattr(self, f"iconv{k}")(upsample(getattr(self, f"upconv{k}")(x)))
            if k <= 4:
                outputs[k - 1] = torch.sigmoid(getattr(self, f"disp{k}")(x))
        return {s: outputs[s] for s in sorted(outputs)}


class FeatureNet(nn.Module):
    """FeatureNet: ResNet encoder on the **raw** ``[0,1]`` image plus :class:`FeatureDecoder`.

    Args:
        num_layers: ResNet depth (50 in the paper).
        weights: encoder init: ``None``, ``"imagenet"`` or a local torchvision state-dict path.
        feature_level: pyramid level returned by :meth:`extract` (0 = conv1 features, 64 ch, H/2,
            the paper's choice).

    No normalisation is applied (as in the official code).
    """

    def __init__(self, num_layers: int = 50, weights: WeightsSpec = None, feature_level: int = 0) -> None:
        super().__init__()
        if feature_level not in (0, 1, 2, 3, 4):
            raise ValueError(f"feature_level must be one of 0..4, got {feature_level!r}")
        self.feature_level = int(feature_level)
        self.encoder = build_encoder(num_layers, num_input_images=1, weights=weights)
        self.decoder = FeatureDecoder(self.encoder.num_ch_enc)

    @property
    def feature_channels(self) -> int:
        """Channels of the map returned by :meth:`extract` (64 for level 0)."""
        return self.encoder.num_ch_enc[self.feature_level]

    @property
    def feature_stride(self) -> int:
        """Downsampling of the map returned by :meth:`extract`: ``2 ** (feature_level + 1)``."""
        return 2 ** (self.feature_level + 1)

    def encode(self, image: Tensor) -> list[Tensor]:
        """``(B,3,H,W)`` in ``[0,1]`` -> ``[f0..f4]`` (see :class:`~featdepth.models.encoders.ResnetEncoder`)."""
        check_image_batch(image, 3, "FeatureNet input image")
        return self.encoder(image)

    def decode(self, features: Sequence[Tensor]) -> dict[int, Tensor]:
        """``[f0..f4]`` -> ``{scale: (B,3,H/2**scale,W/2**scale)}`` RGB reconstructions in ``(0,1)``."""
        return self.decoder(features)

    def extract(self, image: Tensor) -> Tensor:
        """The feature map for the feature-metric loss: ``(B, feature_channels, H/stride, W/stride)``.

        Level 0 (default): ``relu(bn1(conv1(image)))``, ``(B,64,H/2,W/2)``. Only the layers needed
        for the requested level are run.
        """
        check_image_batch(image, 3, "FeatureNet input image")
        enc = self.encoder.encoder
        x = enc.relu(enc.bn1(enc.conv1(image)))
        if self.feature_level == 0:
            return x
        x = enc.maxpool(x)
        for layer in (enc.layer1, enc.layer2, enc.layer3, enc.layer4)[: self.feature_level]:
            x = layer(x)
        return x

    def forward(self, image: Tensor) -> tuple[list[Tensor], dict[int, Tensor]]:
        """``(B,3,H,W)`` in ``[0,1]`` (H, W multiples of 32, at least 64) -> ``(features [f0..f4], reconstructions)``."""
        check_image_batch(image, 3, "FeatureNet input image")
        check_input_size(image.shape[-2], image.shape[-1], what="FeatureNet input", min_size=64)
        features = self.encode(image)
        return features, self.decode(features)
