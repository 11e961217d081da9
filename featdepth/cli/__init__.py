"""The ``featdepth`` command line: one module per command, :func:`main` the entry point."""

from featdepth.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
