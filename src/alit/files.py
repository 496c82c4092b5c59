"""Files written whole: a reader sees the old file or the new one, never half of one."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable


def atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    """`write(tmp)` into a hidden temporary file beside `path` (named by this process, so concurrent
    writers never share one), then rename it over `path`; the temporary goes if `write` fails."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
