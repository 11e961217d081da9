"""PoseNet: two frames -> axis-angle rotation and translation (docs/method.md §1.4).

State-dict layout: ``encoder.encoder.*`` (torchvision names, ``conv1`` with 6 input channels) and
``decoder.{reduce,conv1,conv2,conv3}.{weight,bias}``; an official checkpoint maps by renaming the
prefixes ``PoseEncoder.`` -> ``encoder.`` and ``PoseDecoder.`` -> ``decoder.``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from featdepth.models.encoders import WeightsSpec, build_encoder
from featdepth.models.layers import check_image_batch, check_input_size, normalize_image

__all__ = ["PoseDecoder", "PoseNet"]


class PoseDecoder(nn.Module):
    """Pose head on the last encoder level.

    ``reduce`` (1×1, ``c4 -> 256``, bias) + ReLU, ``conv1`` (3×3) + ReLU, ``conv2`` (3×3) + ReLU,
    ``conv3`` (1×1, ``256 -> 6``), mean over H and W, times ``output_scale`` (0.01); the three rotation
    outputs are multiplied by ``rotation_scale`` instead when it is given.

    Args:
        num_ch_enc: encoder channels ``[c0..c4]``; only ``c4`` is used (512 for ResNet-18).
        output_scale: factor on the averaged output (0.01 in the paper).
        rotation_scale: factor on the rotation part only; ``None`` (the paper) = ``output_scale``.
        zero_init: start ``conv3`` at zero weights and bias, so that an untrained network predicts the identity
            motion for every pair (default ``False``: PyTorch's initialisation, as the paper).

    Input: ``[f0..f4]`` (only ``f4`` ``(B,c4,h,w)`` is used).
    Output: ``(axis_angle (B,3), translation (B,3))``; the rotation angle is ``|axis_angle|`` in radians.
    """

    def __init__(self, num_ch_enc: Sequence[int], output_scale: float = 0.01,
                 rotation_scale: float | None = None, zero_init: bool = False) -> None:
        super().__init__()
        self.num_ch_enc = [int(c) for c in num_ch_enc]
        self.output_scale = float(output_scale)
        self.rotation_scale = self.output_scale if rotation_scale is None else float(rotation_scale)
        self.reduce = nn.Conv2d(self.num_ch_enc[-1], 256, kernel_size=1)
        self.conv1 = nn.Conv2d(256, 256, kernel_size=3, stride=1, padding=1)
        self.conv2 = nn.Conv2d(256, 256, kernel_size=3, stride=1, padding=1)
        self.conv3 = nn.Conv2d(256, 6, kernel_size=1)
        if zero_init:
            nn.init.zeros_(self.conv3.weight)
            nn.init.zeros_(self.conv3.bias)

    def forward(self, features: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
        last = features[-1]
        if last.dim() != 4 or last.shape[1] != self.num_ch_enc[-1]:
            raise ValueError(
                f"PoseDecoder expects the last feature with shape (B, {self.num_ch_enc[-1]}, h, w), "
                f"got {tuple(last.shape)}"
            )
        x = F.relu(self.reduce(last))
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        x = self.conv3(x)
        out = x.mean(dim=(2, 3))  # (B, 6)
        return out[:, :3] * self.rotation_scale, out[:, 3:] * self.output_scale


class PoseNet(nn.Module):
    """Relative pose between two frames.

    Args:
        num_layers: ResNet depth of the 2-image encoder (18 in the paper).
        input_size: ``(H, W)`` the frames are bilinearly resized to (``align_corners=False``) before
            the encoder; the paper hard-codes ``(192, 640)``. Both must be multiples of 32
            (checked here). ``None`` feeds the frames at their own size (then checked per call).
        weights: encoder init: ``None``, ``"imagenet"`` or a local torchvision state-dict path
            (``conv1`` is expanded to 6 channels as ``cat([w, w], 1) / 2``).

    Inputs: ``frame_earlier``, ``frame_later``: ``(B,3,H,W)`` in ``[0,1]``, same shape. They are
    stacked in that order along channels, resized, normalised with ``(x - 0.45) / 0.225``.
    Callers pass (earlier, later) in time: for a source ``f < 0`` that is ``(I_f, I_0)``, for ``f > 0``
    ``(I_0, I_f)``, and invert the resulting transform for ``f < 0`` (docs/method.md §1.4).

        output_scale: factor on the decoder's averaged output (0.01 in the paper; ``model.pose_output_scale``).
        rotation_scale: factor on the rotation part only (``model.pose_rotation_scale``); ``None`` = ``output_scale``.
        zero_init: the pose head starts at the identity motion (``model.pose_zero_init``).

    Output: ``(axis_angle (B,3), translation (B,3))``, scaled by ``output_scale`` in the decoder.
    """

    def __init__(
        self,
        num_layers: int = 18,
        input_size: tuple[int, int] | None = (192, 640),
        weights: WeightsSpec = None,
        output_scale: float = 0.01,
        rotation_scale: float | None = None,
        zero_init: bool = False,
    ) -> None:
        super().__init__()
        if input_size is not None:
            if len(input_size) != 2:
                raise ValueError(f"input_size must be (H, W), got {input_size!r}")
            check_input_size(input_size[0], input_size[1], what="PoseNet input_size")
            input_size = (int(input_size[0]), int(input_size[1]))
        self.input_size: tuple[int, int] | None = input_size
        self.encoder = build_encoder(num_layers, num_input_images=2, weights=weights)
        self.decoder = PoseDecoder(self.encoder.num_ch_enc, output_scale=output_scale,
                                   rotation_scale=rotation_scale, zero_init=zero_init)

    def prepare_input(self, frame_earlier: Tensor, frame_later: Tensor) -> Tensor:
        """Stack, resize and normalise the frames: returns the encoder input ``(B,6,h,w)``."""
        check_image_batch(frame_earlier, 3, "PoseNet frame_earlier")
        check_image_batch(frame_later, 3, "PoseNet frame_later")
        if frame_earlier.shape != frame_later.shape:
            raise ValueError(
                f"PoseNet frames must have the same shape, got {tuple(frame_earlier.shape)} and "
                f"{tuple(frame_later.shape)}"
            )
        x = torch.cat((frame_earlier, frame_later), dim=1)
        size = tuple(x.shape[-2:])
        if self.input_size is None:
            check_input_size(size[0], size[1], what="PoseNet input")
        elif size != self.input_size:
            x = F.interpolate(x, size=self.input_size, mode="bilinear", align_corners=False)
        return normalize_image(x)

    def forward(self, frame_earlier: Tensor, frame_later: Tensor) -> tuple[Tensor, Tensor]:
        return self.decoder(self.encoder(self.prepare_input(frame_earlier, frame_later)))
