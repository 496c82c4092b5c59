"""The command line's parsers: every command answers --help, and a shared option reads the same in each."""
from __future__ import annotations

import argparse

import pytest

from alit.cli import build_parser
from alit.cli.options import CRITERION_HELP


def commands(parser=None, prefix=()):
    """(argv prefix, parser) of every command and sub-command."""
    parser = parser or build_parser()
    for action in parser._actions:  # argparse has no public way to reach a subcommand's parser
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield prefix + (name,), sub
                yield from commands(sub, prefix + (name,))


def option(parser, flag):
    return next((a for a in parser._actions if flag in a.option_strings), None)


def test_every_command_explains_itself_and_has_a_function():
    seen = dict(commands())
    assert {" ".join(k) for k in seen} >= {"verify-reference", "convert", "reconstruct", "demo", "data photos",
                                           "data fashion-mnist", "train", "eval", "analyze", "probe", "visualize",
                                           "bench", "tokenize", "decode", "models"}
    for argv, parser in seen.items():
        assert parser.format_help().startswith(f"usage: alit {' '.join(argv)} "), argv
        if not any(isinstance(a, argparse._SubParsersAction) for a in parser._actions):  # a command, not a group
            assert len(parser.description) > 80 and callable(parser.get_default("func")), argv


@pytest.mark.parametrize("command", ["reconstruct", "demo", "eval", "tokenize"])
def test_the_criterion_reads_the_same_in_every_command(command):
    parser = dict(commands())[(command,)]
    criterion = option(parser, "--criterion")
    assert criterion.help.endswith(": " + CRITERION_HELP) and criterion.default is None


def test_batch_size_is_n_images_per_forward_pass_wherever_a_model_runs_on_many():
    for argv, parser in commands():
        batch = option(parser, "--batch-size")
        if batch is not None and argv != ("bench",):  # bench: images per call, and --batch too
            assert batch.metavar == "N" and batch.help == f"images per forward pass (default {batch.default})", argv
