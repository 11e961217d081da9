"""``featdepth train``: one training stage, or the two-stage flow (FeatureNet first, then depth and pose).

Examples::

    featdepth train --config synthetic_small --out runs/synth
    featdepth train --config kitti_featdepth_ms --set data.path=data/kitti_raw --set optim.batch_size=8
    featdepth train --config kitti_featdepth_ms --out runs/ms --resume auto
    featdepth train --config synthetic_small --out runs/synth --overwrite   # delete the earlier run there first
    torchrun --nproc_per_node 4 -m featdepth train --config kitti_featdepth_ms --out runs/ms
"""

from __future__ import annotations

import argparse
import json
import sys

from featdepth.cli.common import CLIError, add_config_args, load_cfg

EXAMPLES = __doc__.split("Examples::", 1)[1]


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``featdepth train``."""
    p = sub.add_parser("train", help="train a model (one stage or the two-stage flow)", epilog=EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_args(p, default="synthetic_small")
    p.add_argument("--out", help="output folder (train.out_dir; default: runs/<preset>-<data folder>-<date-time>)")
    p.add_argument("--resume", help="checkpoint to resume from, or 'auto' for the newest good one in the output folder "
                   "(without --out: the newest default folder of this preset and data)")
    p.add_argument("--overwrite", action="store_true",
                   help="the output folder holds an earlier run: delete it (checkpoints, config.yaml, logs) and start again")
    p.add_argument("--device", help="cpu, cuda, cuda:N or auto (train.device)")
    p.add_argument("--steps", type=int, help="stop after this many steps (optim.max_steps)")
    p.set_defaults(func=cmd_train)


def cmd_train(args: argparse.Namespace) -> int:
    from featdepth.training.distributed import env_dist_info  # lazy: keeps `featdepth --help` fast
    from featdepth.training import setup  # lazy: keeps `featdepth --help` fast
    from featdepth.training.trainer import run_training  # lazy: keeps `featdepth --help` fast

    extra = []
    if args.out:
        extra.append(f"train.out_dir={args.out}")
    if args.device:
        extra.append(f"train.device={args.device}")
    if args.steps is not None:
        extra.append(f"optim.max_steps={args.steps}")
    cfg = load_cfg(args, extra)
    user_out = args.out or any(o.split("=", 1)[0].strip() == "train.out_dir" for o in args.overrides)
    if not user_out and setup.is_default_out_dir(cfg.train.out_dir):
        if env_dist_info().enabled:
            raise CLIError("under torchrun give --out (every process, and every restart, must use the same folder)")
        preset = args.config or "run"
        earlier = setup.newest_default_run(preset, cfg.data.path) if args.resume == "auto" else None
        cfg.train.out_dir = str(earlier or setup.default_run_dir(preset, cfg.data.path))
    if env_dist_info().is_main:
        from featdepth.training.summary import training_summary  # lazy: keeps `featdepth --help` fast

        print("[featdepth] " + training_summary(cfg).replace("\n", "\n[featdepth] "), file=sys.stderr, flush=True)
    summary = run_training(cfg, resume=args.resume, overwrite=args.overwrite)
    if env_dist_info().is_main:
        print(json.dumps(summary, indent=2, default=str))
    return 0
