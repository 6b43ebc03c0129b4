"""`--help` speaks to users: the overview says what to do first, and every option with a default
shows it."""

import argparse

import pytest

from mmlens.cli import build_parser, main


def _commands(parser, name="mmlens"):
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child_name, child in action.choices.items():
                yield from _commands(child, f"{name} {child_name}")


def test_every_default_is_in_the_help(capsys):
    checked = 0
    for name, parser in _commands(build_parser()):
        text = " ".join(parser.format_help().split())
        for action in parser._actions:
            default = action.default
            if not action.option_strings or default in (None, argparse.SUPPRESS, [], ""):
                continue
            if isinstance(default, bool):
                continue  # a flag: off unless given
            assert f"(default: {default})" in text, (name, action.option_strings)
            checked += 1
    assert checked > 30


def test_top_level_help_says_where_to_start(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    assert "Start here:" in text and "mmlens report --out report/" in text
    assert "mmlens run shapes --out runs/shapes" in text
    assert "One module per group" not in text  # the code's layout is not the user's business
