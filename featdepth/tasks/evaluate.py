"""Checkpoint-driven and file-driven evaluation: what ``featdepth evaluate depth|pose`` runs.

Depth (docs/method.md §4.1):

- :func:`evaluate_depth_checkpoint`: load a checkpoint, predict the finest-scale disparity of every
  image of a split at the model's training size (``data.height x data.width`` of its config), optionally
  with flip post-processing and online refinement (:mod:`featdepth.training.refinement`), and score
  the scaled disparities with :func:`~featdepth.evaluation.depth_metrics.evaluate_depth` against a
  ``gt_depths.npz`` or the dataset's own GT depth (KITTI raw ``proj_depth/velodyne``, folder ``depth/``).
- :func:`evaluate_depth_files`: precomputed predictions (``.npy`` / ``.npz``, ``N x h x w``, disparities
  or depths, monodepth2's ``--ext_disp_to_eval``) against ``gt_depths.npz``.

Pose (docs/method.md §4.2):

- :func:`predict_sequence_poses`: PoseNet on consecutive frame pairs of a KITTI odometry sequence
  (colour cameras by default), streamed, at the model's training size (PoseNet resizes to its own
  ``pose_input_size``); :func:`~featdepth.evaluation.trajectory.chain_relative_poses` makes the trajectory.
- :func:`evaluate_trajectory`: ``ate5`` (5-frame snippets) and/or ``kitti`` (devkit t_err / r_err with
  ``none | scale | sim3`` alignment).
- :func:`write_pose_outputs`: predicted trajectory in KITTI and TUM formats, GT in TUM, a top-view plot
  and the metrics as JSON.

Scaling of depth predictions: ``"median"`` (per-image, monocular models), ``"stereo"`` (the metric
factor of a stereo-trained checkpoint: ``0.54 / data.stereo_baseline``, i.e. 36 for FeatDepth's 0.015
convention, or 1 for a model trained with the real baseline), a number, or ``"none"``.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from featdepth.config import config_to_dict
from featdepth.data import KittiOdometryDataset
from featdepth.data.factory import build_eval_dataset
from featdepth.data.folder import generator_meta
from featdepth.data.io import DataError
from featdepth.evaluation.depth_metrics import DepthEvalResult, evaluate_depth, load_gt_depths, load_predictions
from featdepth.evaluation.loop import CAMERA_HEIGHT_SCALING, CameraHeightInfo, evaluate_depth_batches, predict_relative_poses
from featdepth.evaluation.plots import plot_trajectories_topview
from featdepth.evaluation.pose_metrics import align_trajectory, kitti_odometry_errors, snippets_from_relative_poses
from featdepth.evaluation.trajectory import (
    chain_relative_poses,
    is_stationary,
    read_kitti_trajectory,
    read_trajectory,
    relative_poses_from_absolute,
    write_kitti_trajectory,
    write_tum_trajectory,
)
from featdepth.geometry import SequenceScale, check_height_from, sequence_scale
from featdepth.inference.loading import load
from featdepth.inference.model import Model, check_camera_height, depth_kind_from_config
from featdepth.training import refinement as refinement_mod
from featdepth.training.system import load_system
from featdepth.utils.constants import KITTI_BASELINE, KITTI_CAMERA_HEIGHT
from featdepth.utils.files import PathLike, atomic_save, json_safe

__all__ = [
    "load_for_evaluation",
    "metric_scale_factor",
    "parse_scaling",
    "build_eval_dataset",
    "dataset_depth_batches",
    "dataset_camera_heights",
    "camera_height_sequence_scale",
    "DepthEvaluation",
    "RefineOptions",
    "evaluate_depth_checkpoint",
    "evaluate_depth_files",
    "predict_sequence_poses",
    "evaluate_trajectory",
    "write_pose_outputs",
    "PoseEvaluation",
    "evaluate_pose_checkpoint",
    "evaluate_pose_files",
]

# --------------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------------


def load_for_evaluation(checkpoint: PathLike, device: torch.device | str = "cpu") -> Model:
    """The :class:`~featdepth.inference.model.Model` of a checkpoint (any kind :func:`featdepth.load` reads)."""
    return load(checkpoint, device=device, backend="eager")  # the same numbers as validation (no ONNX export)


def metric_scale_factor(cfg: Any, reference_baseline: float = KITTI_BASELINE) -> float:
    """The fixed factor that turns a stereo-trained model's depth into metres.

    ``reference_baseline / data.stereo_baseline`` (36 for FeatDepth's 0.015 on KITTI) when the model was
    trained with a made-up baseline, ``1.0`` when it used the calibrated one (``stereo_baseline: null``).

    Raises:
        ValueError: the model saw no stereo pairs (use median scaling).
    """
    if not cfg.use_stereo:
        raise ValueError(
            f"the model was trained without stereo pairs (frame_ids {cfg.data.frame_ids}): its depth has "
            "no metric scale; use --scaling median"
        )
    return round(depth_kind_from_config(cfg, real_baseline=reference_baseline)[1], 9)


def parse_scaling(text: Union[str, float, None], cfg: Any = None) -> Union[str, float, None]:
    """``"median"`` | ``"stereo"`` (needs ``cfg``) | ``"none"`` | a positive number -> the scaling argument
    of :func:`~featdepth.evaluation.depth_metrics.evaluate_depth`."""
    if text is None:
        return None
    if isinstance(text, (int, float)):
        value = float(text)
    else:
        t = str(text).strip().lower()
        if t == "median":
            return "median"
        if t == CAMERA_HEIGHT_SCALING:
            return CAMERA_HEIGHT_SCALING
        if t == "none":
            return None
        if t == "stereo":
            if cfg is None:
                raise ValueError("--scaling stereo needs a checkpoint (its config defines the factor); "
                                 "give the factor as a number instead, e.g. --scaling 36")
            return metric_scale_factor(cfg)
        try:
            value = float(t)
        except ValueError:
            raise ValueError(f"scaling must be median, stereo, camera-height, none or a positive number, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"a fixed scaling factor must be a positive number, got {text!r}")
    return value


# --------------------------------------------------------------------------------------------------
# Datasets and prediction
# --------------------------------------------------------------------------------------------------


def _list_collate(samples: list) -> list:
    return samples


def _batches(dataset, batch_size: int, num_workers: int):
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers, collate_fn=_list_collate)


def dataset_depth_batches(dataset: Any, gts: Optional[Sequence[np.ndarray]], *, batch_size: int = 4,
                         num_workers: int = 0, camera_heights: Optional[tuple[Sequence[float], Sequence[str]]] = None):
    """``(images (B,3,H,W), B ground-truth maps)`` of every sample's frame 0, for
    :func:`~featdepth.evaluation.loop.evaluate_depth_batches`: the maps come from ``gts`` (in dataset order)
    or else from each sample's ``depth_gt``. With ``camera_heights`` (``(heights, sequence names)`` in dataset
    order, :func:`dataset_camera_heights`) each batch has a third item, a
    :class:`~featdepth.evaluation.loop.CameraHeightInfo` with the samples' ``K``."""
    done = 0
    for chunk in _batches(dataset, batch_size, num_workers):
        images = torch.stack([s["color"][0] for s in chunk])
        if gts is not None:
            batch_gts = list(gts[done : done + len(chunk)])
        else:
            batch_gts = [s["depth_gt"][0].numpy() for s in chunk]
        if camera_heights is not None:
            info = CameraHeightInfo(torch.stack([s["K"][:3, :3] for s in chunk]),
                                    camera_heights[0][done : done + len(chunk)], camera_heights[1][done : done + len(chunk)])
            done += len(chunk)
            yield images, batch_gts, info
            continue
        done += len(chunk)
        yield images, batch_gts


