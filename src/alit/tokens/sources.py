"""What `alit tokenize` reads: an image folder or WebDataset shards, cut into numbered parts.

A part is the unit of work, of output and of resumption: a run of `part_size` files of a folder
(in sorted order), or one shard. Parts are a function of the data alone, never of the number of
processes, so a run resumed on another number of processes writes the same parts. Every image is
prepared as `alit reconstruct` and the Python API prepare it (`alit.images.load_image`).
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import AlitError
from ..images import ImageReadError, find_images, load_image

# An item: its key and a function that reads it as the model sees it, [3, S, S] in [0, 1], or raises
# ImageReadError with a one-line reason.
Item = tuple[str, Callable[[], torch.Tensor]]


@dataclass
class Source:
    kind: str                 # "folder" or "shards"
    root: str                 # DATA as given
    num_parts: int
    identity: str             # a hash of what the parts hold (file keys, or shard names and sizes)
    num_images: int | None    # None for shards (known once read)
    _files: list[Path] | None = None
    _urls: list[str] | None = None
    part_size: int = 0

    def items(self, part: int, size: int) -> Iterator[Item]:
        """The images of one part, in order."""
        if self.kind == "folder":
            root = Path(self.root)
            for path in self._files[part * self.part_size:(part + 1) * self.part_size]:
                yield path.relative_to(root).as_posix(), _file_reader(path, size)
        else:
            yield from _shard_items(self._urls[part], size)

    def part_images(self, part: int) -> int | None:
        """Images in a part (None for a shard: known once read)."""
        if self.kind != "folder":
            return None
        return len(self._files[part * self.part_size:(part + 1) * self.part_size])


def open_source(data: str, part_size: int) -> Source:
    """An image folder (recursive) or WebDataset shards (a .tar, a brace pattern or a folder of .tar)."""
    from ..data.shards import expand, is_shards

    if part_size < 1:
        raise AlitError(f"--part-size must be at least 1, got {part_size}")
    if is_shards(data):
        urls = expand(data)
        h = hashlib.sha256()
        for u in urls:
            h.update(f"{Path(u).name}:{Path(u).stat().st_size}\n".encode())
        return Source("shards", data, len(urls), h.hexdigest()[:16], None, _urls=urls)
    root = Path(data)
    if not root.is_dir():
        raise AlitError(f"{data}: no such image folder or shard pattern")
    files, problems = find_images([root])
    if problems or not files:
        raise AlitError(problems[0] if problems else f"{data}: no image files")
    files = sorted(files, key=lambda p: p.relative_to(root).as_posix())
    h = hashlib.sha256("\n".join(p.relative_to(root).as_posix() for p in files).encode())
    parts = (len(files) + part_size - 1) // part_size
    return Source("folder", data, parts, h.hexdigest()[:16], len(files), _files=files, part_size=part_size)


def _file_reader(path: Path, size: int) -> Callable[[], torch.Tensor]:
    def read() -> torch.Tensor:
        try:
            return load_image(path, size)
        except ImageReadError as e:
            raise ImageReadError(_reason(str(e), str(path))) from None
    return read


def _shard_items(url: str, size: int) -> Iterator[Item]:
    """(key, reader) per sample of a shard; a sample without an image, or a broken shard, is an
    item whose reader raises, so it is recorded as skipped."""
    from webdataset import tarfile_samples

    from ..data.shards import IMAGE_KEYS

    errors: list[str] = []

    def note(exc: Exception) -> bool:  # a broken member or a truncated shard: name it, go on
        errors.append(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
        return True

    for sample in tarfile_samples([{"url": url}], handler=note):
        for message in errors:
            yield f"{Path(url).name}:?", _failing(f"unreadable shard member ({message})")
        errors.clear()
        key = sample.get("__key__", "?")
        member = next((k for k in IMAGE_KEYS if k in sample), None)
        if member is None:
            yield key, _failing("no image member (looked for ." + ", .".join(IMAGE_KEYS) + ")")
        else:
            yield key, _bytes_reader(sample[member], member, size)
    for message in errors:
        yield f"{Path(url).name}:?", _failing(f"unreadable shard ({message})")


def _bytes_reader(data: bytes, suffix: str, size: int) -> Callable[[], torch.Tensor]:
    def read() -> torch.Tensor:
        # through a file, so that a shard's image is read exactly as the same file in a folder is
        fd, name = tempfile.mkstemp(suffix=f".{suffix}", prefix="alit-tokenize-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            return load_image(name, size)
        except ImageReadError as e:
            raise ImageReadError(_reason(str(e), name)) from None
        finally:
            os.unlink(name)
    return read


def _failing(reason: str) -> Callable[[], torch.Tensor]:
    def read() -> torch.Tensor:
        raise ImageReadError(reason)
    return read


def _reason(message: str, path: str) -> str:
    """An ImageReadError's message without its leading 'PATH: ' (the key names the image)."""
    prefix = f"{path}: "
    return message[len(prefix):] if message.startswith(prefix) else message
