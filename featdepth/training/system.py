"""The FeatDepth training system: networks + view synthesis + objective, for every stage.

Stages (``train.stage``):

- ``featurenet``: stage 1, FeatureNet alone (reconstruction, discriminative, convergent losses).
- ``depth``: stage 2, DepthNet + PoseNet with a frozen FeatureNet (the two-stage FeatDepth).
- ``joint``: DepthNet + PoseNet + FeatureNet trained together (``mono_fm_joint``).
- ``baseline``: DepthNet + PoseNet with the photometric loss only (monodepth2-style ablation).

The system knows nothing about the trainer: ``forward(batch)`` returns a
:class:`~featdepth.losses.objectives.LossOutput` and a dict of intermediate outputs for logging.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pathlib import Path

from featdepth.config import Config
from featdepth.inference.loading import model_config_from_checkpoint
from featdepth.inference.model import Model
from featdepth.utils.checkpoint_io import load_checkpoint
from featdepth.geometry import intrinsics_for_stride, invert_intrinsics, pose_from_axis_angle_translation, warp
from featdepth.losses.objectives import (
    DepthLossSettings,
    LossOutput,
    depth_objective,
    featurenet_objective,
    joint_objective,
)
from featdepth.models.layers import disp_to_depth
from featdepth.models.stage import StageNetworks


def _fold(x: Tensor) -> Tensor:
    """(S,B,...) -> (S*B,...)."""
    return x.reshape(x.shape[0] * x.shape[1], *x.shape[2:])


def _repeat(x: Tensor, times: int) -> Tensor:
    """(B,...) -> (times*B,...) matching :func:`_fold` order."""
    return x.unsqueeze(0).expand(times, *x.shape).reshape(times * x.shape[0], *x.shape[1:])


class FeatDepthSystem(StageNetworks):
    """All networks of one training stage and the computation of its objective."""

    def __init__(self, cfg: Config, stage: str | None = None) -> None:
        super().__init__(cfg, stage)
        lo = cfg.loss
        self.settings = DepthLossSettings(
            ssim_weight=lo.ssim_weight,
            robust_l1=lo.robust_l1,
            automask=cfg.automask,
            disp_norm=cfg.disp_norm,
            noise_std=lo.noise_std,
            smoothness_weight=lo.smoothness_weight,
            smoothness_edge_scale=lo.smoothness_edge_scale,
            second_order_smoothness=lo.second_order_smoothness,
            feature_metric_weight=lo.feature_metric_weight if self.stage in ("depth", "joint") else 0.0,
        )
        # auto-masking as at the end of training; the trainer switches it off before loss.automask_start_step
        self._automask_now = self.settings.automask
        self._unmasked_settings = dataclasses.replace(self.settings, automask=False)
        self.train()

    # -- modes ---------------------------------------------------------------------------
    def train(self, mode: bool = True) -> "FeatDepthSystem":
        super().train(mode)
        if self.stage == "depth" and self.feature_net is not None and self.cfg.loss.frozen_bn == "eval":
            self.feature_net.eval()  # the frozen extractor keeps fixed BN statistics (docs/method.md §7.7)
        return self

    def set_training_step(self, step: int) -> None:
        """Called by the trainer before each step: auto-masking starts at ``loss.automask_start_step``
        (docs/method.md §2.2). A bool, not the step, is what the forward reads, so a compiled step
        recompiles at most once."""
        self._automask_now = self.settings.automask and step >= self.cfg.loss.automask_start_step

    def automask_active(self) -> bool:
        """Whether the objective auto-masks now (auto-masking on, and its start step reached)."""
        return self._automask_now

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def load_feature_net(self, state: dict[str, Tensor], source: str = "checkpoint") -> None:
        """Load FeatureNet weights (keys as in ``feature_net.state_dict()``); decoder keys are ignored
        when the decoder is not used. Missing encoder keys are an error naming them."""
        if self.feature_net is None:
            raise ValueError(f"stage '{self.stage}' has no FeatureNet to load from {source}")
        own = self.feature_net.state_dict()
        picked = {k: v for k, v in state.items() if k in own}
        missing = sorted(set(own) - set(picked))
        if missing:
            raise ValueError(f"{source} lacks FeatureNet weights: {missing[:5]}{' ...' if len(missing) > 5 else ''}")
        self.feature_net.load_state_dict(picked, strict=True)

    def as_model(self, source: str = "<training system>", device: str | torch.device | None = None,
                 amp: str | None = None) -> Model:
        """The depth/pose networks of this system as the one trained-model type (shared, not copied)."""
        if self.depth_net is None:
            raise ValueError("a FeatureNet (stage 1) system has no depth network")
        return Model.from_networks(self.depth_net, self.pose_net, self.cfg, stage=self.stage, source=source,
                                   device=device, amp=amp)

    # -- prediction ----------------------------------------------------------------------
    def predict_disparities(self, image_aug: Tensor) -> dict[int, Tensor]:
        assert self.depth_net is not None
        return self.depth_net(image_aug)

    def predict_poses(self, color_aug: dict[Any, Tensor]) -> dict[Any, Tensor]:
        """``T_src_tgt`` (B,4,4) for every temporal source, from one batched PoseNet call.

        The network always sees (earlier, later); for sources before the target the transform is inverted.
        """
        if not self.temporal_frames:
            return {}
        assert self.pose_net is not None
        earlier, later, inverted = [], [], []
        for f in self.temporal_frames:
            if f < 0:
                earlier.append(color_aug[f])
                later.append(color_aug[0])
            else:
                earlier.append(color_aug[0])
                later.append(color_aug[f])
            inverted.append(f < 0)
        axis_angle, translation = self.pose_net(torch.cat(earlier), torch.cat(later))
        b = color_aug[0].shape[0]
        poses = {}
        for i, f in enumerate(self.temporal_frames):
            sl = slice(i * b, (i + 1) * b)
            poses[f] = pose_from_axis_angle_translation(axis_angle[sl], translation[sl], invert=inverted[i])
        return poses

    # -- objective -----------------------------------------------------------------------
    def forward(self, batch: dict[str, Any]) -> tuple[LossOutput, dict[str, Any]]:
        if self.stage == "featurenet":
            return self._forward_featurenet(batch)
        return self._forward_depth(batch)

    def _featurenet_loss(self, image: Tensor) -> tuple[LossOutput, list[Tensor], dict[int, Tensor]]:
        assert self.feature_net is not None
        features, recons = self.feature_net(image)
        lo = self.cfg.loss
        out = featurenet_objective(
            features,
            recons,
            image,
            discriminative_weight=lo.discriminative_weight,
            convergent_weight=lo.convergent_weight,
            ssim_weight=lo.ssim_weight,
        )
        return out, features, recons

    def _forward_featurenet(self, batch: dict[str, Any]) -> tuple[LossOutput, dict[str, Any]]:
        image = batch["color"][0]
        out, features, recons = self._featurenet_loss(image)
        level = self.cfg.model.feature_level
        return out, {"reconstructions": recons, "features": features[level]}

    def _forward_depth(self, batch: dict[str, Any]) -> tuple[LossOutput, dict[str, Any]]:
        color, color_aug = batch["color"], batch["color_aug"]
        target = color[0]
        b, _, h, w = target.shape
        K = batch["K"].float()
        inv_K = batch["inv_K"].float() if "inv_K" in batch else invert_intrinsics(K)
        sources = self.frame_ids[1:]
        n_src = len(sources)

        # Disparities in float32 even under autocast: the smoothness terms and depth need the precision.
        disps_dict = {s: d.float() for s, d in self.predict_disparities(color_aug[0]).items()}
        scales = sorted(disps_dict)
        disps = [disps_dict[s] for s in scales]
        poses = self.predict_poses(color_aug)
        if "s" in sources:
            poses["s"] = batch["stereo_T"].float()
        src_images = torch.stack([color[f] for f in sources])  # (S,B,3,H,W)
        T = _fold(torch.stack([poses[f] for f in sources]))  # (S*B,4,4)
        K_rep, inv_K_rep = _repeat(K, n_src), _repeat(inv_K, n_src)
        src_folded = _fold(src_images)
        m, align = self.cfg.model, self.cfg.loss.align_corners

        warped = []
        depth0 = None
        for disp in disps:
            disp_full = disp if disp.shape[-2:] == (h, w) else F.interpolate(disp, (h, w), mode="bilinear", align_corners=False)
            _, depth = disp_to_depth(disp_full, m.min_depth, m.max_depth)
            if depth0 is None:
                depth0 = depth
            img = warp(src_folded, _repeat(depth, n_src), T, K_rep, inv_K_rep, align_corners=align, padding_mode="border")
            warped.append(img.reshape(n_src, b, *img.shape[1:]))

        feature_target = feature_warped = None
        featurenet_out = None
        if self.stage in ("depth", "joint"):
            assert self.feature_net is not None
            stride = self.feature_net.feature_stride
            all_images = torch.cat([target, src_folded])
            if self.stage == "depth":
                with torch.no_grad():
                    feats = self.feature_net.extract(all_images)
            else:
                feats = self.feature_net.extract(all_images)
            # float32 once: under bf16 autocast the FeatureNet's output is bf16, and the warp (float32
            # sampling) and the feature-metric error (float32 math) would otherwise convert these 64-channel
            # maps back and forth per source (and round the warped features to bf16 in between). The target
            # also leaves channels_last: the warped features come out of grid_sample in NCHW, and the error
            # between an NCHW and a channels_last map costs about 1.6x that of two NCHW maps (measured on CPU).
            # Values are unchanged in float32 (a copy at most).
            feature_target = feats[:b].to(torch.float32, memory_format=torch.contiguous_format)
            src_feats = feats[b:].float()
            hf, wf = feats.shape[-2:]
            disp0 = disps[0]
            if disp0.shape[-2:] != (hf, wf):
                disp0 = F.interpolate(disp0, (hf, wf), mode="bilinear", align_corners=False)
            _, depth_f = disp_to_depth(disp0, m.min_depth, m.max_depth)
            K_f = intrinsics_for_stride(K, stride)
            fw = warp(
                src_feats,
                _repeat(depth_f, n_src),
                T,
                _repeat(K_f, n_src),
                _repeat(invert_intrinsics(K_f), n_src),
                align_corners=align,
                padding_mode="border",
            )
            feature_warped = fw.reshape(n_src, b, *fw.shape[1:])
            if self.stage == "joint":
                featurenet_out, _, _ = self._featurenet_loss(target)

        out = depth_objective(
            # NCHW like the warped images (grid_sample's output): a channels_last target (the trainer's
            # batches on CPU/CUDA in float32) makes every loss op mix layouts (~15 % slower losses, measured)
            target.contiguous(),
            warped,
            disps,
            self.settings if self._automask_now else self._unmasked_settings,
            sources=src_images if self._automask_now else None,
            feature_target=feature_target,
            feature_warped=feature_warped,
        )
        if featurenet_out is not None:
            out = joint_objective(out, featurenet_out)
        outputs = {
            "disp": disps_dict,
            "depth": depth0,
            "poses": poses,
            "warped": {f: warped[0][i] for i, f in enumerate(sources)},
        }
        if feature_target is not None:
            outputs["features"] = feature_target
        if "automask" in out.extras:
            outputs["automask"] = out.extras["automask"]
        return out, outputs


def load_system(checkpoint: str | Path, device: str | torch.device = "cpu") -> FeatDepthSystem:
    """Rebuild the training system of a featdepth checkpoint (for online refinement and experiments that
    need the objective, not only the networks). Pretrained-weight settings are dropped: the checkpoint holds
    the weights. The system is put in ``eval()``.

    Raises:
        CheckpointError: unreadable file. ValueError: not a featdepth training checkpoint, a FeatureNet-only
            checkpoint, or weights that do not fit the stored config (the message names the file).
    """
    path = Path(checkpoint)
    state = load_checkpoint(path, map_location="cpu")
    cfg, stage = model_config_from_checkpoint(state, str(path))
    system = FeatDepthSystem(cfg, stage=stage)
    try:
        system.load_state_dict(state["model"], strict=True)
    except RuntimeError as exc:
        raise ValueError(f"{path}: the weights do not match the stored config ({str(exc)[:400]})") from exc
    step = state.get("step")
    system.checkpoint_step = int(step) if step is not None else None
    return system.to(device).eval()
