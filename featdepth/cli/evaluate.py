"""``featdepth evaluate depth|pose``: KITTI depth (Eigen) and odometry evaluations.

Examples::

    featdepth evaluate depth --checkpoint best.pt --data-path data/kitti_raw \\
        --split-file splits/eigen/test_files.txt --gt gt_depths.npz --scaling stereo
    featdepth evaluate depth --pred disps_eigen_split.npy --gt gt_depths.npz --pred-kind disparity
    featdepth evaluate depth --checkpoint best.pt --data-path data/kitti_raw --split-file test_files.txt \
        --scaling camera-height --camera-height 1.65
    featdepth evaluate pose --checkpoint best.pt --data-path data/kitti_odom --sequence 09 --out pose-09
    featdepth evaluate pose --pred 09_pred.txt --gt poses/09.txt --protocol kitti --align scale
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from featdepth.cli.common import CLIError, add_trust_arg, progress_enabled, resolve_device_arg, trusting
from featdepth.cli.data import add_split_args, resolve_split

EXAMPLES = __doc__.split("Examples::", 1)[1]


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``featdepth evaluate depth|pose``."""
    ev = sub.add_parser("evaluate", help="KITTI depth (Eigen) and odometry evaluations", description=__doc__.split("Examples::")[0],
                        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter).add_subparsers(
        dest="evaluate_command", metavar="WHAT")
    ev.required = True

    # evaluate depth
    p = ev.add_parser("depth", help="depth metrics (abs_rel ... a3) of a checkpoint or of precomputed predictions")
    src = p.add_argument_group("inputs (a checkpoint and data, or a prediction file)")
    src.add_argument("--checkpoint", help="training checkpoint; predicts at the model's training size")
    src.add_argument("--data-path", help="KITTI raw root (--dataset kitti_raw) or folder-format root (--dataset folder)")
    src.add_argument("--dataset", choices=["kitti_raw", "folder"], default="kitti_raw",
                     help="layout of --data-path: KITTI raw (default) or the folder format")
    add_split_args(src, "KITTI raw, e.g. <splits>/eigen/test_files.txt")
    src.add_argument("--sequences", nargs="+", default=None, help="folder dataset: sequences to evaluate (default all)")
    src.add_argument("--pred", help="precomputed predictions .npy/.npz, N x h x w, in the order of --gt")
    src.add_argument("--pred-kind", choices=["disparity", "depth"], default="disparity",
                     help="what --pred holds (disparity: proportional to 1/depth, resized then inverted)")
    src.add_argument("--gt", help="gt_depths.npz (monodepth2 format); default with --checkpoint: the dataset's GT depth")
    src.add_argument("--mask-invalid", action="store_true",
                     help="--pred files: leave NaN, infinite or negative predicted values out (counted in the report) "
                          "instead of refusing the file")
    q = p.add_argument_group("protocol")
    q.add_argument("--protocol", choices=["eigen", "eigen_benchmark"], default="eigen",
                   help="eigen: Garg crop, 1e-3 < gt < 80; eigen_benchmark: improved GT, gt > 0, no crop")
    q.add_argument("--scaling", type=_scaling_arg, default="median",
                   help="median (per image, monocular models), stereo (the checkpoint's metric factor: 36 for the "
                        "0.015 baseline, 1 for the real one), camera-height (metric scale from the ground "
                        "plane of the predicted depth and the camera height; no ground truth), none, or a number")
    q.add_argument("--camera-height", type=_camera_height_arg, metavar="METRES",
                   help="with --scaling camera-height: the camera's height above the ground (default: 1.65 for KITTI "
                        "raw; a folder dataset's camera_height.txt per sequence, required without one)")
    q.add_argument("--height-from", choices=["auto", "plane", "level"], default="auto",
                   help="with --scaling camera-height: how the camera's height above the fitted ground is measured: plane "
                        "(its distance from the camera, any camera orientation) or level (the median height of the "
                        "ground points, for a camera mounted level as on KITTI's car; more accurate on predicted depth); "
                        "auto (default): level for KITTI and the synthetic scenes, plane for other folder data")
    q.add_argument("--camera-height-scale", choices=["sequence", "frame"], default="sequence",
                   help="with --scaling camera-height: evaluate every image with its sequence's median recovered scale "
                        "(default, as `predict --camera-height` does for a video) or with its own; both are reported")
    q.add_argument("--post-process", action="store_true", help="flip test-time augmentation with the edge blend (docs/method.md §4.1)")
    q.add_argument("--min-depth", type=float, default=1e-3, help="evaluate ground truth deeper than this, metres (default: 1e-3)")
    q.add_argument("--max-depth", type=float, default=80.0, help="evaluate ground truth up to this, metres; predictions are "
                   "clipped to it (default: 80)")
    r = p.add_argument_group("online refinement (test-time training; reported separately from plain results)")
    r.add_argument("--refine", choices=["none", "per-sample", "whole-split"], default="none",
                   help="online refinement: none (default), per-sample (fine-tune on each test image, reset after it) "
                        "or whole-split (fine-tune on the whole test split once)")
    r.add_argument("--refine-steps", type=int, default=20, help="per-sample: iterations per test image (default 20)")
    r.add_argument("--refine-epochs", type=int, default=20, help="whole-split: epochs over the test split (default 20)")
    r.add_argument("--refine-lr", type=float, default=None, help="default: the checkpoint's optim.lr")
    r.add_argument("--refine-batch-size", type=int, default=None, help="whole-split batch size (default: the checkpoint's)")
    r.add_argument("--refine-max-steps", type=int, default=None, help="whole-split: stop after this many steps")
    r.add_argument("--save-refined", default=None, help="whole-split: save the refined model as a checkpoint")
    o = p.add_argument_group("output and running")
    add_trust_arg(o)
    o.add_argument("--json", help="write metrics, per-image values and settings as JSON")
    o.add_argument("--save-pred", help="checkpoint runs: save the scaled disparities (.npy, or .npz key 'data')")
    o.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto")
    o.add_argument("--batch-size", type=int, default=4, help="images per forward pass (default: 4)")
    o.add_argument("--num-workers", type=int, default=0, help="data-loading worker processes (default: 0, in-process)")
    o.add_argument("--quiet", "-q", action="store_true", help="no progress output (the metrics are still printed)")
    p.set_defaults(func=cmd_evaluate_depth)

    # evaluate pose
    p = ev.add_parser("pose", help="odometry: 5-frame ATE and KITTI t_err/r_err; writes trajectories and a plot")
    src = p.add_argument_group("inputs (a checkpoint and an odometry sequence, or trajectory files)")
    src.add_argument("--checkpoint", help="training checkpoint with a PoseNet")
    src.add_argument("--data-path", help="KITTI odometry root (sequences/NN/image_2 ..., poses/NN.txt)")
    src.add_argument("--sequence", help="sequence id, e.g. 09")
    src.add_argument("--cameras", choices=["color", "grey"], default="color",
                     help="colour image_2 (default) or grey image_0 (what the official FeatDepth code read)")
    src.add_argument("--max-frames", type=int, default=None, help="use only the first N frames")
    src.add_argument("--pred", help="predicted trajectory: KITTI (12 columns of T_world_cam) or TUM "
                     "(t tx ty tz qx qy qz qw), detected from the file, e.g. what `featdepth predict trajectory` writes")
    src.add_argument("--gt", help="ground-truth trajectory, KITTI or TUM (default with --checkpoint: DATA/poses/NN.txt)")
    src.add_argument("--trim", action="store_true",
                     help="--pred/--gt of different lengths: evaluate the first min(N_pred, N_gt) poses (reported) "
                          "instead of stopping with an error")
    q = p.add_argument_group("protocol")
    q.add_argument("--protocol", choices=["ate5", "kitti", "both"], default="both",
                   help="ate5: 5-frame-snippet ATE; kitti: devkit t_err / r_err over 100-800 m segments; both (default)")
    q.add_argument("--align", choices=["none", "scale", "sim3"], default=None,
                   help="alignment for the KITTI metrics and the plot (default: scale, as FeatDepth for monocular "
                        "models; none with --scaling camera-height)")
    q.add_argument("--scaling", choices=["none", "camera-height"], default="none",
                   help="camera-height: metric trajectory, PoseNet translations times the sequence's median scale "
                        "recovered from the depth network and the camera height (needs --checkpoint)")
    q.add_argument("--camera-height", type=_camera_height_arg, metavar="METRES",
                   help="with --scaling camera-height: the camera's height above the ground (default: 1.65, KITTI)")
    q.add_argument("--height-from", choices=["auto", "plane", "level"], default="auto",
                   help="with --scaling camera-height: how the camera's height above the fitted ground is measured: plane "
                        "(its distance from the camera, any camera orientation) or level (the median height of the "
                        "ground points, for a camera mounted level as on KITTI's car; more accurate on predicted depth); "
                        "auto (default): level for KITTI and the synthetic scenes, plane for other folder data")
    o = p.add_argument_group("output and running")
    add_trust_arg(o)
    o.add_argument("--out", default=None, help="folder for trajectories (KITTI, TUM), plot and JSON (default with --checkpoint: pose-eval)")
    o.add_argument("--name", default=None, help="file-name prefix (default: the sequence, or the --pred file name)")
    o.add_argument("--json", help="metrics JSON path (default OUT/<name>_pose_metrics.json)")
    o.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    o.add_argument("--batch-size", type=int, default=8, help="frame pairs per forward pass (default: 8)")
    o.add_argument("--num-workers", type=int, default=0, help="data-loading worker processes (default: 0, in-process)")
    o.add_argument("--quiet", "-q", action="store_true", help="print nothing but errors (files are still written)")
    p.set_defaults(func=cmd_evaluate_pose)