def dataset_camera_heights(dataset: Any, camera_height: Optional[float] = None) -> tuple[list[float], list[str]]:
    """Camera height (metres) and sequence name of every sample of an evaluation dataset, in order.

    ``camera_height`` (when given) applies to every sample. Otherwise: KITTI raw uses
    :data:`~featdepth.utils.constants.KITTI_CAMERA_HEIGHT` (1.65 m) and its drives as sequences; a folder dataset
    reads each sequence's ``camera_height.txt`` (the synthetic generator writes it).

    Raises:
        ValueError: a ``camera_height`` that is not a positive number, or a folder sequence without
            ``camera_height.txt`` and no ``camera_height`` (the message names the file to write).
    """
    if camera_height is not None:
        camera_height = check_camera_height(camera_height, "the camera height (--camera-height)")
    heights: list[float] = []
    names: list[str] = []
    for item in dataset.items:
        if hasattr(dataset, "camera_height"):  # folder format
            name = dataset.sequence_name(item)
            h = camera_height if camera_height is not None else dataset.camera_height(item)
            if h is None:
                path = dataset.sequences[item[0]].path / "camera_height.txt"
                raise ValueError(f"sequence {name!r} has no recorded camera height: pass --camera-height METRES "
                                 f"(camera_height=) or write the height in metres into {path}")
        else:  # KITTI raw: (drive folder, frame, side)
            name = str(item[0])
            h = camera_height if camera_height is not None else KITTI_CAMERA_HEIGHT
        heights.append(float(h))
        names.append(name)
    return heights, names


def resolve_height_from(height_from: str, dataset: Any = None) -> str:
    """The ``height_from`` of camera-height scaling (:mod:`featdepth.geometry.scale_recovery`, step 6) for a dataset.

    ``"plane"`` and ``"level"`` are returned as given. ``"auto"`` (the evaluation default) is ``"level"`` for KITTI
    (raw: ``dataset`` without folder sequences; odometry: ``dataset=None``), whose camera is mounted level on the
    car, and for folder sequences that all come from the synthetic generator (a level camera by construction,
    recorded in their ``meta.json``); ``"plane"`` (any camera orientation) for other folder data.
    """
    if height_from != "auto":
        return check_height_from(height_from)
    sequences = getattr(dataset, "sequences", None)
    if not sequences:
        return "level"
    return "level" if all(generator_meta(seq.path) is not None for seq in sequences) else "plane"


# --------------------------------------------------------------------------------------------------
# Depth
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RefineOptions:
    """Online refinement (test-time training, docs/method.md §3.6) for :func:`evaluate_depth_checkpoint`.

    Attributes:
        protocol: ``None``/``"none"``, ``"per-sample"`` (``steps`` iterations on each test image, weights
            restored after each) or ``"whole-split"`` (``epochs`` over the test split, in place).
        steps, epochs, lr (default: the checkpoint's ``optim.lr``), batch_size (whole-split; default: the
            checkpoint's), max_steps (whole-split: stop early), save_refined (whole-split: write the refined
            model as a checkpoint here).
    """

    protocol: Optional[str] = None
    steps: int = 20
    epochs: int = 20
    lr: Optional[float] = None
    batch_size: Optional[int] = None
    max_steps: Optional[int] = None
    save_refined: Optional[PathLike] = None

    def __post_init__(self) -> None:
        if self.protocol not in (None, "none", *refinement_mod.REFINE_PROTOCOLS):
            raise ValueError(f"refine must be one of none, {', '.join(refinement_mod.REFINE_PROTOCOLS)}, "
                             f"got {self.protocol!r}")
        if self.protocol == "none":
            object.__setattr__(self, "protocol", None)
        if self.save_refined is not None and self.protocol != "whole-split":
            raise ValueError("save_refined applies to the whole-split refinement")


