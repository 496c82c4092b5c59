"""The safe checkpoint reader: a foreign PyTorch file (the paper's `.pth`, a `.ckpt`) read with
`torch.load(weights_only=True)` and an allow-list, never plain unpickling.

A file that would import anything else is refused, unread, and the refusal names what it would
import: the pickle is scanned statically with `pickletools`, which executes nothing. Zip-format
files (torch.save's) are memory-mapped, so nothing is read for the entries that are dropped later.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import pickle
import pickletools
import warnings
import zipfile
from pathlib import Path

import torch

from .errors import AlitError

SAFE_GLOBALS = [argparse.Namespace]  # the training scripts pickle their `args`


def read_checkpoint(path: str | Path) -> dict:
    """torch.load with weights_only=True and our allow-list; unsafe files get a one-line AlitError."""
    path = Path(path)
    if path.is_dir():
        hint = (" (it is already converted: load it with alit.load)" if (path / "config.json").is_file()
                else "")
        raise AlitError(f"{path}: is a folder; give the checkpoint file (.pth / .ckpt / .pt){hint}")
    if not path.is_file():
        raise AlitError(f"{path}: no such checkpoint file")
    head = _head(path)
    if not head:
        raise AlitError(f"{path}: the file is empty")
    foreign = _foreign_format(head)
    if foreign:
        raise AlitError(f"{path}: not a PyTorch checkpoint ({foreign})")
    zipped = head.startswith(b"PK\x03\x04")  # torch.save's zip format: it can be memory-mapped
    try:
        with _allowed(SAFE_GLOBALS), warnings.catch_warnings():
            # weights_only warns about pickle protocols above 2 before refusing or reading them
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=zipped)
    except Exception as e:
        unsafe, is_pickle = unsafe_globals(path)
        if unsafe:
            more = f" (and {len(unsafe) - 3} more)" if len(unsafe) > 3 else ""
            raise AlitError(f"{path}: refused: loading it would import {', '.join(unsafe[:3])}{more}; "
                            f"only tensors, plain containers and argparse.Namespace are allowed") from None
        if is_pickle and isinstance(e, pickle.UnpicklingError):
            raise AlitError(f"{path}: a pickle that weights_only loading cannot read "
                            f"({_weights_only_reason(e)}); only tensors, plain containers and "
                            f"argparse.Namespace are allowed") from None
        detail = (f"{type(e).__name__}: {_first_sentence(e)}" if zipped or is_pickle
                  else "neither torch.save's zip format nor a pickle")
        raise AlitError(f"{path}: not a readable PyTorch checkpoint, the file is truncated, damaged or "
                        f"of another kind ({detail})") from None
    if not isinstance(obj, dict):
        raise AlitError(f"{path}: expected a dict of tensors, found {type(obj).__name__}")
    return obj


def _allowed(globals_: list):
    """torch's safe_globals context (torch >= 2.5); before it, the process-wide allow-list."""
    if hasattr(torch.serialization, "safe_globals"):
        return torch.serialization.safe_globals(globals_)
    torch.serialization.add_safe_globals(globals_)
    return contextlib.nullcontext()


def _head(path: Path, n: int = 16) -> bytes:
    with open(path, "rb") as f:
        return f.read(n)


def _foreign_format(head: bytes) -> str | None:
    """A short name for common files that are certainly not checkpoints."""
    if head.startswith(b"\x89PNG"):
        return "it is a PNG image"
    if head.startswith(b"\xff\xd8\xff"):
        return "it is a JPEG image"
    if head[8:9] == b"{" and int.from_bytes(head[:8], "little") < 1 << 30:
        return "it is a safetensors file; ours are loaded with alit.load"
    if head.lstrip()[:1] in (b"{", b"["):
        return "it is a JSON / text file"
    return None


def _first_sentence(e: Exception) -> str:
    text = " ".join(str(e).split())
    return (text.split(". ")[0] or "no detail")[:200]


def _weights_only_reason(e: Exception) -> str:
    for line in str(e).splitlines():
        if "Unsupported" in line or "operand" in line:
            return line.strip()[:120]
    return "unsupported pickle content"


def unsafe_globals(path: str | Path) -> tuple[list[str], bool]:
    """(the `module.name`s a pickled file would import that weights_only loading does not allow,
    whether the file holds a well-formed pickle at all).

    Read statically with pickletools, which executes nothing; used to name them when refusing.
    """
    allowed = {f"{g.__module__}.{g.__qualname__}" for g in SAFE_GLOBALS}
    try:  # torch's own allow-list (a private table; without it every global is named)
        from torch._weights_only_unpickler import _get_allowed_globals
        allowed |= set(_get_allowed_globals())
    except Exception:  # pragma: no cover - depends on the torch version
        pass
    names, is_pickle = _pickle_globals(Path(path))
    found = []
    for name in names:
        name = name.replace("__builtin__.", "builtins.")  # protocol-2 pickles use the Python 2 name
        if name not in allowed and name not in found:
            found.append(name)
    return found, is_pickle


def _pickle_globals(path: Path) -> tuple[list[str], bool]:
    """(every global referenced by the pickle(s) in a torch.save zip or a plain / legacy pickle
    file, whether the first pickle is well formed)."""
    if _head(path, 4) == b"PK\x03\x04":  # torch.save's zip format; a damaged one is not scanned
        try:
            with zipfile.ZipFile(path) as z:
                names = [n for n in z.namelist() if n.endswith("data.pkl")]
                streams = [z.read(n) for n in names[:1] if z.getinfo(n).file_size < 256 << 20]
        except (zipfile.BadZipFile, OSError):
            return [], False
    else:
        # the legacy torch format is several pickles in a row, then raw storage bytes
        with open(path, "rb") as f:
            streams = [f.read(64 << 20)]
    found, parsed = [], 0
    for data in streams:
        stream = io.BytesIO(data)
        for _ in range(8):  # pickles in a row; stops at the first thing that is not one
            if stream.tell() >= len(data):
                break
            try:
                _scan_pickle(stream, found)
            except Exception:
                break
            parsed += 1
    return found, parsed > 0


def _scan_pickle(stream: io.BytesIO, found: list[str]) -> None:
    """Append the globals of the pickle at the stream's position to found; stop after it."""
    memo, recent = {}, []  # recent: the last values pushed (strings, else None), for STACK_GLOBAL
    for op, arg, _ in pickletools.genops(stream):
        name = op.name
        if name == "GLOBAL":
            found.append(arg.replace(" ", "."))
            recent.append(None)
        elif name == "STACK_GLOBAL":
            if len(recent) >= 2 and isinstance(recent[-2], str) and isinstance(recent[-1], str):
                found.append(f"{recent[-2]}.{recent[-1]}")
            else:
                found.append("<a global built at load time>")
            recent.append(None)
        elif name in ("SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "SHORT_BINSTRING",
                      "BINSTRING", "STRING"):
            recent.append(arg if isinstance(arg, str) else None)
        elif name == "MEMOIZE":
            memo[len(memo)] = recent[-1] if recent else None
        elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
            memo[arg] = recent[-1] if recent else None
        elif name in ("GET", "BINGET", "LONG_BINGET"):
            recent.append(memo.get(arg))
        elif name not in ("PROTO", "FRAME"):
            recent.append(None)
        recent = recent[-2:]
        if name == "STOP":
            return
