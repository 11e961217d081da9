"""``featdepth predict``: depth maps, point clouds and camera trajectories from a trained model.

Examples::

    featdepth predict frames/*.png --checkpoint demo-output/checkpoint.pt --out preds --npy --ply --kitti-intrinsics
    featdepth predict drive.mp4 --checkpoint best.pt --side-by-side --every 2 --cmap turbo --colorbar
    featdepth predict trajectory frames/ --checkpoint best.pt --out traj
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Sequence

from featdepth.cli.common import CLIError, add_backend_arg, add_official_args, load_model_arg

EXAMPLES = __doc__.split("Examples::", 1)[1]

TRAJECTORY_EXAMPLES = """examples:
  featdepth predict trajectory drive.mp4 --checkpoint best.pt --out traj --every 2
  featdepth predict trajectory my_data/drive_a/images --checkpoint best.pt --out traj --fps 10

Writes OUT/trajectory_kitti.txt (12 columns of T_world_cam), OUT/trajectory_tum.txt
(t tx ty tz qx qy qz qw), OUT/trajectory_topview.png and OUT/summary.json. Translations are in
relative units unless the model is metric (or --scale is given); the plot's axes say which.
Evaluate against ground truth with: featdepth evaluate pose --pred OUT/trajectory_tum.txt --gt GT.txt
"""


def is_trajectory_argv(argv: Sequence[str]) -> bool:
    """Whether ``argv`` (without the program name) is ``[global options] predict trajectory ...``."""
    argv = list(argv)
    i = next((k for k, a in enumerate(argv) if not a.startswith("-")), None)
    if i is None or argv[i] != "predict" or i + 1 >= len(argv) or argv[i + 1] != "trajectory":
        return False
    return len(argv) > i + 2 or not Path("trajectory").exists()


def _add_running_args(g: argparse._ArgumentGroup) -> None:
    g.add_argument("--batch-size", "-b", type=int, default=4, help="frames per forward pass (default: 4)")
    g.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    g.add_argument("--amp", default="none", choices=["none", "bf16", "fp16"], help="autocast precision (default: none)")
    add_backend_arg(g)
    g.add_argument("--every", type=int, default=1, metavar="N",
                   help="use every N-th frame of a video or of the sorted images (names and index.csv keep source frame numbers)")
    g.add_argument("--max-frames", type=int, metavar="N", help="stop after this many frames")
    g.add_argument("--quiet", "-q", action="store_true", help="print nothing but errors (the summary only with --json)")
    g.add_argument("--json", action="store_true", help="print the summary as JSON on stdout (also with --quiet)")


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``featdepth predict`` (``featdepth predict trajectory`` has its own parser: :func:`build_trajectory_parser`)."""
    p = sub.add_parser(
        "predict",
        help="depth for images, folders, globs or videos (or `predict trajectory` for camera paths)",
        description="Predict depth with a trained model: colour maps, .npy / 16-bit PNG depth, point clouds, "
        "side-by-side videos, an index.csv of inputs and outputs. `featdepth predict trajectory --help` describes "
        "the trajectory mode (PoseNet outputs chained into a camera path).",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="image files, folders, glob patterns (quoted) or one video; 'trajectory' first for the trajectory mode")
    p.add_argument("--checkpoint", "-k", required=True,
                   help="featdepth checkpoint, official FeatDepth .pth, or monodepth2 model folder")
    p.add_argument("--out", "-o", help="output folder (default: featdepth_predictions/)")
    g = p.add_argument_group("outputs")
    g.add_argument("--color", action=argparse.BooleanOptionalAction, default=True,
                   help="colour-mapped disparity PNG (default: on)")
    g.add_argument("--npy", action="store_true", help="float32 depth .npy at the input resolution")
    g.add_argument("--png16", action="store_true", help="16-bit PNG depth: round(depth x 256), clipped to 65535 (KITTI)")
    g.add_argument("--ply", action="store_true", help="coloured point cloud .ply (needs intrinsics)")
    g.add_argument("--ply-ascii", action="store_true", help="ASCII PLY instead of binary little-endian")
    g.add_argument("--ply-max-depth", type=float, help="drop points farther than this")
    g.add_argument("--side-by-side", action="store_true",
                   help="input | depth video (a video input, or images of one size: at --fps)")
    g.add_argument("--all", action="store_true", help="every output that applies")
    g = p.add_argument_group("colours")
    g.add_argument("--cmap", default="magma", help="any matplotlib colour map, e.g. magma (default), viridis, turbo, gray")
    g.add_argument("--colorbar", action="store_true", help="append a colour bar labelled in depth to the colour maps")
    g.add_argument("--color-range", choices=["auto", "fixed", "frame"], default="auto",
                   help="fixed: one range for all frames, from up to 16 sampled frames (no flicker); frame: per frame; "
                        "auto (default): fixed for videos and side-by-side output, per frame otherwise")
    g.add_argument("--vmax-percentile", type=float, default=95.0, help="colour-map upper percentile (default: 95)")
    g = p.add_argument_group("camera and scale")
    g.add_argument("--intrinsics", metavar="FILE|'fx fy cx cy'",
                   help="pixel intrinsics of the INPUT resolution: a file (3x3; 'fx fy cx cy' on one line or four; "
                        "KITTI calib.txt or calib_cam_to_cam.txt) or the four numbers in quotes")
    g.add_argument("--camera", metavar="P0..P3", help="KITTI calibration files: which camera (default: P2, left colour)")
    g.add_argument("--kitti-intrinsics", action="store_true", help="use KITTI's normalised K (0.58, 1.92, 0.5, 0.5) at each input's size")
    g.add_argument("--scale", type=float, help="multiply depth (and pose translation) by this factor instead of the model's default")
    _add_camera_height_arg(g)
    g.add_argument("--real-baseline", type=float, help="real stereo baseline (m) of a stereo model's folder training data")
    g.add_argument("--keep-aspect", action="store_true",
                   help="pad inputs (edge pixels repeated) to the training aspect ratio instead of stretching them; "
                        "outputs stay at the input size")
    g = p.add_argument_group("running")
    _add_running_args(g)
    g.add_argument("--fps", type=float, help="frame rate of a side-by-side video made from images (default: 10)")
    g.add_argument("--codec", help="video encoder for --side-by-side (default: libx264, else mpeg4)")
    add_official_args(p)
    p.set_defaults(func=cmd_predict)


