"""The networks of one training stage, built from a config: what a checkpoint's ``model`` state holds.

=============  =====================================================================
stage          networks
=============  =====================================================================
``featurenet``  FeatureNet (encoder + decoder)
``depth``       DepthNet, PoseNet (if temporal frames), FeatureNet encoder (frozen)
``joint``       DepthNet, PoseNet (if temporal frames), FeatureNet (trained)
``baseline``    DepthNet, PoseNet (if temporal frames)
=============  =====================================================================

State-dict keys are ``depth_net.*``, ``pose_net.*`` and ``feature_net.*``. The training system
(:class:`featdepth.training.system.FeatDepthSystem`) extends this module with the objective; the official
checkpoint converter builds it alone to know the target keys.
"""

from __future__ import annotations

from torch import nn

from featdepth.config import Config
from featdepth.models.depth_net import DepthNet
from featdepth.models.feature_net import FeatureNet
from featdepth.models.pose_net import PoseNet

STAGES = ("featurenet", "depth", "joint", "baseline")


class StageNetworks(nn.Module):
    """DepthNet, PoseNet and FeatureNet as one training stage uses them (absent ones are ``None``)."""

    def __init__(self, cfg: Config, stage: str | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.stage = stage or cfg.train.stage
        if self.stage not in STAGES:
            raise ValueError(f"stage must be one of {', '.join(STAGES)}, got {self.stage!r}")
        m = cfg.model
        self.frame_ids = list(cfg.data.frame_ids) if self.stage != "featurenet" else [0]
        self.temporal_frames = [f for f in self.frame_ids[1:] if f != "s"]
        self.depth_net: DepthNet | None = None
        self.pose_net: PoseNet | None = None
        self.feature_net: FeatureNet | None = None
        if self.stage != "featurenet":
            self.depth_net = DepthNet(num_layers=m.depth_layers, decoder=m.depth_decoder, weights=m.depth_weights,
                                      sigmoid_grad_floor=m.disp_grad_floor)
            if self.temporal_frames:
                size = tuple(m.pose_input_size) if m.pose_input_size else None
                self.pose_net = PoseNet(num_layers=m.pose_layers, input_size=size, weights=m.pose_weights,
                                       output_scale=m.pose_output_scale,
                               rotation_scale=m.pose_rotation_scale, zero_init=m.pose_zero_init)
        if self.stage in ("featurenet", "depth", "joint"):
            self.feature_net = FeatureNet(num_layers=m.feature_layers, weights=m.feature_weights, feature_level=m.feature_level)
        if self.stage == "depth":
            assert self.feature_net is not None
            self.feature_net.decoder = None  # only the encoder is needed as the frozen extractor
            for p in self.feature_net.parameters():
                p.requires_grad_(False)
