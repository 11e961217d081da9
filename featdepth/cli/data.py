"""``featdepth data synth|export-gt|kitti-download|from-video``.

Examples::

    featdepth data from-video drive.mp4 --intrinsics calib.txt --out my_data/drive --every 2 --resize 640x192

    featdepth data synth --out data/synth --sequences 4 --frames 100
    featdepth data synth --out data/synth_small --sequences 2 --frames 30 --height 96 --width 320 --no-stereo
    featdepth data synth --out data/synth_turns --sequences 2 --frames 60 --weave   # a camera that turns
    featdepth data kitti-download --out data/kitti_raw --list kitti_archives_to_download.txt --dry-run
    featdepth data kitti-download --out data/kitti_raw --list kitti_archives_to_download.txt --unpack
    featdepth data export-gt --data-path data/kitti_raw --split-file splits/eigen/test_files.txt --out gt_depths.npz
    featdepth data export-gt --data-path data/kitti_raw --split-dir splits --split eigen_benchmark --mode benchmark \\
        --gt-path data/kitti_depth --out gt_depths_benchmark.npz
"""

from __future__ import annotations

import argparse
from pathlib import Path

from featdepth.cli.common import CLIError

EXAMPLES = __doc__.split("Examples::", 1)[1]


def cmd_data_synth(args: argparse.Namespace) -> int:
    from featdepth.data.synthetic import WEAVE_OPTIONS, generate_dataset  # lazy: keeps `featdepth --help` fast

    try:
        paths = generate_dataset(
            Path(args.out), num_sequences=args.sequences, seed=args.seed, num_frames=args.frames,
            height=args.height, width=args.width, stereo=not args.no_stereo, progress=True,
            **(WEAVE_OPTIONS if args.weave else {}),
        )
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    for p in paths:
        print(p)
    return 0


def resolve_split(args: argparse.Namespace, required: bool) -> None:
    """``--split-dir D --split NAME`` -> ``args.split_file = D/NAME/test_files.txt``."""
    if args.split is not None or args.split_dir is not None:
        if args.split_file is not None:
            raise CLIError("give --split-file, or --split-dir with --split, not both")
        if args.split is None or args.split_dir is None:
            raise CLIError("--split-dir and --split go together (they name <split-dir>/<split>/test_files.txt)")
        args.split_file = str(Path(args.split_dir) / args.split / "test_files.txt")
    if required and args.split_file is None:
        raise CLIError("give --split-file (e.g. <splits>/eigen/test_files.txt), or --split-dir and --split")


def add_split_args(p: argparse.ArgumentParser, required_hint: str) -> None:
    p.add_argument("--split-file", help=f"split file, lines '<date>/<drive> <frame> <l|r>' ({required_hint})")
    p.add_argument("--split-dir", help="folder of splits (e.g. a checkout of monodepth2's splits/); with --split")
    p.add_argument("--split", help="split name under --split-dir (eigen, eigen_benchmark, ...); reads its test_files.txt")


def cmd_export_gt(args: argparse.Namespace) -> int:
    from featdepth.evaluation.gt_export import export_gt_depths  # lazy: keeps `featdepth --help` fast

    resolve_split(args, required=True)
    if not Path(args.data_path).is_dir():
        raise CLIError(f"--data-path is not a folder: {args.data_path}")
    if not Path(args.split_file).is_file():
        raise CLIError(f"--split-file not found: {args.split_file}")
    if args.gt_path is not None and args.mode != "benchmark":
        raise CLIError("--gt-path is only used with --mode benchmark")
    out = export_gt_depths(args.data_path, args.split_file, args.out, args.mode, gt_path=args.gt_path,
                           duplicates=args.duplicates)
    print(f"wrote {out}")
    return 0


def cmd_kitti_download(args: argparse.Namespace) -> int:
    from featdepth.data.download import download_archives, read_archive_list  # lazy: keeps `featdepth --help` fast

    out = Path(args.out)
    list_file = Path(args.list) if args.list else out / "kitti_archives_to_download.txt"
    if not list_file.is_file():
        raise CLIError(
            f"archive list not found: {list_file}. featdepth ships no copy of the KITTI archive list: pass --list FILE "
            "(e.g. monodepth2's splits/kitti_archives_to_download.txt, one URL per line, or names relative to --base-url)"
        )
    if args.only is not None and args.only < 0:
        raise CLIError(f"--only must be >= 0, got {args.only}")
    urls = read_archive_list(list_file, base_url=args.base_url)
    results = download_archives(
        urls, out, only=args.only, unpack=args.unpack, remove_archives=args.remove_archives, dry_run=args.dry_run,
        retries=args.retries, timeout=args.timeout, backoff=args.backoff, progress=not args.quiet,
    )
    if args.dry_run:
        print(f"{len(results)} archive(s) listed; nothing downloaded (dry run)")
    else:
        print(f"{len(results)} archive(s) complete in {out}")
    return 0


FROM_VIDEO_EXAMPLES = """examples:
  featdepth data from-video drive.mp4 --intrinsics K.txt --out my_data/drive_a
  featdepth data from-video drive.mp4 --intrinsics "910 910 640 360" --out my_data/drive_a --every 2 --resize 640x384

--intrinsics are the pixel intrinsics of the VIDEO's resolution; intrinsics.txt holds them scaled to the
stored size. Then: featdepth train --config own_video --set data.path=my_data
"""