def build_trajectory_parser() -> argparse.ArgumentParser:
    """The parser of ``featdepth predict trajectory`` (dispatched by :func:`featdepth.cli.main.main`)."""
    p = argparse.ArgumentParser(
        prog="featdepth predict trajectory",
        description="Chain PoseNet's relative poses over consecutive frames of a video or an image folder into a "
        "camera trajectory (KITTI and TUM files, a top-view plot).",
        epilog=TRAJECTORY_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="one video, or image files / folders / glob patterns in time order")
    p.add_argument("--checkpoint", "-k", required=True,
                   help="featdepth checkpoint, official FeatDepth .pth, or monodepth2 model folder (needs a PoseNet)")
    p.add_argument("--out", "-o", help="output folder (default: featdepth_trajectory/)")
    p.add_argument("--scale", type=float, help="multiply translations by this factor instead of the model's default")
    _add_camera_height_arg(p)
    p.add_argument("--intrinsics", metavar="FILE|'fx fy cx cy'",
                   help="with --camera-height: pixel intrinsics of the INPUT resolution (a file or the four numbers)")
    p.add_argument("--kitti-intrinsics", action="store_true",
                   help="with --camera-height: KITTI's normalised K (0.58, 1.92, 0.5, 0.5) at the input's size")
    p.add_argument("--real-baseline", type=float, help="real stereo baseline (m) of a stereo model's folder training data")
    p.add_argument("--fps", type=float, help="frame rate for the TUM timestamps of image folders (default: frame index)")
    p.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    g = p.add_argument_group("running")
    _add_running_args(g)
    add_official_args(p)
    p.set_defaults(func=cmd_trajectory, command="predict")
    return p


def _add_camera_height_arg(g: Any) -> None:
    g.add_argument("--camera-height", type=float, metavar="METRES",
                   help="metric output: the camera's height above the ground (e.g. 1.65 for KITTI); the scale is "
                        "recovered from the ground plane of the predicted depth, one median over all frames "
                        "(needs intrinsics; per-frame scales in summary.json and index.csv)")
    g.add_argument("--height-from", choices=["plane", "level"], default="plane",
                   help="with --camera-height: plane (default: the fitted ground plane's distance from the camera, any "
                        "camera orientation) or level (the median height of the ground points: for a camera mounted "
                        "level, as on KITTI's car, and then more accurate on predicted depth)")


def _say(args: argparse.Namespace, text: str) -> None:
    if not args.quiet:
        print(text, file=sys.stderr, flush=True)


def _report(args: argparse.Namespace, model: Any, summary: dict[str, Any], lines: list[str]) -> None:
    report = getattr(model, "conversion_report", None)
    if report is not None and not args.quiet:
        print(report.summary(), file=sys.stderr)
    if args.json:
        print(json.dumps(summary, indent=2))
    elif not args.quiet:
        print("\n".join(lines))


