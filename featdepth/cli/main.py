"""The ``featdepth`` command line: the parser, and the mapping of errors to exit codes.

Subcommands (one module each in :mod:`featdepth.cli`)::

    featdepth train       --config PRESET|FILE [--set key=value ...] [--resume PATH|auto]
    featdepth demo        [--out DIR] [--steps N] [--device cpu|cuda]
    featdepth data        synth | export-gt | kitti-download
    featdepth evaluate    depth | pose
    featdepth predict     IMAGES|VIDEO --checkpoint CKPT [outputs]
    featdepth export      onnx | convert-official
    featdepth experiment  run | report | presets
    featdepth config      list | show PRESET [--set ...]
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

from featdepth import __version__
from featdepth.cli import config as config_cmd
from featdepth.cli import data, demo, evaluate, experiment, export, predict, train
from featdepth.cli.common import CLIError

COMMANDS = (train, demo, data, evaluate, predict, export, experiment, config_cmd)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="featdepth",
        description="Self-supervised depth and ego-motion with the feature-metric loss (FeatDepth).",
        epilog="Run `featdepth COMMAND --help` for a command's options and examples.",
    )
    parser.add_argument("--version", action="version", version=f"featdepth {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module in COMMANDS:
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from featdepth.config import ConfigError  # lazy: keeps `featdepth --help` fast

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
        if "--debug" in sys.argv or os.environ.get("FEATDEPTH_DEBUG"):
            raise
        print(f"featdepth: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
