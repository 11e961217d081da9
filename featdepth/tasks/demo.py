"""``featdepth demo``: FeatDepth learning depth on a laptop in minutes, with no download.

1. Generates synthetic driving sequences (ground-truth depth and poses) into ``OUT/data``.
2. Trains two-stage FeatDepth with the ``demo`` preset: FeatureNet first, then DepthNet + PoseNet
   with the frozen FeatureNet.
3. Evaluates the untrained (initial) and the trained (final) model on held-out sequences: depth metrics
   with per-image median scaling and the 5-frame ATE, plus the ATE of a zero-motion prediction; and
   whether PoseNet responds to rotation (predicted against true yaw on rendered pairs with known turns).
4. Writes ``OUT/metrics.json``, ``OUT/checkpoint.pt`` and ``OUT/checkpoint.safetensors`` (usable by every
   other command), pictures
   (``OUT/depth_*.png``: input | predicted disparity | ground-truth depth) and a top-view trajectory
   plot (``OUT/trajectory.png``), and prints a summary table.
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw

from featdepth.config import Config, load_config
from featdepth.data.factory import ensure_synthetic_data, synthetic_sequence_names
from featdepth.evaluation.loop import evaluate_rotation_response, evaluate_sequences, load_folder_sequence
from featdepth.evaluation.plots import colorize_disparity, plot_trajectories_topview
from featdepth.evaluation.pose_metrics import align_trajectory
from featdepth.inference.loading import export_weights, load
from featdepth.inference.model import Model
from featdepth.models.stage import StageNetworks
from featdepth.training.trainer import run_training
from featdepth.utils.files import write_json
from featdepth.utils.runtime import resolve_device, seed_everything


def _log(msg: str) -> None:
    print(f"[demo] {msg}", file=sys.stderr, flush=True)


def _picture(path: Path, image: torch.Tensor, disp: np.ndarray, gt_depth: np.ndarray | None, *,
             min_height: int = 192) -> None:
    """Labelled panels side by side: input | predicted disparity | ground-truth inverse depth (magma, 95th
    percentile), enlarged to at least ``min_height`` pixels (nearest neighbour: the pixels the network saw)."""
    img = (image.permute(1, 2, 0).clamp(0, 1).numpy() * 255).astype(np.uint8)
    h, w = img.shape[:2]
    panels = [("input", img),
              ("predicted disparity", np.asarray(Image.fromarray(colorize_disparity(disp)).resize((w, h), Image.Resampling.BILINEAR)))]
    if gt_depth is not None:
        inv = np.where(gt_depth > 0, 1.0 / np.maximum(gt_depth, 1e-6), 0.0).astype(np.float32)
        gt_img = Image.fromarray(colorize_disparity(inv)).resize((w, h), Image.Resampling.NEAREST)
        panels.append(("ground truth 1/depth", np.asarray(gt_img)))
    k = max(1, -(-min_height // h))
    label_h = 16
    canvas = Image.new("RGB", (len(panels) * w * k, h * k + label_h), "white")
    draw = ImageDraw.Draw(canvas)
    for i, (label, panel) in enumerate(panels):
        canvas.paste(Image.fromarray(panel).resize((w * k, h * k), Image.Resampling.NEAREST), (i * w * k, label_h))
        draw.text((i * w * k + 4, 2), label, fill="black")
    canvas.save(path)


def _evaluate(model: Model, cfg: Config, names: Sequence[str]) -> dict[str, Any]:
    return evaluate_sequences(model, cfg.data.path, names, height=cfg.data.height, width=cfg.data.width)


def run_demo(out_dir: str | Path = "demo-output", steps: int | None = None, device: str = "auto",
             overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Run the demo; returns the content of ``metrics.json``."""
    t0 = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    extra = [f"data.path={out / 'data'}", f"train.out_dir={out / 'run'}", f"train.device={device}"]
    if steps is not None:
        extra.append(f"optim.max_steps={steps}")
    cfg = load_config("demo", list(extra) + list(overrides))
    dev = resolve_device(cfg.train.device)

    _log(f"generating synthetic sequences in {cfg.data.path}")
    ensure_synthetic_data(cfg, progress=True)
    _, val_names = synthetic_sequence_names(cfg)

    seed_everything(cfg.train.seed)
    initial = StageNetworks(cfg, stage="baseline").to(dev)
    _log("evaluating the untrained model")
    init_eval = _evaluate(Model.from_networks(initial.depth_net, initial.pose_net, cfg, stage="baseline",
                                              source="untrained"), cfg, val_names)
    del initial

    what = "two-stage FeatDepth (FeatureNet, then depth and pose)" if cfg.train.stage == "depth" else \
        f"stage '{cfg.train.stage}'"
    _log(f"training {what} on {dev}")
    summary = run_training(cfg)
    ckpt_path = Path(summary["checkpoint"])
    final = load(ckpt_path, device=dev, backend="eager")  # the same path as the untrained model and validation
    _log("evaluating the trained model")
    final_eval = _evaluate(final, cfg, val_names)
    if final.has_pose:
        _log("measuring the rotation response (pairs with known turns in the held-out scene)")
        rotation = evaluate_rotation_response(final, Path(cfg.data.path) / val_names[0])
    else:  # stereo only (data.frame_ids [0, s]): no PoseNet was trained, so no pose metrics
        _log(f"no PoseNet (training frames {list(cfg.data.frame_ids)}): depth metrics only")
        rotation = None
    shutil.copyfile(ckpt_path, out / "checkpoint.pt")
    export_weights(ckpt_path, out / "checkpoint.safetensors")  # the same weights, safe to share (README)

    # pictures
    seq = load_folder_sequence(cfg.data.path, val_names[0], cfg.data.height, cfg.data.width)
    picks = np.linspace(0, len(seq.images) - 1, 3).round().astype(int)
    with final.evaluating():
        disp = final.disparity(seq.images[picks]).cpu()
    for k, i in enumerate(picks):
        _picture(out / f"depth_{k}.png", seq.images[i], disp[k, 0].numpy(), seq.depths[i] if seq.depths else None)
    traj = final_eval["trajectories"].get(val_names[0])
    if traj is not None:
        aligned = align_trajectory(traj["gt"], traj["pred"], "scale")[0]  # monocular: scale is unknown
        plot_trajectories_topview(out / "trajectory.png", traj["gt"], [aligned], ["FeatDepth (scale-aligned)"],
                                  title=f"{val_names[0]}: top view")

    def pick(ev: dict[str, Any]) -> dict[str, Any]:
        d = dict(ev.get("depth", {}))
        for key in ("ate5", "t_err", "r_err", "heading_error_deg"):
            d[key] = ev.get(key)
        return d

    metrics = {
        "initial": pick(init_eval),
        "final": pick(final_eval),
        "zero_motion": {"ate5": final_eval.get("zero_motion_ate5")},
        # true translation, no rotation: the rotation is learned only where the model beats these
        "no_rotation": {"r_err": final_eval.get("no_rotation_r_err"),
                        "heading_error_deg": final_eval.get("no_rotation_heading_error_deg")},
        # predicted against true yaw on pairs with known turns: slope 1 = rotation learned, 0 = ignored
        "rotation_response": rotation,
        "seconds": time.perf_counter() - t0,
        "steps": {"featurenet": summary.get("featurenet", {}).get("steps"), cfg.train.stage: summary.get("steps")},
        "stage": cfg.train.stage,
        "has_pose": final.has_pose,
        "seed": cfg.train.seed,
        "device": str(dev),
    }
    metrics["take_off"] = take_off(metrics)
    write_json(out / "metrics.json", metrics)
    _print_table(metrics)
    return metrics