@dataclass
class DepthEvaluation:
    """Result of a depth evaluation with where it came from and how it was made."""

    result: DepthEvalResult
    source: dict[str, Any]
    post_process: bool = False
    refinement: Any = None  # RefinementResult or None
    disparities: Optional[np.ndarray] = None  # (N, h, w) scaled disparities (checkpoint runs)

    @property
    def refinement_label(self) -> str:

        return self.refinement.label if self.refinement is not None else refinement_mod.refinement_label(None)

    def as_dict(self) -> dict[str, Any]:
        out = self.result.as_dict()
        out["source"] = self.source
        out["post_process"] = bool(self.post_process)
        out["refinement"] = self.refinement.as_dict() if self.refinement is not None else {"protocol": "none", "label": self.refinement_label}
        return json_safe(out)

    def to_json(self, path: PathLike) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.as_dict(), indent=2) + "\n")
        return path

    def summary(self) -> str:
        r = self.result
        lines = [
            f"protocol {r.protocol}, {r.num_images} images, scaling {r.scaling}"
            f"{', flip post-processing' if self.post_process else ''}",
            f"{self.refinement_label}",
            "",
            r.table_header(),
            r.table_row(),
            "",
            f"median ratio (median gt / median pred): {r.ratio_median:.3f}, spread std(ratio / median) {r.ratio_std:.3f}",
        ]
        if getattr(r, "num_masked_predictions", 0):
            lines.append(f"masked: {r.num_masked_predictions} ground-truth pixels left out because the prediction "
                         "there was NaN, infinite or negative (--mask-invalid)")
        return "\n".join(lines + _camera_height_lines(r))


def _camera_height_lines(r: DepthEvalResult) -> list[str]:
    """Summary lines of a ``"camera-height"`` evaluation (empty otherwise)."""
    rep = r.scale_recovery
    if not rep:
        return []
    med = rep["median_scaling"]["metrics"]
    q = rep["scale_over_median_ratio"]
    heights = sorted({v["camera_height"] for v in rep["per_sequence"].values()})
    lines = [
        "",
        f"camera-height scaling ({', '.join(f'{h:g}' for h in heights)} m, height from the ground "
        f"{rep.get('height_from', 'plane')}, no ground truth in the scale): "
        f"{rep['num_accepted']} of {rep['num_images']} images with a ground plane, {rep['num_rejected']} rejected "
        "(their sequence's median scale used)",
        f"recovered scale / median-scaling ratio: mean {q['mean']:.3f}, sd {q['std']:.3f} over {q['num']} images",
        f"same predictions with median scaling: abs_rel {med['abs_rel']:.3f}, rmse {med['rmse']:.3f}, a1 {med['a1']:.3f} "
        f"(camera-height abs_rel is {r.metrics['abs_rel'] / med['abs_rel']:.2f}x that)",
    ]
    if "metrics_per_frame" in rep:
        fr, sq = rep["metrics_per_frame"]["abs_rel"], rep["metrics_per_sequence"]["abs_rel"]
        lines.append(f"scale per {rep['scale_mode']} used; abs_rel with each sequence's median scale {sq:.3f} "
                     f"({sq / med['abs_rel']:.2f}x), with each image's own scale {fr:.3f} ({fr / med['abs_rel']:.2f}x)")
    for name, v in list(rep["per_sequence"].items())[:10]:
        lines.append(f"  {name}: scale {v['scale']:.4g} ({v['num_accepted']} accepted, {v['num_rejected']} rejected)")
    for rej in rep["rejected"][:3]:
        lines.append(f"  rejected image {rej['index']} ({rej['sequence']}): {rej['reason']}")
    return lines


def evaluate_depth_files(
    pred_path: PathLike,
    gt_path: PathLike,
    *,
    pred_kind: str = "disparity",
    protocol: str = "eigen",
    scaling: Union[str, float, None] = "median",
    min_depth: float = 1e-3,
    max_depth: float = 80.0,
    invalid_predictions: str = "error",
) -> DepthEvaluation:
    """Evaluate precomputed predictions against ``gt_depths.npz``.

    NaN, infinite or negative predicted values are an error naming the file and the count; with
    ``invalid_predictions="mask"`` those pixels are left out and counted in the result.

    Args:
        pred_path: ``.npy`` or ``.npz`` with ``(N, h, w)`` (or ``(N, 1, h, w)``) predictions in GT order.
        pred_kind: ``"disparity"`` (anything proportional to 1/depth, e.g. monodepth2's saved scaled
            disparities; resized, then inverted) or ``"depth"`` (metres up to scale).
        scaling: ``"median"``, a fixed factor, or ``None`` (``"stereo"`` needs a checkpoint).

    Raises:
        FileNotFoundError / ValueError: missing files, wrong shapes, or different numbers of images;
            messages name the files.
    """
    if pred_kind not in ("disparity", "depth"):
        raise ValueError(f"pred_kind must be 'disparity' or 'depth', got {pred_kind!r}")
    scaling = parse_scaling(scaling) if isinstance(scaling, str) else scaling
    if scaling == CAMERA_HEIGHT_SCALING:
        raise ValueError("--scaling camera-height needs the model and the dataset's intrinsics: use --checkpoint "
                         "with --data-path, not precomputed predictions")
    preds = load_predictions(pred_path)
    gts = load_gt_depths(gt_path)
    if len(preds) != len(gts):
        raise ValueError(f"{pred_path} holds {len(preds)} predictions but {gt_path} holds {len(gts)} ground-truth maps")
    try:
        result = evaluate_depth(gts, preds, protocol=protocol, scaling=scaling, min_depth=min_depth, max_depth=max_depth,
                                preds_are_disparity=pred_kind == "disparity", invalid_predictions=invalid_predictions,
                                source=str(pred_path))
    except ValueError as exc:
        raise ValueError(f"{pred_path} vs {gt_path}: {exc}") from exc
    source = {"predictions": str(pred_path), "pred_kind": pred_kind, "gt": str(gt_path)}
    return DepthEvaluation(result, source)


