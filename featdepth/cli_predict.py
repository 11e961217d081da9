"""``featdepth predict`` and ``featdepth export`` subcommands (registered by :mod:`featdepth.cli`).

::

    featdepth predict IMAGE|FOLDER|GLOB|VIDEO ... --checkpoint CKPT [--out DIR] [outputs] [options]
    featdepth predict trajectory VIDEO|FOLDER --checkpoint CKPT [--out DIR]
    featdepth export onnx --checkpoint CKPT --out depth.onnx [--pose-out pose.onnx] [--opset N]
    featdepth export convert-official --checkpoint OFFICIAL.pth|MONODEPTH2_DIR --out ours.pt
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["register", "cmd_predict", "cmd_export_onnx", "cmd_export_convert"]


def _official_options(args: argparse.Namespace) -> dict[str, Any]:
    opts: dict[str, Any] = {}
    if getattr(args, "train_size", None):
        text = args.train_size.lower().replace("×", "x")
        try:
            w, h = (int(v) for v in text.split("x"))
        except ValueError:
            from featdepth.cli import CLIError

            raise CLIError(f"--train-size must look like WIDTHxHEIGHT (e.g. 1024x320), got {args.train_size!r}") from None
        opts.update(height=h, width=w)
    if getattr(args, "frame_ids", None):
        opts["frame_ids"] = args.frame_ids
    if getattr(args, "stereo_baseline", None) is not None:
        text = str(args.stereo_baseline).strip().lower()
        opts["stereo_baseline"] = None if text in ("none", "real", "null") else float(text)
    return opts


def _add_official_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("official checkpoints (FeatDepth .pth, monodepth2 folders)")
    g.add_argument("--train-size", metavar="WxH", help="training size of an official checkpoint (default: 1024x320 "
                   "for FeatDepth, 640x192 for its joint model, the stored size for monodepth2)")
    g.add_argument("--frame-ids", metavar="IDS", help="training frames of an official checkpoint, e.g. '0,-1,1,s' "
                   "(default: FeatDepth's MS setting)")
    g.add_argument("--stereo-baseline", metavar="B", help="baseline convention of an official stereo model in metres, "
                   "or 'real' (default: 0.015 FeatDepth, 0.1 monodepth2)")


def _load_model(args: argparse.Namespace):
    from featdepth.api import load

    return load(
        args.checkpoint,
        device=args.device,
        amp=args.amp,
        real_baseline=getattr(args, "real_baseline", None),
        batch_size=max(1, int(getattr(args, "batch_size", 4) or 4)),
        official=_official_options(args),
    )


def cmd_predict(args: argparse.Namespace) -> int:
    from featdepth.cli import CLIError
    from featdepth.predict import PredictError, PredictOptions, parse_intrinsics, resolve_inputs, run_predict, run_trajectory

    inputs = list(args.inputs)
    trajectory = inputs[0] == "trajectory" and (len(inputs) > 1 or not Path("trajectory").exists())
    if trajectory:
        inputs = inputs[1:]
    progress = not args.quiet
    try:
        if trajectory:
            # Checkpoint first, then every input, then outputs.
            model = _load_model(args)
            source = resolve_inputs(inputs, every=args.every, max_frames=args.max_frames, progress=progress)
            out = Path(args.out or "featdepth_trajectory")
            summary = run_trajectory(model, source, out, batch_size=args.batch_size, scale=args.scale,
                                     fps=args.fps, progress=progress)
        else:
            opts = PredictOptions(
                color=args.color,
                npy=args.npy or args.all,
                png16=args.png16 or args.all,
                ply=args.ply or args.all,
                ply_ascii=args.ply_ascii,
                ply_max_depth=args.ply_max_depth,
                side_by_side=args.side_by_side,
                scale=args.scale,
                intrinsics=parse_intrinsics(args.intrinsics) if args.intrinsics else None,
                kitti_intrinsics=args.kitti_intrinsics,
                batch_size=args.batch_size,
                vmax_percentile=args.vmax_percentile,
                codec=args.codec,
                progress=progress,
            )
            model = _load_model(args)
            if args.ply or args.all:
                if opts.intrinsics is None and not opts.kitti_intrinsics and model.K is None:
                    raise PredictError(
                        "--ply needs intrinsics: pass --intrinsics FILE|'fx fy cx cy' (pixels, input resolution) "
                        "or --kitti-intrinsics"
                    )
            source = resolve_inputs(inputs, every=args.every, max_frames=args.max_frames, progress=progress)
            if args.all and source.kind == "video":
                opts.side_by_side = True
            out = Path(args.out or "featdepth_predictions")
            summary = run_predict(model, source, out, opts)
    except PredictError as exc:
        raise CLIError(str(exc)) from exc
    report = getattr(model, "conversion_report", None)
    if report is not None:
        print(report.summary(), file=sys.stderr)
    print(json.dumps(summary, indent=2))
    return 0


def cmd_export_onnx(args: argparse.Namespace) -> int:
    from featdepth.export import export_onnx

    results = export_onnx(
        args.checkpoint,
        args.out,
        pose_out=args.pose_out,
        opset=args.opset,
        exporter=args.exporter,
        atol=args.atol,
        official=_official_options(args),
    )
    for r in results:
        print(r.summary())
    return 0


def cmd_export_convert(args: argparse.Namespace) -> int:
    from featdepth.official import convert_official_checkpoint

    report = convert_official_checkpoint(args.checkpoint, args.out, strict=not args.allow_partial, **_official_options(args))
    print(report.summary())
    print(f"wrote {args.out}")
    return 0


def register(sub: argparse._SubParsersAction, data_sub: argparse._SubParsersAction | None = None) -> None:
    """Add ``predict`` and ``export`` to the ``featdepth`` parser."""
    p = sub.add_parser(
        "predict",
        help="depth for images, folders, globs or videos (or `predict trajectory` for camera paths)",
        description="Predict depth with a trained model. `featdepth predict trajectory VIDEO|FOLDER ...` chains "
        "PoseNet outputs into a camera trajectory (KITTI and TUM files and a top-view plot) instead.",
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="image files, folders, glob patterns (quoted) or one video; prefix with 'trajectory' for the trajectory mode")
    p.add_argument("--checkpoint", "-k", required=True,
                   help="featdepth checkpoint, official FeatDepth .pth, or monodepth2 model folder")
    p.add_argument("--out", "-o", help="output folder (default: featdepth_predictions/ or featdepth_trajectory/)")
    g = p.add_argument_group("outputs")
    g.add_argument("--color", action=argparse.BooleanOptionalAction, default=True,
                   help="colour-mapped disparity PNG (magma, 95th-percentile vmax; default: on)")
    g.add_argument("--npy", action="store_true", help="float32 depth .npy at the input resolution")
    g.add_argument("--png16", action="store_true", help="16-bit PNG depth: round(depth x 256), clipped to 65535 (KITTI)")
    g.add_argument("--ply", action="store_true", help="coloured point cloud .ply (needs intrinsics)")
    g.add_argument("--ply-ascii", action="store_true", help="ASCII PLY instead of binary little-endian")
    g.add_argument("--ply-max-depth", type=float, help="drop points farther than this")
    g.add_argument("--side-by-side", action="store_true", help="input | depth video (video input)")
    g.add_argument("--all", action="store_true", help="every output that applies")
    g = p.add_argument_group("camera and scale")
    g.add_argument("--intrinsics", help="pixel intrinsics of the INPUT resolution: a file (3x3, or 'fx fy cx cy') or 'fx fy cx cy'")
    g.add_argument("--kitti-intrinsics", action="store_true", help="use KITTI's normalised K (0.58, 1.92, 0.5, 0.5) at each input's size")
    g.add_argument("--scale", type=float, help="multiply depth (and pose translation) by this factor instead of the model's default")
    g.add_argument("--real-baseline", type=float, help="real stereo baseline (m) of a stereo model's folder training data")
    g = p.add_argument_group("running")
    g.add_argument("--batch-size", "-b", type=int, default=4, help="frames per forward pass (default: 4)")
    g.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    g.add_argument("--amp", default="none", choices=["none", "bf16", "fp16"], help="autocast precision (default: none)")
    g.add_argument("--every", type=int, default=1, help="use every N-th video frame")
    g.add_argument("--max-frames", type=int, help="stop after this many frames")
    g.add_argument("--fps", type=float, help="trajectory: frame rate for TUM timestamps of image folders")
    g.add_argument("--vmax-percentile", type=float, default=95.0, help="colour-map upper percentile (default: 95)")
    g.add_argument("--codec", help="video encoder for --side-by-side (default: libx264, else mpeg4)")
    g.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    _add_official_args(p)
    p.set_defaults(func=cmd_predict)

    exp = sub.add_parser("export", help="ONNX export, official checkpoint conversion").add_subparsers(
        dest="export_command", metavar="ACTION")
    exp.required = True
    p = exp.add_parser("onnx", help="export the depth (and pose) network to ONNX, verified with onnxruntime")
    p.add_argument("--checkpoint", "-k", required=True)
    p.add_argument("--out", "-o", required=True, help="depth network .onnx")
    p.add_argument("--pose-out", help="pose network .onnx (optional)")
    p.add_argument("--opset", type=int, default=18, help="ONNX opset (default: 18)")
    p.add_argument("--exporter", default="auto", choices=["auto", "dynamo", "legacy"],
                   help="torch.onnx exporter: dynamo (torch.export) or legacy (TorchScript); auto (default) tries dynamo first")
    p.add_argument("--atol", type=float, default=1e-4, help="onnxruntime vs PyTorch tolerance, relative for depth (default: 1e-4)")
    _add_official_args(p)
    p.set_defaults(func=cmd_export_onnx, device="cpu", amp="none")

    p = exp.add_parser("convert-official", help="convert an official FeatDepth / monodepth2 checkpoint to featdepth's format")
    p.add_argument("--checkpoint", "-k", required=True, help="official FeatDepth .pth or monodepth2 model folder")
    p.add_argument("--out", "-o", required=True, help="output featdepth checkpoint (.pt)")
    p.add_argument("--allow-partial", action="store_true",
                   help="write the checkpoint even when keys do not map (they are reported)")
    _add_official_args(p)
    p.set_defaults(func=cmd_export_convert)