def cmd_from_video(args: argparse.Namespace) -> int:
    from featdepth.data.video import frames_from_video  # lazy: keeps `featdepth --help` fast

    summary = frames_from_video(args.video, args.out, args.intrinsics, camera=args.camera, every=args.every,
                                max_frames=args.max_frames, resize=args.resize, image_format=args.format,
                                progress=not args.quiet)
    if not args.quiet:
        print(f"wrote {summary['frames']} frames ({summary['stored_size'][0]}x{summary['stored_size'][1]}) to "
              f"{Path(args.out) / 'images'} and {Path(args.out) / 'intrinsics.txt'}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``featdepth data synth|export-gt|kitti-download|from-video``."""
    data_sub = sub.add_parser("data", help="data tools: own video to frames, synthetic scenes, KITTI ground truth and downloads",
                              description="Data tools.", epilog=EXAMPLES,
                              formatter_class=argparse.RawDescriptionHelpFormatter).add_subparsers(
        dest="data_command", metavar="ACTION")
    data_sub.required = True
    p = data_sub.add_parser("synth", help="generate synthetic driving sequences with ground truth")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--sequences", type=int, default=4, help="number of sequences (default: 4)")
    p.add_argument("--frames", type=int, default=100, help="frames per sequence (default: 100)")
    p.add_argument("--height", type=int, default=128, help="image height in pixels (default: 128)")
    p.add_argument("--width", type=int, default=416, help="image width in pixels (default: 416)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the scenes (default: 0)")
    p.add_argument("--no-stereo", action="store_true", help="do not render the right camera")
    p.add_argument("--weave", action="store_true",
                   help="a camera that weaves across the road and turns (heading up to ~11 deg, up to ~1.2 deg per frame) "
                        "instead of staying in its lane: sequences that can show whether rotation is learned")
    p.set_defaults(func=cmd_data_synth)

    # data export-gt
    p = data_sub.add_parser("export-gt", help="export KITTI ground-truth depth of a split to gt_depths.npz (monodepth2 format)")
    p.add_argument("--data-path", required=True, help="KITTI raw root (holding the <date> folders)")
    add_split_args(p, "e.g. eigen/test_files.txt")
    p.add_argument("--out", required=True, help="output .npz (key 'data': one depth map per line)")
    p.add_argument("--mode", choices=["velodyne", "benchmark"], default="velodyne",
                   help="velodyne: project the Velodyne scans (eigen); benchmark: KITTI depth annotated PNGs (eigen_benchmark)")
    p.add_argument("--gt-path", default=None, help="root of the KITTI depth annotated tree (benchmark mode)")
    p.add_argument("--duplicates", choices=["monodepth2", "nearest"], default="monodepth2",
                   help="pixel collisions: bit-exact monodepth2 rule (default) or plain nearest")
    p.set_defaults(func=cmd_export_gt)

    # data kitti-download
    p = data_sub.add_parser("kitti-download", help="list or download (with resume) and unpack the KITTI raw archives of a list file")
    p.add_argument("--out", required=True, help="download folder; --unpack makes it the KITTI raw root")
    p.add_argument("--list", default=None,
                   help="archive list: one URL (or name relative to --base-url) per line, e.g. monodepth2's "
                        "kitti_archives_to_download.txt (default: OUT/kitti_archives_to_download.txt); not shipped")
    p.add_argument("--base-url", default=None, help="prefix for relative names in the list")
    p.add_argument("--only", type=int, default=None, metavar="N", help="process only the first N archives")
    p.add_argument("--unpack", action="store_true", help="extract the .zip archives into --out")
    p.add_argument("--remove-archives", action="store_true", help="delete each archive after extracting it")
    p.add_argument("--dry-run", action="store_true", help="list URLs, destinations and their state; download nothing")
    p.add_argument("--retries", type=int, default=5, help="retries per archive for network errors (default 5)")
    p.add_argument("--timeout", type=float, default=60.0, help="socket time-out in seconds")
    p.add_argument("--backoff", type=float, default=2.0, help="pause before retry k is BACKOFF*k seconds")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_kitti_download)

    # data from-video
    p = data_sub.add_parser("from-video", help="turn your own video into a training sequence (images/ + intrinsics.txt)",
                            description="Decode a video (PyAV: pip install \"featdepth[video]\") into the folder format: "
                            "OUT/images/NNNNNN.png named by source frame number, OUT/intrinsics.txt of the stored size.",
                            epilog=FROM_VIDEO_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("video", metavar="VIDEO", help="the video file (anything FFmpeg decodes: mp4, mov, mkv, ...)")
    p.add_argument("--intrinsics", required=True, metavar="FILE|'fx fy cx cy'",
                   help="pixel intrinsics of the video's resolution: a file (3x3; 'fx fy cx cy' on one line or four; "
                        "KITTI calib.txt or calib_cam_to_cam.txt) or the four numbers in quotes")
    p.add_argument("--camera", default=None, metavar="P0..P3", help="KITTI calibration files: which camera (default: P2, left colour)")
    p.add_argument("--out", required=True, help="output sequence folder (images/ must be empty or absent)")
    p.add_argument("--every", type=int, default=1, metavar="N", help="keep every N-th frame (default: 1; names keep source frame numbers)")
    p.add_argument("--max-frames", type=int, default=None, metavar="N", help="stop after N kept frames")
    p.add_argument("--resize", default=None, metavar="WxH", help="store frames at this size; intrinsics are scaled to match")
    p.add_argument("--format", choices=["png", "jpg"], default="png", help="image format of the frames (default: png, lossless)")
    p.add_argument("--quiet", "-q", action="store_true", help="print nothing but errors")
    p.set_defaults(func=cmd_from_video)
