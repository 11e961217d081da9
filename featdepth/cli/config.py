"""``featdepth config list|show``: the presets and the resolved configuration.

Examples::

    featdepth config list
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
    p.add_argument("action", choices=["list", "show"])
    add_config_args(p)
    p.set_defaults(func=cmd_config)


def cmd_config(args: argparse.Namespace) -> int:
    from featdepth.config import config_to_dict, preset_names  # lazy: keeps `featdepth --help` fast

    if args.action == "list":
        for name in preset_names():
            print(name)
        return 0
    cfg = load_cfg(args)
    print(yaml.safe_dump(config_to_dict(cfg), sort_keys=False), end="")
    return 0
