"""`alit <command>`: one module per command group, each with its `add_parser(sub)` beside the small
function that runs it over the library; the options they share are in options.py."""
from __future__ import annotations

import argparse
import sys

from .. import __version__
from ..errors import AlitError
from . import analyze, bench, convert, data, demo, eval, eval_generator, generate, models, probe, reconstruct, \
    tokenize, train, verify, visualize

# in the order `alit --help` lists them
GROUPS = (verify, convert, reconstruct, demo, data, train, eval, analyze, probe, visualize, bench, tokenize, models,
          generate, eval_generator)


class _OneLineParser(argparse.ArgumentParser):
    """argparse with its usage mistakes on one line, pointing at --help (subcommands inherit it)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _OneLineParser(
        prog="alit", description="Adaptive-length image tokenization (ALIT): encode an image into "
        "as few 1D tokens as it needs, decode them back, train, evaluate.")
    p.add_argument("--version", action="version", version=f"alit {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for group in GROUPS:
        group.add_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:2] == ["eval", "generator"]:  # one command of two words (cli/eval_generator.py)
        argv = ["eval generator", *argv[2:]]
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except AlitError as e:
        print(f"alit {args.command}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # the file system said no (a full disk, a folder we may not write): one line
        where = f"{e.filename}: " if e.filename else ""
        print(f"alit {args.command}: error: {where}{e.strerror or e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
