"""featdepth.models: encoders, depth/pose/feature networks and their building blocks."""

from featdepth.models.depth_decoders import DECODERS, FeatDepthDecoder, MonoDepth2Decoder
from featdepth.models.depth_net import DepthNet
from featdepth.models.encoders import ENCODER_CHOICES, ResnetEncoder, build_encoder, resolve_num_layers
from featdepth.models.feature_net import FeatureDecoder, FeatureNet
from featdepth.models.layers import (
    Conv1x1,
    Conv3x3,
    ConvBlock,
    CRPBlock,
    check_image_batch,
    check_input_size,
    depth_to_disp,
    disp_to_depth,
    normalize_image,
    upsample,
)
from featdepth.models.pose_net import PoseDecoder, PoseNet

__all__ = [
    "DECODERS",
    "ENCODER_CHOICES",
    "Conv1x1",
    "Conv3x3",
    "ConvBlock",
    "CRPBlock",
    "DepthNet",
    "FeatDepthDecoder",
    "FeatureDecoder",
    "FeatureNet",
    "MonoDepth2Decoder",
    "PoseDecoder",
    "PoseNet",
    "ResnetEncoder",
    "build_encoder",
    "check_image_batch",
    "check_input_size",
    "depth_to_disp",
    "disp_to_depth",
    "normalize_image",
    "resolve_num_layers",
    "upsample",
]
