"""Every command's --help: its own text, examples, and help on every option (a walk over the parser)."""

from __future__ import annotations

import argparse

import pytest

from featdepth.cli import main
from featdepth.cli.main import build_parser
from featdepth.cli.predict import build_trajectory_parser


def _walk(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """Yield ``(command path, parser)`` for the parser and every sub-command below it."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _walk(sub, path + (name,))


PARSERS = list(_walk(build_parser())) + [(("predict", "trajectory"), build_trajectory_parser())]
LEAVES = [(p, parser) for p, parser in PARSERS
          if not any(isinstance(a, argparse._SubParsersAction) for a in parser._actions)]


@pytest.mark.parametrize("path, parser", PARSERS, ids=[" ".join(p) or "featdepth" for p, _ in PARSERS])
def test_every_option_has_help(path, parser):
    missing = [a.option_strings[0] if a.option_strings else a.dest for a in parser._actions
               if not isinstance(a, argparse._SubParsersAction) and not a.help]
    assert not missing, f"`featdepth {' '.join(path)}`: options without help: {missing}"


@pytest.mark.parametrize("path, parser", LEAVES, ids=[" ".join(p) for p, _ in LEAVES])
def test_every_command_has_its_own_text_and_two_examples(path, parser):
    text = parser.format_help()
    assert parser.description or any(path[-1] in line for line in text.splitlines()[:1]), path
    examples = [line for line in (parser.epilog or "").splitlines() if line.strip().startswith("featdepth ")]
    assert len(examples) >= 2, f"`featdepth {' '.join(path)} --help` shows {len(examples)} examples"
    assert all(f"featdepth {path[0]}" in e or e.strip().startswith("featdepth") for e in examples)


def test_help_texts_differ_between_commands():
    texts = {" ".join(p): parser.format_help() for p, parser in LEAVES}
    assert len(set(texts.values())) == len(texts)
    assert "trajectory_kitti.txt" in texts["predict trajectory"] and "--ply" not in texts["predict trajectory"]


def test_errors_have_no_exception_class_names(tmp_path, capsys):
    rc = main(["predict", str(tmp_path / "missing.png"), "--checkpoint", str(tmp_path / "c.pt"), "--device", "cpu", "-q"])
    err = capsys.readouterr().err
    assert rc != 0 and "missing" in err or "c.pt" in err
    assert "Error:" not in err and "Exception" not in err


def test_public_api_has_docstrings():
    import inspect

    import featdepth
    from featdepth.inference.model import Model

    missing = []
    for name, value in inspect.getmembers(Model):
        if name.startswith("_"):
            continue
        fn = value.fget if isinstance(value, property) else value
        if callable(fn) and not (fn.__doc__ or "").strip():
            missing.append(name)
    assert not missing, f"Model members without a docstring: {missing}"
    assert "checkpoint" in (featdepth.load.__doc__ or "")
