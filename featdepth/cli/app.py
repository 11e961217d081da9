"""``featdepth app``: a local web page to look at depth, point clouds and trajectories (needs the ``app`` extra).

Examples::

    featdepth app                                  # serves demo-output/checkpoint.pt on http://127.0.0.1:7860
    featdepth app --checkpoint runs/kitti_featdepth_ms/best.pt --port 8000
    featdepth app --checkpoint model.pt --host 0.0.0.0   # reachable from the local network (no login!)

Install the page's dependencies with `pip install "featdepth[app]"` (Gradio, trimesh, PyAV).
"""

from __future__ import annotations

import argparse
import sys

from featdepth.cli.common import CLIError

EXAMPLES = __doc__.split("Examples::", 1)[1]


def _yes_no(text: str) -> bool:
    value = text.strip().lower()
    if value in ("yes", "y", "true", "1", "on"):
        return True
    if value in ("no", "n", "false", "0", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected yes or no, got {text!r}")


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``featdepth app``."""
    p = sub.add_parser("app", help="a local web page: depth, point clouds and trajectories of your images and videos",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default=None, metavar="CKPT",
                   help="featdepth checkpoint, official FeatDepth .pth or monodepth2 folder "
                        "(default: demo-output/checkpoint.pt, written by `make demo`)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=7860, help="port (default: 7860)")
    p.add_argument("--share", type=_yes_no, default=False, metavar="yes|no",
                   help="also publish the page through Gradio's public share link (default: no)")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto")
    p.add_argument("--max-frames", type=int, default=300, metavar="N",
                   help="most frames of a video the page takes (default: 300)")
    p.set_defaults(func=cmd_app)


def cmd_app(args: argparse.Namespace) -> int:
    from featdepth.app.handlers import AppError, AppState, default_examples_dir, find_checkpoint, load_model  # lazy: keeps `featdepth --help` fast
    from featdepth.app.ui import default_work_dir, launch, require_gradio  # lazy: keeps `featdepth --help` fast

    if args.max_frames < 1:
        raise CLIError(f"--max-frames must be >= 1, got {args.max_frames}")
    if not 0 < args.port < 65536:
        raise CLIError(f"--port must be in 1..65535, got {args.port}")
    try:
        checkpoint = find_checkpoint(args.checkpoint)
        require_gradio()
        model = load_model(checkpoint, device=args.device)
        state = AppState(model=model, work_dir=default_work_dir(), examples_dir=default_examples_dir(),
                         max_frames=args.max_frames)
        if args.host not in ("127.0.0.1", "localhost", "::1"):
            print(f"featdepth app: listening on {args.host}: anyone who can reach this machine can use the page",
                  file=sys.stderr)
        if args.share:
            print("featdepth app: --share yes publishes the page on a public gradio.live address", file=sys.stderr)
        print(f"featdepth app: serving {checkpoint} ({model.depth_kind} depth) on http://{args.host}:{args.port}",
              file=sys.stderr, flush=True)
        launch(state, host=args.host, port=args.port, share=args.share)
    except AppError as exc:
        raise CLIError(str(exc)) from None
    return 0
