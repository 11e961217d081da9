"""``featdepth info CKPT``: what a checkpoint is, before you use it.

Examples::

    featdepth info runs/kitti_featdepth_ms/best.pt
    featdepth info official_kitti_ms.pth --json
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from featdepth.cli.common import CLIError, add_official_args, load_model_arg

EXAMPLES = __doc__.split("Examples::", 1)[1]


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``featdepth info``."""
    p = sub.add_parser("info", help="describe a checkpoint: stage, networks, training size and data, depth kind, step",
                       description="Print what a checkpoint (featdepth, official FeatDepth .pth or monodepth2 folder) "
                       "holds: stage, networks, training size, metric factor and depth kind, training data, step, "
                       "intrinsics.", epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", metavar="CKPT", help="featdepth checkpoint, official FeatDepth .pth, or monodepth2 model folder")
    p.add_argument("--json", action="store_true", help="print the description as JSON")
    add_official_args(p)  # also --trust-checkpoint
    p.set_defaults(func=cmd_info)


def checkpoint_info(args: argparse.Namespace) -> dict[str, Any]:
    """The description :func:`cmd_info` prints, as plain data."""
    args.device, args.amp, args.batch_size = "cpu", "none", 1
    model = load_model_arg(args)
    cfg = model.config
    data = cfg.data
    report = getattr(model, "conversion_report", None)
    K = model.K
    return {
        "checkpoint": str(args.checkpoint),
        "format": "featdepth" if report is None else "official (converted on the fly)",
        "stage": model.stage,
        "step": model.step,
        "networks": {
            "depth": f"resnet{cfg.model.depth_layers} encoder + {cfg.model.depth_decoder} decoder",
            "pose": f"resnet{cfg.model.pose_layers}" if model.has_pose else None,
        },
        "training_size": {"width": model.width, "height": model.height},
        "frame_ids": list(data.frame_ids),
        "depth_kind": model.depth_kind,
        "metric_factor": model.metric_factor,
        "scale_note": model.scale_note,
        "depth_range": [model.min_depth, model.max_depth],
        "training_data": {"dataset": data.dataset, "path": data.path,
                          "stereo_baseline": getattr(data, "stereo_baseline", None)},
        "intrinsics_normalized": None if K is None else [K[0, 0], K[1, 1], K[0, 2], K[1, 2]],
        "conversion": report.summary() if report is not None else None,
        "backend": {"name": model.backend, "note": model.backend_note},
    }


def cmd_info(args: argparse.Namespace) -> int:
    """``featdepth info``."""
    from featdepth.inference.model import ModelLoadError  # lazy: keeps `featdepth --help` fast

    try:
        info = checkpoint_info(args)
    except ModelLoadError as exc:
        raise CLIError(str(exc)) from exc
    if args.json:
        print(json.dumps(info, indent=2, default=str))
        return 0
    size = info["training_size"]
    td = info["training_data"]
    K = info["intrinsics_normalized"]
    rows = [
        ("checkpoint", f"{info['checkpoint']} ({info['format']})"),
        ("stage", f"{info['stage']}" + (f", step {info['step']}" if info["step"] is not None else "")),
        ("depth network", info["networks"]["depth"]),
        ("pose network", info["networks"]["pose"] or "none (stereo only: no trajectories)"),
        ("training size", f"{size['width']}x{size['height']} (inputs are resized to it; outputs come back at the input size)"),
        ("training frames", ", ".join(map(str, info["frame_ids"]))),
        ("depth", f"{info['depth_kind']}, factor {info['metric_factor']:g}: {info['scale_note']}"),
        ("training data", f"{td['dataset']} at {td['path']}"),
        ("intrinsics", "not stored (give --intrinsics or --kitti-intrinsics for point clouds)" if K is None else
         "normalised fx/W, fy/H, cx/W, cy/H = " + ", ".join(f"{v:.4g}" for v in K)),
        ("backend (CPU)", f"{info['backend']['name']} ({info['backend']['note']}; choose with --backend)"),
    ]
    width = max(len(k) for k, _ in rows)
    print("\n".join(f"{k:<{width}}  {v}" for k, v in rows))
    print(f"\nuse it: featdepth predict IMAGES|VIDEO --checkpoint {info['checkpoint']}")
    return 0