def evaluate_depth_checkpoint(
    checkpoint: PathLike,
    data_path: PathLike,
    *,
    split_file: Optional[PathLike] = None,
    gt_path: Optional[PathLike] = None,
    dataset: str = "kitti_raw",
    sequences: Optional[Sequence[str]] = None,
    protocol: str = "eigen",
    scaling: Union[str, float, None] = "median",
    post_process: bool = False,
    min_depth: float = 1e-3,
    max_depth: float = 80.0,
    refine: Union[None, str, "RefineOptions"] = None,
    device: torch.device | str = "cpu",
    batch_size: int = 4,
    num_workers: int = 0,
    progress: bool = False,
    model: Optional[Model] = None,
    camera_height: Optional[float] = None,
    camera_height_scale: str = "sequence",
    height_from: str = "auto",
) -> DepthEvaluation:
    """Predict a split with a checkpoint and evaluate it (see the module docstring).

    Args:
        checkpoint: a training checkpoint (``model``, ``config``, ``stage``).
        data_path: KITTI raw root (``dataset="kitti_raw"``) or a folder-format root (``"folder"``).
        split_file: KITTI split file (``<date>/<drive> <frame> <l|r>`` lines), e.g. Eigen ``test_files.txt``.
        gt_path: ``gt_depths.npz`` aligned with the split; default: the dataset's GT depth (KITTI
            ``proj_depth/velodyne/image_0X/*.npz``, folder ``depth/*.npy``).
        scaling: ``"median"``, ``"stereo"`` (the checkpoint's metric factor), ``"none"``, a number, or
            ``"camera-height"``: no ground truth in the scale: each image's scale is recovered from its predicted
            depth, the dataset's intrinsics and the camera height (rejected images: their sequence's median
            scale); the result's ``scale_recovery`` reports it against the median-scaling ratio.
        camera_height: metres, for ``"camera-height"``; default: 1.65 for KITTI raw, each sequence's
            ``camera_height.txt`` for a folder dataset (required when a sequence has none).
        camera_height_scale: ``"sequence"`` (default: every image of a sequence takes the median of its
            images' scales, as ``featdepth predict --camera-height`` does for a video) or ``"frame"`` (each
            image its own); the report gives the metrics of both.
        height_from: ``"auto"`` (default: :func:`resolve_height_from`, level for KITTI and the synthetic
            scenes), ``"plane"`` or ``"level"`` (:mod:`featdepth.geometry.scale_recovery`, step 6).
        refine: ``None``, a protocol name (``"per-sample"`` or ``"whole-split"``, default settings) or
            :class:`RefineOptions` (online refinement, docs/method.md §3.6); needs the
            neighbour frames of the model's ``frame_ids``.
        model: an already loaded model (skips loading ``checkpoint``); it is not modified except by
            whole-split refinement.

    Returns:
        :class:`DepthEvaluation`.
    """

    opts = refine if isinstance(refine, RefineOptions) else RefineOptions(protocol=refine)
    refine = opts.protocol
    save_refined = opts.save_refined
    system = None
    if refine is not None:  # refinement trains: it needs the whole training system, not just the networks
        system = load_system(checkpoint, device)
        model = system.as_model(source=str(checkpoint))
    elif model is None:
        model = load_for_evaluation(checkpoint, device)
    cfg = model.config
    scaling_value = parse_scaling(scaling, cfg) if isinstance(scaling, str) else scaling
    if gt_path is not None and not Path(gt_path).is_file():
        raise FileNotFoundError(f"ground-truth depth file not found: {gt_path}")
    eval_ds = build_eval_dataset(cfg, dataset, data_path, split_file=split_file, sequences=sequences)
    if gt_path is None and hasattr(eval_ds, "depth_path") and eval_ds.items:
        first = eval_ds.depth_path(eval_ds.items[0])
        if not first.is_file():
            raise FileNotFoundError(
                f"no --gt given and the dataset has no projected depth ({first} is missing): export the ground "
                "truth with `featdepth data export-gt` and pass it with --gt")
        eval_ds = build_eval_dataset(cfg, dataset, data_path, split_file=split_file, sequences=sequences,
                                     load_depth=True)
    if getattr(eval_ds, "num_skipped", 0):
        first = eval_ds.skipped[0]
        raise DataError(f"{split_file or data_path}: {eval_ds.num_skipped} entries have no image (first: {first}); "
                        "fix the data path or the split")
    heights = None
    height_from = resolve_height_from(height_from, eval_ds)
    if scaling_value == CAMERA_HEIGHT_SCALING:
        if refine == "per-sample":
            raise ValueError("--scaling camera-height is not available with --refine per-sample")
        heights = dataset_camera_heights(eval_ds, camera_height)
    elif camera_height is not None:
        raise ValueError("--camera-height applies to --scaling camera-height")

    gts: Optional[list[np.ndarray]] = None
    if gt_path is not None:  # check the GT before spending time on predictions
        gts = load_gt_depths(gt_path)
        if len(gts) != len(eval_ds):
            raise ValueError(f"{gt_path} holds {len(gts)} ground-truth maps but the split "
                             f"{split_file or data_path} has {len(eval_ds)} images")

    refine_result = None
    if refine == "whole-split":
        train_ds = build_eval_dataset(cfg, dataset, data_path, split_file=split_file, sequences=sequences,
                                      frame_ids=cfg.data.frame_ids, is_train=True)
        refine_result = refinement_mod.refine_whole_split(
            system, train_ds, epochs=opts.epochs, lr=opts.lr, batch_size=opts.batch_size, device=device,
            num_workers=num_workers, seed=cfg.train.seed, max_steps=opts.max_steps, progress=progress)
        if save_refined is not None:
            Path(save_refined).parent.mkdir(parents=True, exist_ok=True)
            atomic_save({"model": system.state_dict(), "config": config_to_dict(cfg), "stage": model.stage,
                         "step": model.step, "refinement": refine_result.as_dict()}, save_refined)

    if refine == "per-sample":
        ref_ds = build_eval_dataset(cfg, dataset, data_path, split_file=split_file, sequences=sequences,
                                    frame_ids=cfg.data.frame_ids)
        refine_result = refinement_mod.refine_per_sample(
            system, ref_ds, eval_dataset=eval_ds, steps=opts.steps, lr=opts.lr, post_process=post_process,
            device=device, seed=cfg.train.seed, progress=progress)
        disps = refine_result.disparities
        if gts is None:
            gts = [eval_ds[i]["depth_gt"][0].numpy() for i in range(len(eval_ds))]
    n = len(eval_ds)

    def report(done: int) -> None:
        print(f"\r[evaluate] predicted {done}/{n}", end="" if done < n else "\n", file=sys.stderr, flush=True)

    try:
        if refine == "per-sample":
            result = evaluate_depth(gts, disps, protocol=protocol, scaling=scaling_value, min_depth=min_depth,
                                    max_depth=max_depth, preds_are_disparity=True)
        else:
            batches = dataset_depth_batches(eval_ds, gts, batch_size=batch_size, num_workers=num_workers,
                                            camera_heights=heights)
            result, disps = evaluate_depth_batches(model, batches, protocol=protocol, scaling=scaling_value,
                                                   min_depth=min_depth, max_depth=max_depth, post_process=post_process,
                                                   batch_size=batch_size, on_batch=report if progress else None,
                                                   camera_height_scale=camera_height_scale, height_from=height_from)
    except ValueError as exc:
        raise ValueError(f"{gt_path or data_path}: {exc}") from exc
    source = model.describe()
    source["checkpoint"] = str(checkpoint)
    source.update({"dataset": dataset, "data_path": str(data_path), "split_file": str(split_file) if split_file else None,
                   "sequences": list(sequences) if sequences else None,
                   "gt": str(gt_path) if gt_path else "dataset GT depth (load_depth)"})
    if heights is not None:
        source["camera_height"] = dict(zip(heights[1], heights[0]))
    if save_refined is not None and refine == "whole-split":
        source["refined_checkpoint"] = str(save_refined)
    return DepthEvaluation(result, source, post_process=post_process, refinement=refine_result, disparities=disps)


