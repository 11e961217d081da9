"""DepthNet: ResNet encoder + depth decoder, image in ``[0, 1]`` -> multi-scale sigmoid disparity.

State-dict layout: ``encoder.encoder.*`` (torchvision names) and ``decoder.*`` (see
:mod:`featdepth.models.depth_decoders`); an official ``mono_fm`` checkpoint maps by renaming the
prefixes ``DepthEncoder.`` -> ``encoder.`` and ``DepthDecoder.`` -> ``decoder.``.
"""

from __future__ import annotations

from torch import Tensor, nn

from featdepth.models.depth_decoders import DECODERS
from featdepth.models.encoders import WeightsSpec, build_encoder
from featdepth.models.layers import check_image_batch, check_input_size, normalize_image

__all__ = ["DepthNet"]


class DepthNet(nn.Module):
    """Monocular depth network.

    Args:
        num_layers: ResNet depth of the encoder (18, 34, 50, 101; the paper uses 50).
        decoder: ``"featdepth"`` (CRP decoder, scales at H/2..H/16) or ``"monodepth2"`` (H..H/8).
        weights: encoder init: ``None``, ``"imagenet"`` or a local torchvision state-dict path.
        sigmoid_grad_floor: training-only floor on the disparity sigmoid's derivative
            (:func:`~featdepth.models.layers.disp_sigmoid`; 0, the default, is the paper's sigmoid).

    Input: ``image`` ``(B,3,H,W)`` in ``[0,1]``; H and W must be multiples of 32 and at least 64
    (``ValueError`` naming the value otherwise). It is normalised with ``(x - 0.45) / 0.225`` inside.

    Output: ``{scale: disp}``, ``disp`` of shape ``(B,1,H/stride,W/stride)`` in ``(0,1)`` with
    ``stride = scale_strides[scale]`` (``{0:2,1:4,2:8,3:16}`` for the FeatDepth decoder).
    Convert with :func:`featdepth.models.layers.disp_to_depth`.
    """

    def __init__(self, num_layers: int = 50, decoder: str = "featdepth", weights: WeightsSpec = None,
                 sigmoid_grad_floor: float = 0.0) -> None:
        super().__init__()
        if decoder not in DECODERS:
            raise ValueError(f"unknown depth decoder {decoder!r}; choices are: {', '.join(DECODERS)}")
        self.decoder_name = decoder
        self.encoder = build_encoder(num_layers, num_input_images=1, weights=weights)
        self.decoder = DECODERS[decoder](self.encoder.num_ch_enc, sigmoid_grad_floor=sigmoid_grad_floor)

    @property
    def scale_strides(self) -> dict[int, int]:
        """``{scale: stride}``: the disparity at ``scale`` has size ``(H/stride, W/stride)``."""
        return dict(self.decoder.scale_strides)

    @property
    def num_scales(self) -> int:
        """Number of output scales (4)."""
        return len(self.decoder.scale_strides)

    def forward(self, image: Tensor) -> dict[int, Tensor]:
        check_image_batch(image, 3, "DepthNet input image")
        check_input_size(image.shape[-2], image.shape[-1], what="DepthNet input", min_size=64)
        features = self.encoder(normalize_image(image))
        return self.decoder(features)
