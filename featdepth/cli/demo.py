"""``featdepth demo``: synthetic scenes, two-stage FeatDepth training and evaluation, with no download.

Examples::

    featdepth demo
    featdepth demo --steps 200 --out demo-small
    featdepth demo --set train.stage=baseline --set train.seed=3
    featdepth demo --weave --out demo-weave      # a camera that turns: can PoseNet learn rotation?
"""

from __future__ import annotations

import argparse
from pathlib import Path

EXAMPLES = __doc__.split("Examples::", 1)[1]


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``featdepth demo``."""
    p = sub.add_parser("demo", help="generate synthetic data, train two-stage FeatDepth, evaluate, write pictures",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="demo-output", help="output folder (default: demo-output/)")
    p.add_argument("--steps", type=int, default=None, help="depth-stage training steps (default: the preset's)")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto")
    p.add_argument("--weave", action="store_true",
                   help="scenes where the camera weaves across the road and turns (up to ~1.2 deg per frame) instead of "
                        "keeping its lane (~0.13 deg per frame, too little to learn rotation from)")
    p.add_argument("--set", "-s", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a key of the demo preset")
    p.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    from featdepth.tasks.demo import run_demo  # lazy: keeps `featdepth --help` fast

    overrides = list(args.overrides)
    if args.weave:
        from featdepth.data.synthetic import WEAVE_OPTIONS  # lazy: keeps `featdepth --help` fast

        overrides = [f"data.synth_options.{k}={list(v) if isinstance(v, tuple) else v}"
                     for k, v in WEAVE_OPTIONS.items()] + overrides
    run_demo(out_dir=Path(args.out), steps=args.steps, device=args.device, overrides=overrides)
    return 0