# --------------------------------------------------------------------------------------------------
# Pose
# --------------------------------------------------------------------------------------------------


def predict_sequence_poses(
    model: Model,
    data_path: PathLike,
    sequence: Union[str, int],
    *,
    cameras: str = "color",
    batch_size: int = 8,
    device: torch.device | str = "cpu",
    num_workers: int = 0,
    max_frames: Optional[int] = None,
    progress: bool = False,
) -> tuple[np.ndarray, list[int]]:
    """PoseNet on consecutive frames of a KITTI odometry sequence (official layout).

    Frames are loaded at the model's training size; PoseNet resizes them to its ``pose_input_size``.

    Returns:
        ``(rel (N-1, 4, 4) T_{i+1<-i}, frame indices (N,))``.
    """
    if not model.has_pose:
        raise ValueError("this model has no PoseNet (trained on stereo pairs only); pose evaluation needs temporal frames")
    cfg = model.config
    ds = KittiOdometryDataset(data_path, [sequence], [0], cfg.data.height, cfg.data.width, cameras=cameras)
    frames = [int(f) for _, f, _ in ds.items]
    n = len(frames) if max_frames is None else min(len(frames), int(max_frames))
    if n < 2:
        raise ValueError(f"sequence {sequence}: need at least 2 frames, found {n}")
    frames = frames[:n]
    gaps = [frames[i] for i in range(1, n) if frames[i] != frames[i - 1] + 1]
    if frames[0] != 0 or gaps:
        raise ValueError(f"sequence {sequence}: frames must be numbered 0, 1, 2, ... without gaps "
                         f"(first {frames[0]}, first gap before {gaps[0] if gaps else '-'})")
    rel: list[np.ndarray] = []
    prev: Optional[torch.Tensor] = None
    done = 0
    for chunk in _batches(Subset(ds, range(n)), batch_size, num_workers):
        imgs = torch.stack([s["color"][0] for s in chunk])
        seq = imgs if prev is None else torch.cat([prev, imgs])
        if seq.shape[0] >= 2:
            rel.append(predict_relative_poses(model, seq, batch_size=batch_size))
        prev = imgs[-1:]
        done += len(chunk)
        if progress:
            print(f"\r[evaluate pose] {done}/{n} frames", end="", file=sys.stderr, flush=True)
    if progress:
        print(file=sys.stderr)
    return np.concatenate(rel), frames


