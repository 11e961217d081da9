"""``featdepth train``: one training stage, or the two-stage flow (FeatureNet first, then depth and pose).

Examples::

    featdepth train --config synthetic_small --out runs/synth
    featdepth train --config kitti_featdepth_ms --set data.path=data/kitti_raw --set optim.batch_size=8
    featdepth train --config kitti_featdepth_ms --out runs/ms --resume auto
    torchrun --nproc_per_node 4 -m featdepth train --config kitti_featdepth_ms --out runs/ms
"""

from __future__ import annotations

import argparse
import json

from featdepth.cli.common import add_config_args, load_cfg

EXAMPLES = __doc__.split("Examples::", 1)[1]


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``featdepth train``."""
    p = sub.add_parser("train", help="train a model (one stage or the two-stage flow)", epilog=EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_args(p, default="synthetic_small")
    p.add_argument("--out", help="output folder (train.out_dir)")
    p.add_argument("--resume", help="checkpoint to resume from, or 'auto' for the newest good one in the output folder")
    p.add_argument("--device", help="cpu, cuda, cuda:N or auto (train.device)")
    p.add_argument("--steps", type=int, help="stop after this many steps (optim.max_steps)")
    p.set_defaults(func=cmd_train)


def cmd_train(args: argparse.Namespace) -> int:
    from featdepth.training.distributed import env_dist_info  # lazy: keeps `featdepth --help` fast
    from featdepth.training.trainer import run_training  # lazy: keeps `featdepth --help` fast

    extra = []
    if args.out:
        extra.append(f"train.out_dir={args.out}")
    if args.device:
        extra.append(f"train.device={args.device}")
    if args.steps is not None:
        extra.append(f"optim.max_steps={args.steps}")
    cfg = load_cfg(args, extra)
    summary = run_training(cfg, resume=args.resume)
    if env_dist_info().is_main:
        print(json.dumps(summary, indent=2, default=str))
    return 0
