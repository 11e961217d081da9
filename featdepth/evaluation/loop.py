"""The one evaluation loop: a :class:`~featdepth.inference.model.Model` over images with ground truth.

Used by the trainer's validation, the demo, ``featdepth evaluate`` and the experiments, so that every
number the package reports goes through the same path:

- **depth**: the network's finest-scale disparity at the training size (optionally with the flip
  post-processing of docs/method.md §4.1) -> scaled disparity ``disp_to_depth(disp)[0]`` -> resized to
  the ground truth's size, then inverted (the standard protocol) -> scaling (per-image median, a fixed
  factor, none, or ``"camera-height"``: the metric scale recovered per image from the predicted depth and the
  known camera height, without any ground truth) -> the metrics of :mod:`featdepth.evaluation.depth_metrics`, averaged over images;
- **pose**: PoseNet on consecutive frames -> ``T_{i+1<-i}`` -> 5-frame ATE (and the ATE of predicting no
  motion at all, the floor a model must beat), the KITTI devkit errors over the whole trajectory
  (t_err %, r_err deg/100 m) where it is long enough, and the chained trajectory.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch
from torch import Tensor

from featdepth.data import FolderDataset, synthetic
from featdepth.data.folder import generator_meta
from featdepth.data.io import read_kitti_poses
from featdepth.evaluation.depth_metrics import DepthEvalResult, evaluate_depth, post_process_disparity
from featdepth.evaluation.pose_metrics import (
    KITTI_SEGMENT_LENGTHS,
    kitti_odometry_errors,
    rotation_response,
    snippets_from_relative_poses,
    yaw_deg,
)
from featdepth.evaluation.trajectory import chain_relative_poses, relative_poses_from_absolute
from featdepth.geometry import ScaleRecoveryResult, recover_scale_from_camera_height_batch
from featdepth.inference.model import Model
from featdepth.models.layers import disp_to_depth
from featdepth.utils.files import PathLike

# --------------------------------------------------------------------------------------------------
# prediction


def predict_scaled_disparities(model: Model, images: Tensor, *, batch_size: int = 8,
                               post_process: bool = False) -> np.ndarray:
    """Scaled disparity ``disp_to_depth(disp, min_depth, max_depth)[0]`` of the finest output scale.

    Args:
        model: the model (its networks are put in ``eval()`` for the call and restored afterwards).
        images: ``(N,3,H,W)`` float in ``[0,1]`` at the model's training size.
        post_process: also run the horizontally flipped images and blend the two
            (:func:`~featdepth.evaluation.depth_metrics.post_process_disparity`, docs/method.md §4.1).

    Returns:
        ``(N,h,w)`` float32 on the CPU (``h, w`` the finest decoder output).
    """
    m = model.config.model
    out: list[np.ndarray] = []
    with model.evaluating():
        for i in range(0, images.shape[0], batch_size):
            x = images[i : i + batch_size]
            b = x.shape[0]
            if post_process:
                x = torch.cat([x, torch.flip(x, dims=[3])])
            scaled, _ = disp_to_depth(model.disparity(x), m.min_depth, m.max_depth)
            arr = scaled[:, 0].cpu().numpy().astype(np.float32)
            if post_process:
                arr = post_process_disparity(arr[:b], arr[b:]).astype(np.float32)
            out.append(arr)
    return np.concatenate(out) if out else np.zeros((0, 0, 0), np.float32)


def predict_relative_poses(model: Model, images: Tensor, *, batch_size: int = 8) -> np.ndarray:
    """``T_{i+1<-i}`` (maps frame-i points into frame i+1) for consecutive frames.

    PoseNet sees (earlier, later) = (i, i+1), the order it was trained with, so no inversion is needed
    (docs/method.md §1.4).

    Args:
        images: ``(N,3,H,W)`` at the model's training size.

    Returns:
        ``(N-1,4,4)`` float64.
    """
    out = []
    with model.evaluating():
        for i in range(0, images.shape[0] - 1, batch_size):
            j = min(i + batch_size, images.shape[0] - 1)
            out.append(model.relative_pose(images[i:j], images[i + 1 : j + 1]).cpu().double())
    return torch.cat(out).numpy() if out else np.zeros((0, 4, 4))


def evaluate_rotation_response(model: Model, sequence: PathLike, *,
                               yaws_deg: Sequence[float] = (-4.0, -2.0, -1.0, 0.0, 1.0, 2.0, 4.0),
                               frames: Sequence[int] | None = None) -> dict[str, Any]:
    """Does the model's PoseNet respond to rotation? Renders, in the scene of a sequence written by the
    synthetic generator, pairs with a known extra turn (:func:`featdepth.data.synthetic.render_rotation_pairs`:
    0.9 m forward, then ``yaws_deg`` about the vertical axis) and fits predicted against true yaw
    (:func:`~featdepth.evaluation.pose_metrics.rotation_response`: slope 1 = rotation learned, 0 = ignored).
    The sequences' own turns can be too small to tell (docs/experiments.md, "Is rotation learned?").

    Returns the fit plus ``yaws_deg``, ``true_by_yaw`` and ``predicted_by_yaw`` (means over the frames, degrees).

    Raises:
        ValueError: the sequence was not written by the synthetic generator (the message names it).
    """
    meta = generator_meta(sequence)
    if meta is None:
        raise ValueError(f"{sequence}: not a sequence written by the synthetic generator (no generator meta.json)")
    config = synthetic.config_from_meta(meta)
    pairs = synthetic.render_rotation_pairs(config, yaws_deg, frames)
    a = torch.from_numpy(pairs["images_a"]).permute(0, 3, 1, 2).contiguous()
    b = torch.from_numpy(pairs["images_b"]).permute(0, 3, 1, 2).contiguous()
    if a.shape[-2:] != (model.height, model.width):
        a = torch.nn.functional.interpolate(a, (model.height, model.width), mode="bilinear", align_corners=False)
        b = torch.nn.functional.interpolate(b, (model.height, model.width), mode="bilinear", align_corners=False)
    pred = []
    with model.evaluating():
        for i in range(0, a.shape[0], 8):
            pred.append(model.relative_pose(a[i:i + 8].to(model.device), b[i:i + 8].to(model.device)).cpu().double())
    true_yaw = yaw_deg(pairs["T_b_a"])
    pred_yaw = yaw_deg(torch.cat(pred).numpy())
    out = rotation_response(true_yaw, pred_yaw)
    yaws = [float(y) for y in yaws_deg]
    per = pairs["yaw_deg"]
    out["yaws_deg"] = yaws
    out["true_by_yaw"] = [float(true_yaw[per == y].mean()) for y in yaws]
    out["predicted_by_yaw"] = [float(pred_yaw[per == y].mean()) for y in yaws]
    return out


# --------------------------------------------------------------------------------------------------
# depth

#: The scaling of :func:`evaluate_depth_batches` that recovers the metric scale from the camera height.
CAMERA_HEIGHT_SCALING = "camera-height"
#: Which recovered scale an image is evaluated with: its sequence's median (default) or its own.
CAMERA_HEIGHT_SCALE_MODES = ("sequence", "frame")


@dataclass
class CameraHeightInfo:
    """What ``scaling="camera-height"`` needs about the images of one batch (third item of a batch).

    Attributes:
        K: ``(B,3,3)`` pixel intrinsics of the batch's images at their size (the network's input size).
        camera_height: ``B`` camera heights above the ground, metres.
        sequence: ``B`` sequence names (rejected frames fall back to their sequence's median scale).
    """

    K: Tensor
    camera_height: Sequence[float]
    sequence: Sequence[str]


def _ratio_stats(values: Sequence[float]) -> dict[str, Any]:
    v = np.asarray(values, dtype=np.float64)
    if not v.size:
        return {"mean": None, "std": None, "num": 0}
    return {"mean": float(v.mean()), "std": float(v.std()), "num": int(v.size)}


def camera_height_scales(disps: np.ndarray, K: np.ndarray, heights: Sequence[float], sequences: Sequence[str],
                         height_from: str = "plane") -> tuple[np.ndarray, list[ScaleRecoveryResult], dict[str, Any]]:
    """Per-image metric scales of scaled disparities from the camera height (no ground truth).

    Each image's depth ``1 / disp`` (network units, at the network's resolution) gets its ground plane fitted
    (:func:`~featdepth.geometry.scale_recovery.recover_scale_from_camera_height_batch`) and ``scale =
    camera_height / predicted height``. A rejected image takes the median scale of its sequence's accepted
    images (or of all accepted images when its sequence has none).

    Args:
        disps: ``(N,h,w)`` scaled disparities.
        K: ``(N,3,3)`` pixel intrinsics at ``(h, w)``.
        heights, sequences: ``N`` camera heights (metres) and sequence names.
        height_from: ``"plane"`` or ``"level"`` (:mod:`featdepth.geometry.scale_recovery`, step 6).

    Returns:
        ``(scales (N,) used, per-image results, report)``; the report holds the counts, the rejected images
        and their reasons, and one entry per sequence (median scale, accepted / rejected, camera height).

    Raises:
        ValueError: no image at all has a usable ground plane (the message gives the first reasons).
    """
    with np.errstate(divide="ignore"):
        depth = torch.from_numpy((1.0 / np.asarray(disps, dtype=np.float64)).astype(np.float32)).unsqueeze(1)
    results = recover_scale_from_camera_height_batch(depth, torch.as_tensor(np.asarray(K), dtype=torch.float32),
                                                     [float(h) for h in heights], height_from=height_from)
    accepted = [r.scale for r in results if r.ok]
    if not accepted:
        shown = "; ".join(f"image {i} ({sequences[i]}): {r.reason}" for i, r in enumerate(results[:3]))
        raise ValueError(f"camera-height scaling: no ground plane found in any of the {len(results)} images ({shown})")
    overall = statistics.median(accepted)
    per_seq: dict[str, dict[str, Any]] = {}
    for name in dict.fromkeys(sequences):
        idx = [i for i, s in enumerate(sequences) if s == name]
        ok = [results[i].scale for i in idx if results[i].ok]
        per_seq[name] = {
            "scale": statistics.median(ok) if ok else overall,
            "num_accepted": len(ok),
            "num_rejected": len(idx) - len(ok),
            "relative_spread": statistics.median(abs(x - statistics.median(ok)) for x in ok) / statistics.median(ok)
            if ok else None,
            "camera_height": float(heights[idx[0]]),
            "fallback": None if ok else "no accepted image in this sequence: the median scale of all sequences",
        }
    scales = np.array([r.scale if r.ok else per_seq[sequences[i]]["scale"] for i, r in enumerate(results)])
    rejected = [{"index": i, "sequence": sequences[i], "reason": r.reason} for i, r in enumerate(results) if not r.ok]
    report = {
        "num_images": len(results),
        "height_from": height_from,
        "num_accepted": len(accepted),
        "num_rejected": len(rejected),
        "rejected_fallback": "the median scale of the image's sequence",
        "rejected": rejected,
        "per_sequence": per_seq,
        "scales": [float(x) for x in scales],
        "recovered": [float(r.scale) if r.ok else None for r in results],
    }
    return scales, results, report


def evaluate_depth_batches(
    model: Model,
    batches: Iterable[tuple[Tensor, Sequence[np.ndarray]]] | Iterable[tuple[Tensor, Sequence[np.ndarray], CameraHeightInfo]],
    *,
    protocol: str = "eigen",
    scaling: str | float | None = "median",
    min_depth: float = 1e-3,
    max_depth: float = 80.0,
    post_process: bool = False,
    batch_size: int = 8,
    max_images: int | None = None,
    on_batch: Any = None,
    camera_height_scale: str = "sequence",
    height_from: str = "plane",
) -> tuple[DepthEvalResult, np.ndarray]:
    """Predict every batch and evaluate it against its ground truth.

    Args:
        batches: ``(images (B,3,H,W) at the training size, B ground-truth maps (H_i,W_i) in metres)``, with a
            third item, a :class:`CameraHeightInfo`, for ``scaling="camera-height"``.
        protocol, scaling, min_depth, max_depth: see :func:`~featdepth.evaluation.depth_metrics.evaluate_depth`;
            ``scaling="camera-height"`` multiplies every image's depth by the scale recovered from its own
            predicted depth at the network's resolution, its intrinsics and the camera height
            (:func:`camera_height_scales`; rejected images: the sequence median) and evaluates with no further
            scaling. The result's ``scale_recovery`` then holds that report plus the median-scaled metrics of
            the same predictions and the mean and sd of ``recovered scale / median-scaling ratio``.
        camera_height_scale: with ``"camera-height"``: ``"sequence"`` (default) scales every image of a
            sequence by the median of its images' recovered scales, as ``featdepth predict --camera-height``
            does for a video; ``"frame"`` uses each image's own scale (rejected images: the sequence median).
            The report holds the metrics of both (``metrics_per_frame``, ``metrics_per_sequence``).
        height_from: with ``"camera-height"``: how the camera's height above the fitted ground is measured,
            ``"plane"`` (default) or ``"level"`` (:mod:`featdepth.geometry.scale_recovery`, step 6).
        max_images: stop after this many images.
        on_batch: called with the number of images predicted so far (progress).

    Returns:
        ``(result, scaled disparities (N,h,w))`` (for ``"camera-height"``: divided by each image's scale, i.e.
        the inverse of the metric depth that was evaluated).

    Raises:
        ValueError: no image with ground truth; ``"camera-height"`` without a :class:`CameraHeightInfo` per batch
            or without a single image with a ground plane.
    """
    by_height = isinstance(scaling, str) and scaling == CAMERA_HEIGHT_SCALING
    if camera_height_scale not in CAMERA_HEIGHT_SCALE_MODES:
        raise ValueError(f"camera_height_scale must be one of {', '.join(CAMERA_HEIGHT_SCALE_MODES)}, "
                         f"got {camera_height_scale!r}")
    gts: list[np.ndarray] = []
    preds: list[np.ndarray] = []
    Ks: list[np.ndarray] = []
    heights: list[float] = []
    seqs: list[str] = []
    for batch in batches:
        images, batch_gts = batch[0], batch[1]
        pred = predict_scaled_disparities(model, images, batch_size=batch_size, post_process=post_process)
        preds.append(pred)
        gts.extend(np.asarray(g, dtype=np.float32) for g in batch_gts)
        if by_height:
            info = batch[2] if len(batch) > 2 else None
            if not isinstance(info, CameraHeightInfo):
                raise ValueError("scaling='camera-height' needs the intrinsics and camera height of every image: "
                                 "batches of (images, gts, CameraHeightInfo)")
            K = np.asarray(info.K, dtype=np.float64).reshape(-1, 3, 3).copy()
            K[:, 0] *= pred.shape[-1] / images.shape[-1]  # to the decoder's output resolution
            K[:, 1] *= pred.shape[-2] / images.shape[-2]
            Ks.append(K)
            heights.extend(float(h) for h in info.camera_height)
            seqs.extend(str(s) for s in info.sequence)
        if on_batch is not None:
            on_batch(len(gts))
        if max_images and len(gts) >= max_images:
            break
    if not gts:
        raise ValueError("no image with ground-truth depth to evaluate")
    disps = np.concatenate(preds)[: len(gts)]
    gts = gts[: len(disps)]
    if not by_height:
        result = evaluate_depth(gts, disps, protocol=protocol, scaling=scaling, min_depth=min_depth,
                                max_depth=max_depth, preds_are_disparity=True)
        return result, disps
    n = len(disps)
    frame_scales, _, report = camera_height_scales(disps, np.concatenate(Ks)[:n], heights[:n], seqs[:n], height_from)
    seq_scales = np.array([report["per_sequence"][s]["scale"] for s in seqs[:n]], dtype=np.float64)
    median = evaluate_depth(gts, disps, protocol=protocol, scaling="median", min_depth=min_depth,
                            max_depth=max_depth, preds_are_disparity=True)
    by_mode: dict[str, tuple[DepthEvalResult, np.ndarray]] = {}
    for mode, sc in (("frame", frame_scales), ("sequence", seq_scales)):
        md = (disps / sc[:, None, None]).astype(np.float32)
        by_mode[mode] = (evaluate_depth(gts, md, protocol=protocol, scaling=None, min_depth=min_depth,
                                        max_depth=max_depth, preds_are_disparity=True), md)
    result, metric_disps = by_mode[camera_height_scale]
    scales = seq_scales if camera_height_scale == "sequence" else frame_scales
    result.scaling = CAMERA_HEIGHT_SCALING
    report["scale_mode"] = camera_height_scale
    report["scales_used"] = [float(x) for x in scales]
    report["metrics_per_frame"] = dict(by_mode["frame"][0].metrics)
    report["metrics_per_sequence"] = dict(by_mode["sequence"][0].metrics)
    ratio = frame_scales / median.ratios  # each image's recovered scale / median-scaling ratio, per image
    ok = np.array([r is not None for r in report["recovered"]])
    report["median_scaling"] = {"metrics": dict(median.metrics), "ratio_median": median.ratio_median,
                                "ratio_std": median.ratio_std, "ratios": [float(r) for r in median.ratios]}
    report["scale_over_median_ratio"] = _ratio_stats(ratio)
    report["accepted_scale_over_median_ratio"] = _ratio_stats(ratio[ok])
    result.scale_recovery = report
    return result, metric_disps


# --------------------------------------------------------------------------------------------------
# pose

#: Segment lengths (metres) of the KITTI devkit formula for trajectories shorter than its shortest, 100 m.
SHORT_SEGMENT_LENGTHS: tuple[float, ...] = (10.0, 20.0, 30.0, 40.0, 50.0)


def _kitti_errors(gt: np.ndarray, pred: np.ndarray, lengths: Sequence[float]) -> dict[str, Any]:
    try:
        return kitti_odometry_errors(gt, pred, align="scale", lengths=lengths)
    except ValueError:  # a degenerate prediction (no motion at all): the alignment scale is undefined
        return {"num_segments": 0}


def heading_error_deg(gt: np.ndarray, pred: np.ndarray) -> float:
    """Angle (degrees) between the ground-truth and the predicted camera orientation at the last frame of a
    trajectory, both relative to the first frame: whether the whole turn of a sequence was learned (ATE5
    looks at 5-frame snippets only). Scale-free.

    Args:
        gt, pred: ``(N,4,4)`` ``T_world_cam`` of the same frames.
    """
    r_gt = gt[0, :3, :3].T @ gt[-1, :3, :3]
    r_pred = pred[0, :3, :3].T @ pred[-1, :3, :3]
    cos = (np.trace(r_gt.T @ r_pred) - 1.0) / 2.0
    return float(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))


def evaluate_pose(model: Model, images: Tensor, gt_poses: np.ndarray, *, batch_size: int = 8) -> dict[str, Any]:
    """Pose metrics of one sequence.

    Args:
        images: ``(N,3,H,W)`` consecutive frames at the training size.
        gt_poses: ``(N,4,4)`` ground-truth ``T_world_cam``.

    Returns:
        ``ate5``/``ate5_std`` (metres, per 5-frame snippet, scale-aligned), ``zero_motion_ate5`` (the same for
        a prediction of no motion), ``ate5_per_snippet`` and ``zero_motion_per_snippet`` (arrays),
        ``t_err``/``r_err`` (KITTI devkit formula, %, deg/100 m, scale-aligned, over 100-800 m segments, or
        over 10-50 m segments for shorter trajectories (``segment_lengths`` says which); ``None`` when even
        those do not fit), ``heading_error_deg`` (orientation error at the last frame), ``rel_pred`` ``(N-1,4,4)`` and ``trajectory``
        ``{"gt", "pred"}`` (``(N,4,4)`` ``T_world_cam`` each). ``no_rotation_r_err`` and
        ``no_rotation_heading_error_deg``: the same two measures for a reference prediction with the true
        translations and no rotation at all: a model learned rotation only where it beats them (on a
        sequence that hardly turns, both are small and cannot show it).
    """
    gt_poses = np.asarray(gt_poses, dtype=np.float64)
    if len(gt_poses) != images.shape[0]:
        raise ValueError(f"{images.shape[0]} frames but {len(gt_poses)} ground-truth poses")
    rel_gt = relative_poses_from_absolute(gt_poses)
    rel_pred = predict_relative_poses(model, images, batch_size=batch_size)
    ates = snippets_from_relative_poses(rel_gt, rel_pred)
    zero = snippets_from_relative_poses(rel_gt, np.broadcast_to(np.eye(4), rel_gt.shape).copy())
    pred_traj = chain_relative_poses(rel_pred)
    kitti = _kitti_errors(gt_poses, pred_traj, KITTI_SEGMENT_LENGTHS)
    defined = kitti["num_segments"] > 0
    if not defined:  # shorter than 100 m (the synthetic sequences): the devkit formula on 10-50 m segments
        kitti = _kitti_errors(gt_poses, pred_traj, SHORT_SEGMENT_LENGTHS)
    short = kitti["num_segments"] > 0 and not defined
    rel_norot = rel_gt.copy()
    rel_norot[:, :3, :3] = np.eye(3)
    norot_traj = chain_relative_poses(rel_norot)
    norot = _kitti_errors(gt_poses, norot_traj, SHORT_SEGMENT_LENGTHS if short else KITTI_SEGMENT_LENGTHS)
    return {
        "ate5": float(np.mean(ates)) if len(ates) else float("nan"),
        "ate5_std": float(np.std(ates)) if len(ates) else float("nan"),
        "zero_motion_ate5": float(np.mean(zero)) if len(zero) else float("nan"),
        "ate5_per_snippet": np.asarray(ates),
        "zero_motion_per_snippet": np.asarray(zero),
        "t_err": float(kitti["t_err_percent"]) if defined or short else None,
        "r_err": float(kitti["r_err_deg_per_100m"]) if defined or short else None,
        "segment_lengths": list(SHORT_SEGMENT_LENGTHS if short else KITTI_SEGMENT_LENGTHS),
        "heading_error_deg": heading_error_deg(gt_poses, pred_traj),
        "no_rotation_r_err": float(norot["r_err_deg_per_100m"]) if defined or short else None,
        "no_rotation_heading_error_deg": heading_error_deg(gt_poses, norot_traj),
        "rel_pred": rel_pred,
        "trajectory": {"gt": gt_poses, "pred": pred_traj},
    }


# --------------------------------------------------------------------------------------------------
# folder-format sequences (the synthetic data, or a user's)


@dataclass
class SequenceData:
    name: str
    images: Tensor  # (N,3,H,W) at the network size
    depths: list[np.ndarray]  # GT depth at the stored size (empty if none)
    poses: np.ndarray | None  # (N,4,4) T_world_cam
    regions: list[np.ndarray] = field(default_factory=list)


def load_folder_sequence(root: PathLike, name: str, height: int, width: int) -> SequenceData:
    """All frames of one folder-format sequence, resized for the network, with GT where present."""
    seq = Path(root) / name
    load_depth = (seq / "depth").is_dir()
    load_regions = (seq / "regions").is_dir()
    ds = FolderDataset(root, [0], height, width, is_train=False, sequences=[name], load_depth=load_depth,
                       load_regions=load_regions)
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


def evaluate_pose_sequences(model: Model, sequences: Sequence[SequenceData]) -> dict[str, Any]:
    """:func:`evaluate_pose` over the sequences that have poses, pooled: ``ate5``, ``ate5_std`` and
    ``zero_motion_ate5`` over all snippets, ``t_err``/``r_err`` (means where defined, else ``None``),
    ``heading_error_deg`` (mean), the no-rotation references ``no_rotation_r_err`` and
    ``no_rotation_heading_error_deg`` (means, see :func:`evaluate_pose`) and ``trajectories`` (per sequence
    ``{"gt", "pred"}``). Only ``trajectories``
    when the model has no PoseNet or no sequence has poses."""
    out: dict[str, Any] = {"trajectories": {}}
    ates, zeros, t_errs, r_errs, headings = [], [], [], [], []
    norot_r, norot_h = [], []
    if model.has_pose:
        for s in sequences:
            if s.poses is None or len(s.poses) < 2:
                continue
            pose = evaluate_pose(model, s.images, s.poses)
            ates.extend(pose["ate5_per_snippet"])
            zeros.extend(pose["zero_motion_per_snippet"])
            if pose["t_err"] is not None:
                t_errs.append(pose["t_err"])
                r_errs.append(pose["r_err"])
                norot_r.append(pose["no_rotation_r_err"])
            headings.append(pose["heading_error_deg"])
            norot_h.append(pose["no_rotation_heading_error_deg"])
            out["trajectories"][s.name] = pose["trajectory"]
    if ates:
        out["ate5"] = float(np.mean(ates))
        out["ate5_std"] = float(np.std(ates))
        out["zero_motion_ate5"] = float(np.mean(zeros))
        out["t_err"] = float(np.mean(t_errs)) if t_errs else None
        out["r_err"] = float(np.mean(r_errs)) if r_errs else None
        out["heading_error_deg"] = float(np.mean(headings))
        out["no_rotation_r_err"] = float(np.mean(norot_r)) if norot_r else None
        out["no_rotation_heading_error_deg"] = float(np.mean(norot_h))
    return out


def evaluate_sequences(model: Model, root: PathLike, names: Sequence[str], *, height: int, width: int,
                       max_depth: float = 80.0, sequences: Sequence[SequenceData] | None = None) -> dict[str, Any]:
    """Depth (per-image median scaling, ``1e-3 < gt < max_depth``, no crop) and pose on held-out sequences.

    The range mask excludes the far background of the synthetic scenes, stored at exactly ``max_depth``
    (not a measurement: a network cannot be right or wrong about it).

    Args:
        sequences: already loaded sequences (skips reading ``root``/``names``).

    Returns:
        ``depth`` (metric means), ``depth_ratio`` (mean median-scaling ratio), ``ate5``, ``ate5_std``,
        ``zero_motion_ate5``, ``t_err``/``r_err`` (means over the sequences where defined; see
        :func:`evaluate_pose`), ``heading_error_deg`` (mean over the sequences) and
        ``trajectories`` (per sequence ``{"gt", "pred"}``).
    """
    seqs = list(sequences) if sequences is not None else [load_folder_sequence(root, n, height, width) for n in names]
    depth_batches = [(s.images, s.depths) for s in seqs if s.depths]
    result: dict[str, Any] = {"trajectories": {}}
    if depth_batches:
        res, _ = evaluate_depth_batches(model, depth_batches, protocol="uncropped", scaling="median",
                                        max_depth=max_depth)
        result["depth"] = dict(res.metrics)
        result["depth_ratio"] = res.ratio_median
    result.update(evaluate_pose_sequences(model, seqs))
    return result