def camera_height_sequence_scale(
    model: Model,
    data_path: PathLike,
    sequence: Union[str, int],
    camera_height: float,
    *,
    cameras: str = "color",
    batch_size: int = 8,
    num_workers: int = 0,
    max_frames: Optional[int] = None,
    height_from: str = "plane",
) -> SequenceScale:
    """The metric scale of a KITTI odometry sequence from the camera height: the median over its frames.

    Every frame's depth (depth network at the training size, the sequence's calibrated ``K``) gets its ground
    plane fitted (:meth:`~featdepth.inference.model.Model.scale_from_camera_height`); the scale multiplies the
    network's depth and PoseNet's translations.

    Raises:
        ValueError: no frame has a usable ground plane (the message gives the reasons).
    """
    cfg = model.config
    ds = KittiOdometryDataset(data_path, [sequence], [0], cfg.data.height, cfg.data.width, cameras=cameras)
    n = len(ds) if max_frames is None else min(len(ds), int(max_frames))
    results = []
    for chunk in _batches(Subset(ds, range(n)), batch_size, num_workers):
        images = torch.stack([s["color"][0] for s in chunk])
        results.extend(model.scale_from_camera_height(images, camera_height, K=chunk[0]["K"][:3, :3].double().numpy(),
                                                      height_from=height_from))
    try:
        return sequence_scale(results)
    except ValueError as exc:
        raise ValueError(f"sequence {sequence}: {exc}") from exc


def evaluate_trajectory(
    gt: np.ndarray,
    pred: np.ndarray,
    *,
    protocol: str = "both",
    align: str = "scale",
    rel_pred: Optional[np.ndarray] = None,
) -> dict[str, Any]:
    """ATE-5 and/or KITTI devkit metrics of a predicted trajectory.

    Args:
        gt, pred: ``(N, 4, 4)`` ``T_world_cam`` of the same frames.
        protocol: ``"ate5"``, ``"kitti"`` or ``"both"``.
        align: alignment for the KITTI metrics (``none | scale | sim3``).
        rel_pred: the predicted relative poses, if known (otherwise derived from ``pred``).

    Returns:
        ``{"num_frames", "ate5": {"mean", "std", "num_snippets"}, "zero_motion": {"ate5"}, "kitti": {...}}``
        (JSON-safe; NaN -> None). ``zero_motion`` is the ATE-5 of a camera that never moves: the baseline
        a prediction has to beat. Degenerate trajectories do not raise: a prediction that never moves has
        no alignment scale, so ``kitti`` holds the unaligned errors with ``scale_undefined: true`` and a note;
        a ground truth that never moves has no KITTI segment (``num_segments: 0`` and a note).
    """

    if protocol not in ("ate5", "kitti", "both"):
        raise ValueError(f"protocol must be ate5, kitti or both, got {protocol!r}")
    gt = np.asarray(gt, dtype=np.float64)
    pred = np.asarray(pred, dtype=np.float64)
    if gt.shape != pred.shape:
        raise ValueError(f"ground truth has {len(gt)} poses but the prediction has {len(pred)}")
    if len(gt) < 2:
        raise ValueError("need at least 2 poses")
    out: dict[str, Any] = {"num_frames": int(len(gt))}
    if protocol in ("ate5", "both"):
        rel_gt = relative_poses_from_absolute(gt)
        rp = relative_poses_from_absolute(pred) if rel_pred is None else np.asarray(rel_pred, dtype=np.float64)
        ates = snippets_from_relative_poses(rel_gt, rp)
        out["ate5"] = {"mean": float(np.mean(ates)), "std": float(np.std(ates)), "num_snippets": int(ates.size),
                       "unit": "m", "definition": "5-frame snippets, first positions aligned, least-squares scale"}
        still = snippets_from_relative_poses(rel_gt, np.tile(np.eye(4), (len(rel_gt), 1, 1)))
        out["zero_motion"] = {"ate5": float(np.mean(still)),
                              "note": "ATE-5 of a camera that never moves (the baseline to beat)"}
    if is_stationary(pred):
        out["stationary_prediction"] = True
    if protocol in ("kitti", "both"):
        if is_stationary(gt):
            k = {"num_segments": 0, "t_err_percent": None, "r_err_deg_per_100m": None, "scale": None, "per_length": {},
                 "note": "the ground-truth camera never moves: KITTI segment errors are undefined"}
        else:
            undefined = align != "none" and is_stationary(pred)
            k = kitti_odometry_errors(gt, pred, align="none" if undefined else align)
            if undefined:
                k["scale"] = None
                k["scale_undefined"] = True
                k["note"] = ("scale undefined: the predicted camera never moves, so no alignment scale exists; "
                             "errors are those of the unaligned (stationary) prediction")
            k.pop("segments", None)
            k["per_length"] = {str(int(length)): v for length, v in k["per_length"].items()}
            if k["num_segments"] == 0 and "note" not in k:
                k["note"] = "trajectory shorter than 100 m: no KITTI segment, errors undefined"
        k["align"] = align
        out["kitti"] = k
    return json_safe(out)


def _read_times(path: Path, n: int) -> Optional[np.ndarray]:
    if not path.is_file():
        return None
    try:
        t = np.loadtxt(path, dtype=np.float64).reshape(-1)
    except ValueError:
        return None
    return t[:n] if t.size >= n else None