# ------------------------------------------------------------------------------------------
# evaluate depth


def cmd_evaluate_depth(args: argparse.Namespace) -> int:
    from featdepth.tasks.evaluate import RefineOptions, evaluate_depth_checkpoint, evaluate_depth_files  # lazy: keeps `featdepth --help` fast

    if (args.checkpoint is None) == (args.pred is None):
        raise CLIError("give either --checkpoint (with --data-path) or --pred (with --gt)")
    if args.pred is not None:
        if args.gt is None:
            raise CLIError("--pred needs --gt gt_depths.npz")
        for flag in ("refine", "data_path", "split_file", "split_dir", "split", "sequences"):
            if getattr(args, flag) not in (None, "none", []):
                raise CLIError(f"--{flag.replace('_', '-')} only applies with --checkpoint")
        if args.post_process:
            raise CLIError("--post-process needs the model (--checkpoint); precomputed predictions are evaluated as given")
        if args.scaling == "camera-height" or args.camera_height is not None:
            raise CLIError("--scaling camera-height needs the model (--checkpoint with --data-path): the scale comes "
                           "from the predicted depth and the dataset's intrinsics")
        ev = evaluate_depth_files(args.pred, args.gt, pred_kind=args.pred_kind, protocol=args.protocol,
                                  scaling=args.scaling, min_depth=args.min_depth, max_depth=args.max_depth,
                                  invalid_predictions="mask" if args.mask_invalid else "error")
    else:
        if args.mask_invalid:
            raise CLIError("--mask-invalid applies to --pred files; a checkpoint predicting non-finite depth is broken")
        if args.data_path is None:
            raise CLIError("--checkpoint needs --data-path (KITTI raw root, or a folder dataset with --dataset folder)")
        resolve_split(args, required=False)
        if args.dataset == "kitti_raw" and args.split_file is None:
            raise CLIError("--dataset kitti_raw needs --split-file (e.g. <splits>/eigen/test_files.txt) or --split-dir and --split")
        if args.sequences and args.dataset != "folder":
            raise CLIError("--sequences applies to --dataset folder")
        if args.save_refined and args.refine != "whole-split":
            raise CLIError("--save-refined applies to --refine whole-split")
        ev = trusting(args, evaluate_depth_checkpoint)(
            args.checkpoint, args.data_path, split_file=args.split_file, gt_path=args.gt, dataset=args.dataset,
            sequences=args.sequences or None, protocol=args.protocol, scaling=args.scaling,
            post_process=args.post_process, min_depth=args.min_depth, max_depth=args.max_depth,
            refine=RefineOptions(args.refine, steps=args.refine_steps, epochs=args.refine_epochs, lr=args.refine_lr,
                                 batch_size=args.refine_batch_size, max_steps=args.refine_max_steps,
                                 save_refined=args.save_refined), device=resolve_device_arg(args.device), batch_size=args.batch_size,
            num_workers=args.num_workers, progress=progress_enabled(args), camera_height=args.camera_height,
            camera_height_scale=args.camera_height_scale, height_from=args.height_from,
        )
        if args.save_pred:
            import numpy as np

            Path(args.save_pred).parent.mkdir(parents=True, exist_ok=True)
            np.save(args.save_pred, ev.disparities) if str(args.save_pred).endswith(".npy") else np.savez_compressed(
                args.save_pred, data=ev.disparities)
    print(ev.summary())
    if args.json:
        path = ev.to_json(args.json)
        print(f"wrote {path}")
    return 0


