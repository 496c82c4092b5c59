"""The progress bar of every command that can take more than a few seconds: tqdm on stderr (its
rate and ETA), drawn only when stderr is a terminal, so a pipe, a file or a log gets none, and
not at all when a command is given `--no-progress` (enabled=False)."""
from __future__ import annotations

import os
import sys
from typing import Iterable, TypeVar

from tqdm import tqdm

T = TypeVar("T")


def progress_bar(total: int | None, desc: str | None, enabled: bool = True, unit: str = "image", **options) -> tqdm:
    """A bar of `total` units on stderr, to `update(n)` (use it as a context manager). Off unless
    `enabled` and stderr is a terminal (tqdm's disable=None); off, every call on it does nothing.
    `options`: more of tqdm's (initial=, smoothing=)."""
    return tqdm(total=total, desc=desc, unit=unit, **_on_stderr(enabled), **options)


def tracked(items: Iterable[T], total: int | None, desc: str, enabled: bool = True, unit: str = "image"
            ) -> Iterable[T]:
    """`items` as they are, with a bar that counts one unit for each (as `progress_bar`)."""
    return tqdm(items, total=total, desc=desc, unit=unit, **_on_stderr(enabled))


def _on_stderr(enabled: bool) -> dict:
    """tqdm's options: stderr, as wide as the terminal; a terminal that reports no width (a
    pseudo-terminal nobody sized) gets 80 x 24, where tqdm would draw nothing at all."""
    try:
        sized = os.get_terminal_size(sys.stderr.fileno()).columns > 0
    except (AttributeError, OSError, ValueError):  # not a terminal (then no bar anyway), or no file number
        sized = True
    width = {"dynamic_ncols": True} if sized else {"ncols": 80, "nrows": 24}
    return {"file": sys.stderr, "disable": None if enabled else True, **width}


def say(line: str) -> None:
    """A line on stderr that leaves a bar being drawn intact (it is redrawn under the line)."""
    tqdm.write(line, file=sys.stderr)