def write_pose_outputs(
    out_dir: PathLike,
    name: str,
    pred: np.ndarray,
    gt: Optional[np.ndarray] = None,
    *,
    metrics: Optional[dict[str, Any]] = None,
    align: str = "scale",
    timestamps: Optional[np.ndarray] = None,
    json_path: Optional[PathLike] = None,
) -> dict[str, str]:
    """Write ``<name>_pred.txt`` (KITTI), ``<name>_pred_tum.txt`` (TUM), ``<name>_gt_tum.txt``,
    ``<name>_topview.png`` (GT vs the ``align``-aligned prediction) and the metrics JSON.

    Returns:
        ``{kind: path}`` of the written files.
    """

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {
        "pred_kitti": str(write_kitti_trajectory(out / f"{name}_pred.txt", pred)),
        "pred_tum": str(write_tum_trajectory(out / f"{name}_pred_tum.txt", pred, timestamps)),
    }
    label = "Prediction"
    shown = pred
    if gt is not None:
        files["gt_tum"] = str(write_tum_trajectory(out / f"{name}_gt_tum.txt", gt, timestamps))
        if align != "none" and (is_stationary(pred) or is_stationary(gt)):
            label = "Prediction (not aligned: scale undefined, a camera never moves)"
        elif align != "none":
            shown, _, _, s = align_trajectory(gt, pred, align)
            label = f"Prediction ({'scale' if align == 'scale' else 'Sim(3)'}-aligned, s={s:.3g})"
    files["topview"] = str(plot_trajectories_topview(out / f"{name}_topview.png", gt, shown, [label],
                                                     title=f"{name}: top view"))
    if metrics is not None:
        jp = Path(json_path) if json_path is not None else out / f"{name}_pose_metrics.json"
        jp.parent.mkdir(parents=True, exist_ok=True)
        payload = dict(metrics)
        payload["files"] = dict(files)
        jp.write_text(json.dumps(json_safe(payload), indent=2) + "\n")
        files["json"] = str(jp)
    return files


@dataclass
class PoseEvaluation:
    """Pose metrics plus the written files."""

    metrics: dict[str, Any]
    files: dict[str, str] = field(default_factory=dict)
    pred: Optional[np.ndarray] = None
    gt: Optional[np.ndarray] = None

    def summary(self) -> str:
        lines = []
        src = self.metrics.get("source", {})
        if src:
            lines.append(", ".join(f"{k} {v}" for k, v in src.items() if v is not None and k in ("sequence", "cameras", "checkpoint", "pred", "gt")))
        ate = self.metrics.get("ate5")
        if ate:
            lines.append(f"ATE-5: {ate['mean']:.4f} +- {ate['std']:.4f} m over {ate['num_snippets']} snippets")
        k = self.metrics.get("kitti")
        if k:
            if k.get("num_segments") and k.get("scale_undefined"):
                lines.append(f"KITTI (scale undefined: the prediction never moves; unaligned): t_err "
                             f"{k['t_err_percent']:.2f} %, r_err {k['r_err_deg_per_100m']:.2f} deg/100 m over "
                             f"{k['num_segments']} segments")
            elif k.get("num_segments"):
                lines.append(f"KITTI ({k['align']} alignment, scale {k['scale']:.4g}): t_err {k['t_err_percent']:.2f} %, "
                             f"r_err {k['r_err_deg_per_100m']:.2f} deg/100 m over {k['num_segments']} segments")
            else:
                lines.append("KITTI: " + k.get("note", "no segment"))
        ch = self.metrics.get("camera_height")
        if ch:
            lines.append(f"metric scale from the camera height {ch['camera_height']:g} m: {ch['scale']:.4g} (median of "
                         f"{ch['num_accepted']} frames, {ch['num_rejected']} rejected, spread {ch['relative_spread']:.1%})")
        zm = self.metrics.get("zero_motion")
        if zm and zm.get("ate5") is not None:
            lines.append(f"zero-motion ATE-5 (a camera that never moves): {zm['ate5']:.4f} m")
        if self.metrics.get("stationary_prediction"):
            lines.append("the predicted camera never moves (stationary prediction)")
        trim = self.metrics.get("trim")
        if trim:
            lines.append(trim["note"])
        if self.metrics.get("note"):
            lines.append(self.metrics["note"])
        for kind, path in self.files.items():
            lines.append(f"wrote {kind}: {path}")
        return "\n".join(lines)


def evaluate_pose_files(
    pred_path: PathLike,
    gt_path: PathLike,
    *,
    protocol: str = "both",
    align: str = "scale",
    out_dir: Optional[PathLike] = None,
    json_path: Optional[PathLike] = None,
    name: Optional[str] = None,
    trim: bool = False,
) -> PoseEvaluation:
    """Evaluate two trajectory files of the same frames in the same order.

    Each file may be KITTI (12 numbers per line) or TUM (``timestamp tx ty tz qx qy qz qw``), detected
    per file (:func:`~featdepth.evaluation.trajectory.read_trajectory`); both files of ``featdepth
    predict trajectory`` work. Poses are matched by line order (TUM timestamps are not associated).

    Args:
        trim: when the files hold different numbers of poses, evaluate the first ``min(N_pred, N_gt)``
            of each (reported in ``metrics["trim"]``) instead of refusing.

    Raises:
        ValueError: different lengths without ``trim`` (the message gives both counts and names ``--trim``),
            a malformed file (names the file and the line).
    """

    pred, _, pred_fmt = read_trajectory(pred_path)
    gt, _, gt_fmt = read_trajectory(gt_path)
    trimmed = None
    if len(pred) != len(gt):
        if not trim:
            raise ValueError(
                f"{pred_path} holds {len(pred)} poses but {gt_path} holds {len(gt)}: they must describe the same "
                f"frames; pass --trim (trim=True) to evaluate the first {min(len(pred), len(gt))} of each"
            )
        n = min(len(pred), len(gt))
        trimmed = {"pred_poses": len(pred), "gt_poses": len(gt), "used": n,
                   "note": f"trimmed to the first {n} poses (prediction {len(pred)}, ground truth {len(gt)})"}
        pred, gt = pred[:n], gt[:n]
    metrics = evaluate_trajectory(gt, pred, protocol=protocol, align=align)
    if trimmed is not None:
        metrics["trim"] = trimmed
    metrics["source"] = {"pred": str(pred_path), "gt": str(gt_path), "pred_format": pred_fmt, "gt_format": gt_fmt}
    files: dict[str, str] = {}
    if out_dir is not None:
        files = write_pose_outputs(out_dir, name or Path(pred_path).stem, pred, gt, metrics=metrics, align=align,
                                   json_path=json_path)
    elif json_path is not None:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps(json_safe(metrics), indent=2) + "\n")
        files["json"] = str(json_path)
    return PoseEvaluation(metrics, files, pred, gt)


