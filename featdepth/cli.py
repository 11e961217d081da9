"""The ``featdepth`` command line.

Subcommands::

    featdepth train     --config PRESET|FILE [--set key=value ...] [--resume PATH|auto]
    featdepth demo      [--out DIR] [--steps N] [--device cpu|cuda]
    featdepth data      synth | export-gt | kitti-download
    featdepth evaluate  depth | pose
    featdepth predict   IMAGES|VIDEO --checkpoint CKPT [outputs]
    featdepth export    onnx --checkpoint CKPT --out FILE
    featdepth config    list | show PRESET [--set ...]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Callable, Sequence

import yaml

from featdepth import __version__

Handler = Callable[[argparse.Namespace], int]


class CLIError(Exception):
    """A user error reported as one line, exit status 2."""


# ------------------------------------------------------------------------------------------
# train / config


def _add_config_args(p: argparse.ArgumentParser, default: str | None = None) -> None:
    p.add_argument("--config", "-c", default=default,
                   help="preset name (see `featdepth config list`) or a YAML file")
    p.add_argument("--set", "-s", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set optim.lr=2e-4 (repeatable)")


def _load_cfg(args: argparse.Namespace, extra: Sequence[str] = ()):
    from featdepth.config import load_config

    return load_config(args.config, list(args.overrides) + list(extra))


def cmd_train(args: argparse.Namespace) -> int:
    from featdepth.engine.trainer import run_training

    extra = []
    if args.out:
        extra.append(f"train.out_dir={args.out}")
    if args.device:
        extra.append(f"train.device={args.device}")
    if args.steps is not None:
        extra.append(f"optim.max_steps={args.steps}")
    cfg = _load_cfg(args, extra)
    summary = run_training(cfg, resume=args.resume)
    from featdepth.engine.distributed import env_dist_info

    if env_dist_info().is_main:
        print(json.dumps(summary, indent=2, default=str))
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    from featdepth.config import config_to_dict, preset_names

    if args.action == "list":
        for name in preset_names():
            print(name)
        return 0
    cfg = _load_cfg(args)
    print(yaml.safe_dump(config_to_dict(cfg), sort_keys=False), end="")
    return 0


# ------------------------------------------------------------------------------------------
# demo


def cmd_demo(args: argparse.Namespace) -> int:
    from featdepth.demo import run_demo

    run_demo(out_dir=Path(args.out), steps=args.steps, device=args.device, overrides=args.overrides)
    return 0


# ------------------------------------------------------------------------------------------
# data


def cmd_data_synth(args: argparse.Namespace) -> int:
    from featdepth.data.synthetic import generate_dataset

    paths = generate_dataset(
        Path(args.out), num_sequences=args.sequences, seed=args.seed, num_frames=args.frames,
        height=args.height, width=args.width, stereo=not args.no_stereo, progress=True,
    )
    for p in paths:
        print(p)
    return 0


# ------------------------------------------------------------------------------------------
# parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="featdepth", description="Self-supervised depth and ego-motion with the feature-metric loss (FeatDepth).")
    parser.add_argument("--version", action="version", version=f"featdepth {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("train", help="train a model (one stage or the two-stage flow)")
    _add_config_args(p, default="synthetic_small")
    p.add_argument("--out", help="output folder (train.out_dir)")
    p.add_argument("--resume", help="checkpoint to resume from, or 'auto' for the newest good one in the output folder")
    p.add_argument("--device", help="cpu, cuda, cuda:N or auto (train.device)")
    p.add_argument("--steps", type=int, help="stop after this many steps (optim.max_steps)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("demo", help="generate synthetic data, train two-stage FeatDepth, evaluate, write pictures")
    p.add_argument("--out", default="demo-output", help="output folder (default: demo-output/)")
    p.add_argument("--steps", type=int, default=None, help="depth-stage training steps (default: the preset's)")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto")
    p.add_argument("--set", "-s", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a key of the demo preset")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("config", help="list presets or print a resolved config")
    p.add_argument("action", choices=["list", "show"])
    _add_config_args(p)
    p.set_defaults(func=cmd_config)

    data = sub.add_parser("data", help="data tools").add_subparsers(dest="data_command", metavar="ACTION")
    data.required = True
    p = data.add_parser("synth", help="generate synthetic driving sequences with ground truth")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--sequences", type=int, default=4)
    p.add_argument("--frames", type=int, default=100)
    p.add_argument("--height", type=int, default=128)
    p.add_argument("--width", type=int, default=416)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-stereo", action="store_true", help="do not render the right camera")
    p.set_defaults(func=cmd_data_synth)

    for register in _EXTRA_COMMANDS:
        register(sub, data)
    return parser


# Later modules (evaluation, prediction, export) register their subcommands here.
_EXTRA_COMMANDS: list[Callable[[argparse._SubParsersAction, argparse._SubParsersAction], None]] = []


def _register_optional() -> None:
    import importlib

    for module in ("featdepth.cli_evaluate", "featdepth.cli_predict", "featdepth.cli_experiment"):
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
            continue
        if mod.register not in _EXTRA_COMMANDS:
            _EXTRA_COMMANDS.append(mod.register)


def main(argv: Sequence[str] | None = None) -> int:
    _register_optional()
    parser = build_parser()
    args = parser.parse_args(argv)
    from featdepth.config import ConfigError

    try:
        return int(args.func(args) or 0)
    except (CLIError, ConfigError) as exc:
        print(f"featdepth: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("featdepth: interrupted", file=sys.stderr)
        return 130
    except (FileNotFoundError, ValueError, RuntimeError, OSError) as exc:
        # Library errors already name the file, key or value; show them without a traceback.
        if "--debug" in sys.argv or __import__("os").environ.get("FEATDEPTH_DEBUG"):
            raise
        print(f"featdepth: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
