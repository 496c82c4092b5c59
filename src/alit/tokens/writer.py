"""Files of `alit tokenize` written whole (to a temporary name, then renamed), and the background
thread that writes each finished part while the model works on the next."""
from __future__ import annotations

import json
import queue
import threading
from pathlib import Path

from ..errors import AlitError
from ..files import atomic_write

WRITES_AHEAD = 2           # finished parts that may wait for the writer thread


def write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text))


def write_json(path: Path, obj) -> None:
    write_text(path, json.dumps(obj, indent=1) + "\n")


class Writer:
    """Files written by one background thread while the model works on the next parts.

    `put(path, write, *args)` queues `write(*args)`, which writes `path`; the queue is bounded, so
    at most WRITES_AHEAD finished parts wait in memory. The first failure stops the run: the next
    `put`, or leaving the block, raises it as a one-line AlitError. Leaving the block, at the end,
    on an error or on Ctrl-C, first waits for everything queued, so no finished part is lost."""

    def __init__(self):
        self.queue: queue.Queue = queue.Queue(WRITES_AHEAD)
        self.error: AlitError | None = None
        self.thread = threading.Thread(target=self._run, name="alit-tokenize-writer", daemon=True)
        self.thread.start()

    def put(self, path: Path, write, *args) -> None:
        self._raise()
        self.queue.put((path, write, args))

    def _run(self) -> None:
        while (job := self.queue.get()) is not None:
            path, write, args = job
            if self.error is None:  # after a failure, queued files are dropped: the run stops
                try:
                    write(*args)
                except Exception as e:
                    self.error = AlitError(f"{path}: could not write it ({_one_line(e)})")

    def _raise(self) -> None:
        if self.error is not None:
            raise self.error

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        self.queue.put(None)
        self.thread.join()
        if kind is None:
            self._raise()


def _one_line(e: Exception) -> str:
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