def _camera_height_line(report: dict[str, Any]) -> str:
    return (f"scale from the camera height {report['camera_height']:g} m: {report['scale']:.4g} (median of "
            f"{report['num_accepted']} frame(s), {report['num_rejected']} without a ground plane, spread "
            f"{report['relative_spread']:.1%})")


def cmd_trajectory(args: argparse.Namespace) -> int:
    """``featdepth predict trajectory``."""
    from featdepth.tasks.predict import PredictError, parse_intrinsics, resolve_inputs, run_trajectory  # lazy: keeps `featdepth --help` fast

    progress = not args.quiet
    try:
        _say(args, f"loading {args.checkpoint} ...")
        model = load_model_arg(args)
        _say(args, f"reading {', '.join(map(str, args.inputs[:3]))}{' ...' if len(args.inputs) > 3 else ''}")
        source = resolve_inputs(args.inputs, every=args.every, max_frames=args.max_frames, progress=progress)
        out = Path(args.out or "featdepth_trajectory")
        summary = run_trajectory(model, source, out, batch_size=args.batch_size, scale=args.scale,
                                 fps=args.fps, progress=progress, camera_height=args.camera_height,
                                 height_from=args.height_from,
                                 intrinsics=parse_intrinsics(args.intrinsics) if args.intrinsics else None,
                                 kitti_intrinsics=args.kitti_intrinsics)
    except PredictError as exc:
        raise CLIError(str(exc)) from exc
    files = summary["files"]
    _report(args, model, summary, [
        f"{summary['sequence']}: {summary['poses']} poses, path length {summary['path_length']:.4g} {summary['units']}",
        f"wrote {files['kitti']}, {files['tum']}, {files['plot']}",
    ] + ([_camera_height_line(summary["camera_height"])] if summary.get("camera_height") else []))
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    """``featdepth predict``."""
    from featdepth.tasks.predict import PredictError, PredictOptions, parse_intrinsics, resolve_inputs, run_predict  # lazy: keeps `featdepth --help` fast

    inputs = list(args.inputs)
    if inputs[0] == "trajectory" and (len(inputs) > 1 or not Path("trajectory").exists()):
        raise CLIError("put `trajectory` right after `predict`: featdepth predict trajectory INPUT ... (see --help there)")
    progress = not args.quiet
    try:
        opts = PredictOptions(
            color=args.color,
            npy=args.npy or args.all,
            png16=args.png16 or args.all,
            ply=args.ply or args.all,
            ply_ascii=args.ply_ascii,
            ply_max_depth=args.ply_max_depth,
            side_by_side=args.side_by_side,
            scale=args.scale,
            intrinsics=parse_intrinsics(args.intrinsics, camera=args.camera) if args.intrinsics else None,
            kitti_intrinsics=args.kitti_intrinsics,
            batch_size=args.batch_size,
            vmax_percentile=args.vmax_percentile,
            codec=args.codec,
            progress=progress,
            cmap=args.cmap,
            colorbar=args.colorbar,
            color_range=args.color_range,
            keep_aspect=args.keep_aspect,
            fps=args.fps,
            warn=not args.quiet,
            camera_height=args.camera_height, height_from=args.height_from,
        )
        _say(args, f"loading {args.checkpoint} ...")
        model = load_model_arg(args)
        if args.ply or args.all:
            if opts.intrinsics is None and not opts.kitti_intrinsics and model.K is None:
                raise PredictError(
                    "--ply needs intrinsics: pass --intrinsics FILE|'fx fy cx cy' (pixels, input resolution) "
                    "or --kitti-intrinsics"
                )
        _say(args, f"reading {', '.join(map(str, inputs[:3]))}{' ...' if len(inputs) > 3 else ''}")
        source = resolve_inputs(inputs, every=args.every, max_frames=args.max_frames, progress=progress)
        if args.all and source.kind == "video":
            opts.side_by_side = True
        out = Path(args.out or "featdepth_predictions")
        summary = run_predict(model, source, out, opts)
    except PredictError as exc:
        raise CLIError(str(exc)) from exc
    done = ", ".join(f"{k} {v}" for k, v in summary["outputs"].items()) or "nothing"
    lines = [f"{summary['input']['frames']} frame(s) -> {summary['output_dir']} ({done}); depth: {summary['depth_units']}",
             f"index: {summary['index']}"]
    if summary.get("side_by_side_video"):
        lines.append(f"side-by-side video: {summary['side_by_side_video']}")
    if summary.get("camera_height"):
        lines.append(_camera_height_line(summary["camera_height"]))
    _report(args, model, summary, lines)
    return 0