def evaluate_pose_checkpoint(
    checkpoint: PathLike,
    data_path: PathLike,
    sequence: Union[str, int],
    *,
    cameras: str = "color",
    gt_path: Optional[PathLike] = None,
    protocol: str = "both",
    align: Optional[str] = None,
    out_dir: PathLike = "pose-eval",
    json_path: Optional[PathLike] = None,
    device: torch.device | str = "cpu",
    batch_size: int = 8,
    num_workers: int = 0,
    max_frames: Optional[int] = None,
    progress: bool = False,
    model: Optional[Model] = None,
    scaling: Optional[str] = None,
    camera_height: Optional[float] = None,
    height_from: str = "auto",
) -> PoseEvaluation:
    """Predict a KITTI odometry sequence's trajectory with a checkpoint and evaluate it.

    GT: ``gt_path`` or ``<data_path>/poses/<NN>.txt`` (camera 0, used as is, like the standard
    evaluation); the first ``N`` poses are used when the file is longer than the frames predicted.
    Without GT (sequences 11-21) only the trajectory files and the plot are written.

    ``scaling="camera-height"``: metric trajectories. The depth network's depth of every frame gives a scale
    from the camera height (``camera_height``, default 1.65 m; :func:`camera_height_sequence_scale`), the
    sequence's median multiplies PoseNet's translations, and ``align`` defaults to ``"none"`` (the KITTI errors
    are then those of the metric trajectory, without any scale alignment to the ground truth). ``height_from``:
    ``"auto"`` (default: ``"level"``, KITTI's camera is level), ``"plane"`` or ``"level"``
    (:mod:`featdepth.geometry.scale_recovery`, step 6).
    """

    if scaling not in (None, "none", CAMERA_HEIGHT_SCALING):
        raise ValueError(f"pose scaling must be none or camera-height, got {scaling!r}")
    if camera_height is not None and scaling != CAMERA_HEIGHT_SCALING:
        raise ValueError("--camera-height applies to --scaling camera-height")
    by_height = scaling == CAMERA_HEIGHT_SCALING
    height = check_camera_height(KITTI_CAMERA_HEIGHT if camera_height is None else camera_height,
                                 "the camera height (--camera-height)") if by_height else None
    if align is None:
        align = "none" if by_height else "scale"
    height_from = resolve_height_from(height_from)  # KITTI odometry: "auto" is "level"
    model = model if model is not None else load_for_evaluation(checkpoint, device)
    name = f"{int(sequence):02d}" if str(sequence).isdigit() else str(sequence)
    rel, frames = predict_sequence_poses(model, data_path, name, cameras=cameras, batch_size=batch_size,
                                         device=device, num_workers=num_workers, max_frames=max_frames, progress=progress)
    seq_scale = None
    if by_height:
        seq_scale = camera_height_sequence_scale(model, data_path, name, height, cameras=cameras, batch_size=batch_size,
                                                 num_workers=num_workers, max_frames=max_frames,
                                                 height_from=height_from)
        rel = rel.copy()
        rel[:, :3, 3] *= seq_scale.scale
    pred = chain_relative_poses(rel)
    gt_file = Path(gt_path) if gt_path is not None else Path(data_path) / "poses" / f"{name}.txt"
    gt = None
    metrics: dict[str, Any] = {}
    if gt_file.is_file():
        gt_all = read_kitti_trajectory(gt_file)
        if len(gt_all) < len(pred):
            raise ValueError(f"{gt_file} holds {len(gt_all)} poses but the sequence has {len(pred)} frames")
        gt = gt_all[: len(pred)]
        metrics = evaluate_trajectory(gt, pred, protocol=protocol, align=align, rel_pred=rel)
        if len(gt_all) > len(pred):
            metrics["note"] = f"evaluated the first {len(pred)} of the {len(gt_all)} ground-truth poses"
    elif gt_path is not None:
        raise FileNotFoundError(f"ground-truth trajectory not found: {gt_file}")
    else:
        metrics["note"] = f"no ground truth at {gt_file}: trajectory written, nothing evaluated"
    metrics["source"] = {**model.describe(), "checkpoint": str(checkpoint), "data_path": str(data_path), "sequence": name, "cameras": cameras,
                         "gt": str(gt_file) if gt is not None else None, "frames": len(frames)}
    if seq_scale is not None:
        metrics["camera_height"] = {
            "camera_height": height, "height_from": height_from, "scale": seq_scale.scale,
            "num_accepted": seq_scale.num_accepted,
            "num_rejected": seq_scale.num_rejected, "relative_spread": seq_scale.relative_spread,
            "scales": list(seq_scale.scales), "rejected": [{"index": i, "reason": r} for i, r in seq_scale.rejected],
            "note": "PoseNet translations multiplied by the median per-frame scale recovered from the depth network "
                    "and the camera height; KITTI errors with align=" + align}
    times = _read_times(Path(data_path) / "sequences" / name / "times.txt", len(pred))
    files = write_pose_outputs(out_dir, name, pred, gt, metrics=metrics, align=align, timestamps=times, json_path=json_path)
    return PoseEvaluation(metrics, files, pred, gt)
