"""What `alit tokenize` says while it runs, on stderr: a progress bar (on a terminal, unless
--no-progress), the warnings `alit reconstruct` gives about images (the first few of each kind by
name, then a count), and, on a rerun, how much an earlier run had already written."""
from __future__ import annotations

from ..progress import progress_bar, say
from .readers import Source

NAMED = 3  # images named per kind of warning; beyond, the closing count


def warn(line: str) -> None:
    say(f"alit tokenize: warning: {line}")


def progress(source: Source, todo: list[int], rank: int, world: int, show: bool, what: str):
    """A bar with images/s and ETA on rank 0 (its own share of the parts), as `progress_bar`: off
    (every call on it does nothing) on other ranks, with show False, with nothing to do, and when
    stderr is not a terminal."""
    on = rank == 0 and show and bool(todo)
    sizes = [source.part_images(p) for p in todo] if on else []
    desc = what if world == 1 else f"{what} (rank 0 of {world})"
    return progress_bar(None if None in sizes else sum(sizes), desc, enabled=on)


class Notes:
    """The warnings about images read (`readers.Chunk.notes`): one line each for the first NAMED of
    a kind, then, by `close`, one line with the count of that kind."""

    def __init__(self, size: int, warn=warn):
        self.size, self.warn = size, warn
        self.counts: dict[str, int] = {}

    def add(self, notes: list[dict]) -> None:
        for note in notes:
            count = self.counts[note["kind"]] = self.counts.get(note["kind"], 0) + 1
            if count <= NAMED:
                self.warn(self._line(note))

    def _line(self, note: dict) -> str:
        if note["kind"] == "enlarged":
            return (f"{note['key']} is {note['detail']} pixels, smaller than the model's {self.size}x{self.size}: "
                    f"enlarged (its tokens are of a blurred image)")
        return f"{note['key']} is animated ({note['detail']}): only its first frame is read"

    def close(self) -> None:
        what = {"enlarged": f"smaller than {self.size}x{self.size} and enlarged",
                "animated": "animated, their first frames read"}
        for kind, count in self.counts.items():
            if count > NAMED:
                self.warn(f"{count} images in all were {what[kind]} ({NAMED} named above)")


def resuming(parts: dict[int, dict], measured: int, num_parts: int) -> str | None:
    """The line a rerun says first: how many parts (and images) an earlier run wrote, or, for
    --mean-tokens, how many parts it measured; None for a fresh run."""
    if parts:
        images = sum(r["rows"] for r in parts.values())
        skipped = sum(len(r["skipped"]) for r in parts.values())
        also = f", {skipped} skipped" if skipped else ""
        return f"resuming: {len(parts)} of {num_parts} parts already written ({images} images{also})"
    if measured:
        return f"resuming: {measured} of {num_parts} parts already measured (--mean-tokens' first pass)"
    return None