# ------------------------------------------------------------------------------------------
# evaluate pose


def cmd_evaluate_pose(args: argparse.Namespace) -> int:
    from featdepth.tasks.evaluate import evaluate_pose_checkpoint, evaluate_pose_files  # lazy: keeps `featdepth --help` fast

    if (args.checkpoint is None) == (args.pred is None):
        raise CLIError("give either --checkpoint (with --data-path and --sequence) or --pred (with --gt)")
    if args.pred is not None:
        if args.gt is None:
            raise CLIError("--pred needs --gt (a KITTI or TUM trajectory of the same frames)")
        if args.scaling == "camera-height" or args.camera_height is not None:
            raise CLIError("--scaling camera-height needs the model (--checkpoint): the scale comes from its depth network")
        ev = evaluate_pose_files(args.pred, args.gt, protocol=args.protocol, align=args.align or "scale", out_dir=args.out,
                                 json_path=args.json, name=args.name, trim=args.trim)
    else:
        if args.data_path is None or args.sequence is None:
            raise CLIError("--checkpoint needs --data-path (KITTI odometry root) and --sequence (e.g. 09)")
        ev = trusting(args, evaluate_pose_checkpoint)(
            args.checkpoint, args.data_path, args.sequence, cameras=args.cameras, gt_path=args.gt,
            protocol=args.protocol, align=args.align, out_dir=args.out or "pose-eval", json_path=args.json,
            device=resolve_device_arg(args.device), batch_size=args.batch_size, num_workers=args.num_workers,
            max_frames=args.max_frames, progress=progress_enabled(args), scaling=args.scaling,
            camera_height=args.camera_height, height_from=args.height_from,
        )
    if args.quiet:
        return 0
    print(ev.summary())
    if not ev.files and args.json is None:
        print(json.dumps(ev.metrics, indent=2))
    return 0


def _camera_height_arg(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected the camera height in metres (a number > 0), got {text!r}") from None
    if not (value > 0 and value != float("inf")):
        raise argparse.ArgumentTypeError(f"the camera height must be > 0 metres, got {text!r}")
    return value


def _scaling_arg(text: str) -> str:
    t = text.strip().lower()
    if t in ("median", "stereo", "none", "camera-height"):
        return t
    try:
        value = float(t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected median, stereo, camera-height, none or a positive number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"a scaling factor must be positive, got {text!r}")
    return t


