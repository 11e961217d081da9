"""``featdepth predict``: depth maps, point clouds and camera trajectories from a trained model.

Examples::

    featdepth predict frames/*.png --checkpoint demo-output/checkpoint.pt --out preds --npy --ply --kitti-intrinsics
    featdepth predict drive.mp4 --checkpoint best.pt --side-by-side --every 2
    featdepth predict trajectory frames/ --checkpoint best.pt --out traj
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from featdepth.cli.common import CLIError, add_official_args, load_model_arg

EXAMPLES = __doc__.split("Examples::", 1)[1]


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``featdepth predict``."""
    p = sub.add_parser(
        "predict",
        help="depth for images, folders, globs or videos (or `predict trajectory` for camera paths)",
        description="Predict depth with a trained model. `featdepth predict trajectory VIDEO|FOLDER ...` chains "
        "PoseNet outputs into a camera trajectory (KITTI and TUM files and a top-view plot) instead.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
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
    add_official_args(p)
    p.set_defaults(func=cmd_predict)



def cmd_predict(args: argparse.Namespace) -> int:
    from featdepth.tasks.predict import PredictError, PredictOptions, parse_intrinsics, resolve_inputs, run_predict, run_trajectory  # lazy: keeps `featdepth --help` fast

    inputs = list(args.inputs)
    trajectory = inputs[0] == "trajectory" and (len(inputs) > 1 or not Path("trajectory").exists())
    if trajectory:
        inputs = inputs[1:]
    progress = not args.quiet
    try:
        if trajectory:
            # Checkpoint first, then every input, then outputs.
            model = load_model_arg(args)
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
            model = load_model_arg(args)
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


