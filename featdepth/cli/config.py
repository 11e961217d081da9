"""``featdepth config list|show``: the presets and the resolved configuration.

Examples::

    featdepth config list                    (each preset with its one-line description)
    featdepth config show --config kitti_featdepth_ms --set optim.lr=5e-5
"""

from __future__ import annotations

import argparse

import yaml

from featdepth.cli.common import add_config_args, load_cfg

EXAMPLES = __doc__.split("Examples::", 1)[1]


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``featdepth config``."""
    p = sub.add_parser("config", help="list presets or print a resolved config", epilog=EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", choices=["list", "show"],
                   help="list: the presets with one-line descriptions; show: the resolved config of --config")
    add_config_args(p)
    p.set_defaults(func=cmd_config)


def preset_description(name: str) -> str:
    """A packaged preset's one-line description: the first clause of its leading comment (up to the first
    ``": "`` or ``". "`` outside parentheses, within the first comment line), or ``""``."""
    from importlib import resources  # lazy: keeps `featdepth --help` fast

    text = (resources.files("featdepth") / "configs" / f"{name}.yaml").read_text(encoding="utf-8")
    first = next((line.lstrip("#").strip() for line in text.splitlines() if line.startswith("#")), "")
    depth = 0
    for i, ch in enumerate(first):
        depth += (ch == "(") - (ch == ")")
        if depth == 0 and ch in ":." and first[i + 1 : i + 2] in (" ", ""):
            return first[:i]
    return first.rstrip(",;")


def cmd_config(args: argparse.Namespace) -> int:
    from featdepth.config import config_to_dict, preset_names  # lazy: keeps `featdepth --help` fast

    if args.action == "list":
        names = preset_names()
        width = max(len(n) for n in names)
        for name in names:
            print(f"{name:<{width}}  {preset_description(name)}")
        return 0
    cfg = load_cfg(args)
    print(yaml.safe_dump(config_to_dict(cfg), sort_keys=False), end="")
    return 0
