"""Running trained networks over whole sequences: disparities, relative poses, and the evaluation of
both on folder-format sequences with ground truth (the synthetic data, or a user's)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor

from featdepth.geometry import pose_from_axis_angle_translation
from featdepth.models.layers import disp_to_depth


@torch.no_grad()
def predict_disparity(system: Any, images: Tensor, *, batch_size: int = 8, device: torch.device | str = "cpu") -> Tensor:
    """Finest-scale sigmoid disparity for ``images`` ``(N,3,H,W)`` in [0,1] -> ``(N,1,h,w)`` on the CPU."""
    was = system.training
    system.eval()
    try:
        out = []
        for i in range(0, images.shape[0], batch_size):
            x = images[i : i + batch_size].to(device)
            out.append(system.predict_disparities(x)[0].float().cpu())
        return torch.cat(out)
    finally:
        system.train(was)


@torch.no_grad()
def predict_relative_poses(system: Any, images: Tensor, *, batch_size: int = 8, device: torch.device | str = "cpu") -> np.ndarray:
    """``T_{i+1<-i}`` (maps frame-i points into frame i+1) for consecutive frames -> ``(N-1,4,4)`` float64.

    PoseNet sees (earlier, later) = (i, i+1), so no inversion is needed (spec §1.4).
    """
    if system.pose_net is None:
        raise ValueError("this model has no PoseNet (stereo-only training)")
    was = system.training
    system.eval()
    try:
        out = []
        for i in range(0, images.shape[0] - 1, batch_size):
            j = min(i + batch_size, images.shape[0] - 1)
            a = images[i:j].to(device)
            b = images[i + 1 : j + 1].to(device)
            aa, t = system.pose_net(a, b)
            out.append(pose_from_axis_angle_translation(aa.float(), t.float()).cpu().double())
        return torch.cat(out).numpy() if out else np.zeros((0, 4, 4))
    finally:
        system.train(was)


@dataclass
class SequenceData:
    name: str
    images: Tensor  # (N,3,H,W) at the network size
    depths: list[np.ndarray]  # GT depth at the stored size (empty if none)
    poses: np.ndarray | None  # (N,4,4) T_world_cam
    regions: list[np.ndarray] = field(default_factory=list)


def load_folder_sequence(root: str | Path, name: str, height: int, width: int) -> SequenceData:
    """All frames of one folder-format sequence, resized for the network, with GT where present."""
    from featdepth.data import FolderDataset
    from featdepth.data.io import read_kitti_poses

    seq = Path(root) / name
    load_depth = (seq / "depth").is_dir()
    load_regions = (seq / "regions").is_dir()
    ds = FolderDataset(root, [0], height, width, is_train=False, sequences=[name], load_depth=load_depth, load_regions=load_regions)
    images, depths, regions = [], [], []
    for i in range(len(ds)):
        s = ds[i]
        images.append(s["color"][0])
        if load_depth:
            depths.append(s["depth_gt"][0].numpy())
        if load_regions:
            regions.append(s["regions"][0].numpy())
    poses = read_kitti_poses(seq / "poses.txt") if (seq / "poses.txt").is_file() else None
    return SequenceData(name, torch.stack(images), depths, poses, regions)


def evaluate_sequences(system: Any, root: str | Path, names: Sequence[str], *, height: int, width: int,
                       device: torch.device | str = "cpu", max_depth: float = 80.0) -> dict[str, Any]:
    """Depth (per-image median scaling, ``1e-3 < gt < max_depth``, no crop) and 5-frame ATE on held-out sequences.

    The range mask excludes the far background of the synthetic scenes, stored at exactly ``max_depth``
    (not a measurement: a network cannot be right or wrong about it).

    Returns a dict with ``depth`` (metric means), ``ate5`` and ``ate5_std``, ``zero_motion_ate5``
    (the ATE of predicting no motion at all), and per-sequence predicted/GT trajectories.
    """
    from featdepth.evaluation.depth_metrics import evaluate_depth
    from featdepth.evaluation.pose_metrics import snippets_from_relative_poses
    from featdepth.evaluation.trajectory import chain_relative_poses, relative_poses_from_absolute

    m = system.cfg.model
    gts, preds, ates, zero_ates = [], [], [], []
    trajectories: dict[str, dict[str, np.ndarray]] = {}
    for name in names:
        seq = load_folder_sequence(root, name, height, width)
        if seq.depths:
            disp = predict_disparity(system, seq.images, device=device)
            _, depth = disp_to_depth(disp, m.min_depth, m.max_depth)
            gts.extend(seq.depths)
            preds.extend(d[0].numpy() for d in depth)
        if seq.poses is not None and system.pose_net is not None and len(seq.poses) > 1:
            rel_gt = relative_poses_from_absolute(seq.poses)
            rel_pred = predict_relative_poses(system, seq.images, device=device)
            ates.extend(snippets_from_relative_poses(rel_gt, rel_pred))
            zero_ates.extend(snippets_from_relative_poses(rel_gt, np.broadcast_to(np.eye(4), rel_gt.shape).copy()))
            trajectories[name] = {"gt": seq.poses, "pred": chain_relative_poses(rel_pred)}
    result: dict[str, Any] = {"trajectories": trajectories}
    if preds:
        res = evaluate_depth(gts, preds, protocol="uncropped", scaling="median", max_depth=max_depth)
        result["depth"] = dict(res.metrics)
        result["depth_ratio"] = res.ratio_median
    if ates:
        result["ate5"] = float(np.mean(ates))
        result["ate5_std"] = float(np.std(ates))
        result["zero_motion_ate5"] = float(np.mean(zero_ates))
    return result