#: The take-off criterion of the demo (docs/experiments.md): depth and pose both clearly better than the start.
TAKE_OFF_ABS_REL_RATIO = 0.6
TAKE_OFF_ATE_RATIO = 0.7


def take_off(metrics: dict[str, Any]) -> dict[str, Any]:
    """Whether a demo run learned: final/initial abs_rel <= 0.6 and final ATE5 <= 0.7 x the zero-motion ATE5.

    A stereo-only model (``metrics["has_pose"]`` false: no PoseNet was trained) is judged on the depth ratio
    alone.

    Args:
        metrics: the content of ``metrics.json`` (``initial``, ``final``, ``zero_motion``, ``has_pose``).

    Returns:
        ``{"abs_rel_ratio", "ate5_ratio", "passed"}`` (ratios ``None`` where a value is missing; then not passed).
    """
    ini, fin = metrics["initial"].get("abs_rel"), metrics["final"].get("abs_rel")
    zero, ate = metrics["zero_motion"].get("ate5"), metrics["final"].get("ate5")
    depth = fin / ini if ini and fin is not None else None
    pose = ate / zero if zero and ate is not None else None
    pose_ok = metrics.get("has_pose", True) is False or (pose is not None and pose <= TAKE_OFF_ATE_RATIO)
    passed = depth is not None and depth <= TAKE_OFF_ABS_REL_RATIO and pose_ok
    return {"abs_rel_ratio": depth, "ate5_ratio": pose, "passed": bool(passed)}


def _print_table(m: dict[str, Any]) -> None:
    names = ["abs_rel", "sq_rel", "rmse", "rmse_log", "a1", "a2", "a3", "ate5"]
    print("\n" + f"{'model':<14}" + "".join(f"{n:>10}" for n in names))
    for key in ("initial", "final"):
        row = m[key]
        print(f"{key:<14}" + "".join(f"{row.get(n, float('nan')) if row.get(n) is not None else float('nan'):>10.4f}" for n in names))
    z = m["zero_motion"]["ate5"]
    print(f"{'zero motion':<14}" + " " * 70 + (f"{z:>10.4f}" if z is not None else f"{'n/a':>10}"))
    t = m.get("take_off") or take_off(m)
    if t["abs_rel_ratio"] is not None:
        print(f"\nabs_rel: final/initial = {t['abs_rel_ratio']:.2f} (target <= {TAKE_OFF_ABS_REL_RATIO:.2f})")
    if t["ate5_ratio"] is not None:
        print(f"ATE5: final/zero-motion = {t['ate5_ratio']:.2f} (target <= {TAKE_OFF_ATE_RATIO:.2f})")
    r = m["final"].get("r_err")
    if r is not None:
        print(f"rotation error r_err = {r:.2f} deg/100 m (KITTI devkit formula on 10-50 m segments of the held-out "
              f"sequences, scale-aligned); heading error at the end of a sequence "
              f"{m['final'].get('heading_error_deg', float('nan')):.1f} deg")
        nr = m.get("no_rotation") or {}
        if nr.get("r_err") is not None:
            print(f"  reference with the true translation and no rotation: r_err {nr['r_err']:.2f} deg/100 m, heading "
                  f"error {nr.get('heading_error_deg', float('nan')):.1f} deg (rotation is learned where the model "
                  "beats these)")
    rr = m.get("rotation_response")
    if rr:
        print(f"rotation response: predicted/true turn = {rr['slope']:.2f} (slope over {rr['pairs']} pairs turned by "
              f"{min(rr['yaws_deg']):g}..{max(rr['yaws_deg']):g} deg; 1 = rotation learned, 0 = PoseNet ignores rotation)")
    print("took off" if t["passed"] else "did NOT take off (see docs/experiments.md, 'the stuck state')")
    print(f"wall time {m['seconds']:.0f} s; outputs written next to metrics.json")
