"""The ``featdepth`` command line: the parser, and the mapping of errors to exit codes.

Subcommands (one module each in :mod:`featdepth.cli`)::

    featdepth train       --config PRESET|FILE [--set key=value ...] [--resume PATH|auto]
    featdepth demo        [--out DIR] [--steps N] [--device cpu|cuda]
    featdepth data        from-video | synth | export-gt | kitti-download
    featdepth evaluate    depth | pose
    featdepth predict     IMAGES|VIDEO --checkpoint CKPT [outputs]   (predict trajectory ...: camera paths)
    featdepth info        CKPT [--json]
    featdepth export      onnx | convert-official
    featdepth experiment  run | report | presets
    featdepth config      list | show PRESET [--set ...]
    featdepth app         [--checkpoint CKPT] [--host 127.0.0.1] [--port 7860] [--share no]
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

from featdepth import __version__
from featdepth.cli import config as config_cmd
from featdepth.cli import app, data, demo, evaluate, experiment, export, info, predict, train
from featdepth.cli.common import CLIError

COMMANDS = (train, demo, data, evaluate, predict, info, export, experiment, config_cmd, app)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="featdepth",
        description="Self-supervised depth and ego-motion with the feature-metric loss (FeatDepth).",
        epilog="Run `featdepth COMMAND --help` for a command's options and examples.",
    )
    parser.add_argument("--version", action="version", version=f"featdepth {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback of an error (also: FEATDEPTH_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module in COMMANDS:
        module.register(sub)
    _examples_to_actions(parser)
    return parser


def _examples_to_actions(parser: argparse.ArgumentParser) -> None:
    """Give every action of a command (``data synth``, ``export onnx`` ...) without examples of its own the
    lines of its command's examples that run it, so that each ``--help`` shows its own examples."""
    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction):
            continue
        for name, child in action.choices.items():
            _examples_to_actions(child)
            if child.epilog or not parser.epilog:
                continue
            picked: list[str] = []
            keep = False
            for line in parser.epilog.splitlines():
                text = line.strip()
                keep = (text + " ").startswith(f"{parser.prog} {name} ") or (keep and bool(picked) and picked[-1].endswith("\\"))
                if keep:
                    picked.append(line.rstrip())
            if picked:
                child.epilog = "examples:\n" + "\n".join(picked)
                child.formatter_class = argparse.RawDescriptionHelpFormatter


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if predict.is_trajectory_argv(argv):
        # `predict trajectory` has its own options and --help (see featdepth.cli.predict)
        i = argv.index("predict")
        args = predict.build_trajectory_parser().parse_args(argv[:i] + argv[i + 2 :])
    else:
        args = build_parser().parse_args(argv)
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
        if getattr(args, "debug", False) or "--debug" in sys.argv or os.environ.get("FEATDEPTH_DEBUG"):
            raise
        print(f"featdepth: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
