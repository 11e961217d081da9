"""What the subcommands share: the user-error type, config arguments, devices, model loading."""

from __future__ import annotations

import argparse
import sys
from typing import Any, Callable, Sequence


class CLIError(Exception):
    """A user error reported as one line, exit status 2."""


def add_config_args(p: argparse.ArgumentParser, default: str | None = None) -> None:
    p.add_argument("--config", "-c", default=default,
                   help="preset name (see `featdepth config list`) or a YAML file")
    p.add_argument("--set", "-s", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set optim.lr=2e-4 (repeatable)")


def load_cfg(args: argparse.Namespace, extra: Sequence[str] = ()):
    from featdepth.config import load_config  # lazy: keeps `featdepth --help` fast

    return load_config(args.config, list(args.overrides) + list(extra))


def resolve_device_arg(name: str):
    from featdepth.utils.runtime import resolve_device  # lazy: keeps `featdepth --help` fast

    return resolve_device(name)


def progress_enabled(args: argparse.Namespace) -> bool:
    return not getattr(args, "quiet", False) and sys.stderr.isatty()


def official_options(args: argparse.Namespace) -> dict[str, Any]:
    opts: dict[str, Any] = {}
    if getattr(args, "train_size", None):
        text = args.train_size.lower().replace("×", "x")
        try:
            w, h = (int(v) for v in text.split("x"))
        except ValueError:
            raise CLIError(f"--train-size must look like WIDTHxHEIGHT (e.g. 1024x320), got {args.train_size!r}") from None
        opts.update(height=h, width=w)
    if getattr(args, "frame_ids", None):
        opts["frame_ids"] = args.frame_ids
    if getattr(args, "stereo_baseline", None) is not None:
        text = str(args.stereo_baseline).strip().lower()
        opts["stereo_baseline"] = None if text in ("none", "real", "null") else float(text)
    if getattr(args, "trust_checkpoint", False):
        opts["trust_checkpoint"] = True  # featdepth.load and load_official take it from here
    return opts


def add_trust_arg(p: argparse.ArgumentParser) -> None:
    """``--trust-checkpoint``: allow full unpickling of a legacy checkpoint (see README "Sharing and loading
    checkpoints safely")."""
    p.add_argument("--trust-checkpoint", action="store_true",
                   help="load a legacy checkpoint that needs full unpickling (can run code: only for files from a "
                        "trusted source); by default only tensors and plain data are read")


def trusting(args: argparse.Namespace, fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` run with legacy checkpoints allowed when ``--trust-checkpoint`` was given (for commands that load
    checkpoints deeper down, e.g. ``evaluate``): ``trusting(args, evaluate_depth_checkpoint)(...)``."""
    from featdepth.utils.checkpoint_io import trusted_checkpoints  # lazy: keeps `featdepth --help` fast

    def run(*a: Any, **kw: Any) -> Any:
        with trusted_checkpoints(bool(getattr(args, "trust_checkpoint", False))):
            return fn(*a, **kw)

    return run


def add_official_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("official checkpoints (FeatDepth .pth, monodepth2 folders)")
    g.add_argument("--train-size", metavar="WxH", help="training size of an official checkpoint (default: 1024x320 "
                   "for FeatDepth, 640x192 for its joint model, the stored size for monodepth2)")
    g.add_argument("--frame-ids", metavar="IDS", help="training frames of an official checkpoint, e.g. '0,-1,1,s' "
                   "(default: FeatDepth's MS setting)")
    g.add_argument("--stereo-baseline", metavar="B", help="baseline convention of an official stereo model in metres, "
                   "or 'real' (default: 0.015 FeatDepth, 0.1 monodepth2)")
    add_trust_arg(p)


#: ``--backend`` choices (the names :data:`featdepth.inference.backends.BACKENDS` holds; kept here so that
#: ``featdepth --help`` does not import torch).
BACKEND_CHOICES = ("auto", "eager", "channels_last", "onnxruntime")


def add_backend_arg(p: Any) -> None:
    """``--backend {auto,eager,channels_last,onnxruntime}`` (default auto) on a parser or argument group."""
    p.add_argument("--backend", default="auto", choices=BACKEND_CHOICES,
                   help="how the networks run: auto (default: onnxruntime on the CPU when installed, else "
                        "channels_last; channels_last on CUDA), eager (plain PyTorch float32), channels_last, or "
                        "onnxruntime (CPU; exported once per model and cached, see docs/usage_predict.md)")


def load_model_arg(args: argparse.Namespace):
    from featdepth.inference.loading import load  # lazy: keeps `featdepth --help` fast

    return load(
        args.checkpoint,
        device=args.device,
        amp=args.amp,
        real_baseline=getattr(args, "real_baseline", None),
        batch_size=max(1, int(getattr(args, "batch_size", 4) or 4)),
        official=official_options(args),
        backend=getattr(args, "backend", None) or "auto",
    )


