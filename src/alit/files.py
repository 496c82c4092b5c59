"""Files written whole: a reader sees the old file or the new one, never half of one."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable


def atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    """`write(tmp)` into a hidden temporary file beside `path` (named by this process, so concurrent
    writers never share one), then rename it over `path`; the temporary goes if `write` fails.

    The file gets the permissions of any new file (0o666 less the umask), whatever `write` made:
    safetensors' `save_file` creates owner-only (0o600) files, which collaborators cannot read."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _umask() -> int:
    """The process's umask now (reading it means setting it: it is put straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
