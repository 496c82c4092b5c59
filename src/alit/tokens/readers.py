"""What `alit tokenize` reads: an image folder or WebDataset shards, cut into numbered parts.

A part is the unit of work, of output and of resumption: a run of `part_size` files of a folder
(in sorted order), or one shard. Parts are a function of the data alone, never of the number of
processes, so a run resumed on another number of processes writes the same parts. Every image is
prepared as `alit reconstruct` and the Python API prepare it (`alit.images.load_image`), and what
`reconstruct` warns of is noted with it: an image smaller than the model's size (enlarged), an
animation (its first frame read); files of a folder without an image suffix are named in
`Source.warnings`. Shards need the optional `webdataset` package, asked for before anything is read.

`read_parts` reads a list of parts as a training loop reads its data: DataLoader worker processes
decode images ahead of the model, across parts, into pinned memory on CUDA. A batch of `alit
tokenize` is `--batch-size` consecutive images of a part (fewer at its end) less those that could
not be read (recorded as skipped): the same batches, hence the same rows, whatever the number of
workers.
"""
from __future__ import annotations

import dataclasses
import hashlib
import itertools
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from ..data.shards import IMAGE_KEYS, expand, is_shards
from ..errors import AlitError
from ..images import ImageReadError, find_images, fit, frame_count, read_image
from ..scoring import to_8bit
from .views import view_key, view_of, view_seed

# An item: its key and a function that reads it as the model sees it, [3, S, S] in [0, 1], with its
# notes ((kind, detail): "enlarged" or "animated"), or raises ImageReadError with a one-line reason.
Note = tuple[str, str]
Item = tuple[str, Callable[[], tuple[torch.Tensor, list[Note]]]]


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
    warnings: list[str] = field(default_factory=list)  # lines about files of the folder not read
    views: int = 0            # --views K: K random views of each image, keyed KEY#k (0: the image itself)

    def items(self, part: int, size: int, start: int = 0, stop: int | None = None) -> Iterator[Item]:
        """The images of one part, in order (those from `start` to `stop` only, when given)."""
        if self.kind == "folder":
            root = Path(self.root)
            files = self._files[part * self.part_size:(part + 1) * self.part_size]
            views = [(path, k) for path in files for k in range(self.views)] if self.views else \
                [(path, None) for path in files]
            for path, k in views[start:stop]:
                key = path.relative_to(root).as_posix()
                if k is None:
                    yield key, _file_reader(path, size)
                else:
                    yield view_key(key, k), _file_reader(path, size, view_seed(key, k))
        else:
            yield from itertools.islice(_shard_items(self._urls[part], size, self.views), start, stop)

    def part_images(self, part: int) -> int | None:
        """Images in a part (None for a shard: known once read)."""
        if self.kind != "folder":
            return None
        return len(self._files[part * self.part_size:(part + 1) * self.part_size]) * max(1, self.views)


def open_source(data: str, part_size: int, views: int = 0) -> Source:
    """An image folder (recursive) or WebDataset shards (a .tar, a brace pattern or a folder of .tar);
    views: K random views of each image (`views.py`), 0 for the images themselves."""
    if part_size < 1:
        raise AlitError(f"--part-size must be at least 1, got {part_size}")
    if views < 0:
        raise AlitError(f"--views must be 0 (the images themselves) or more, got {views}")
    if is_shards(data):
        _need_webdataset()
        urls = expand(data)
        h = hashlib.sha256()
        for u in urls:
            h.update(f"{Path(u).name}:{Path(u).stat().st_size}\n".encode())
        return Source("shards", data, len(urls), h.hexdigest()[:16], None, _urls=urls, views=views)
    root = Path(data)
    if not root.is_dir():
        raise AlitError(f"{data}: no such image folder or shard pattern")
    not_images: list[str] = []
    files, problems = find_images([root], skipped=not_images)
    if problems or not files:
        raise AlitError(problems[0] if problems else f"{data}: no image files")
    files = sorted(files, key=lambda p: p.relative_to(root).as_posix())
    h = hashlib.sha256("\n".join(p.relative_to(root).as_posix() for p in files).encode())
    parts = (len(files) + part_size - 1) // part_size
    # reconstruct's line, less its advice to name a file directly, which DATA cannot do
    warnings = [line.split("; name a file directly")[0] for line in not_images]
    return Source("folder", data, parts, h.hexdigest()[:16], len(files), _files=files, part_size=part_size,
                  warnings=warnings, views=views)


def _need_webdataset() -> None:
    """A one-line AlitError, before anything is read or written, when the shard reader is missing."""
    try:
        import webdataset  # noqa: F401
    except ImportError:
        raise AlitError("WebDataset shards need the `webdataset` package, which is not installed: "
                        "pip install webdataset (or pip install 'alit[train]')") from None


# --- reading parts ahead of the model ----------------------------------------------------------------
PREFETCH = 2  # pieces each worker holds ready (DataLoader's prefetch_factor)


@dataclass
class Chunk:
    """Consecutive images of one part, read: a whole batch of `alit tokenize` (--batch-size images,
    fewer at a part's end, less those that could not be read), or, between a worker and
    `read_parts`, a piece of one."""
    part: int
    index: int              # its place among the part's chunks
    closes_batch: bool      # the last piece of its batch
    last: bool              # the part's last chunk (a shard's count of chunks is known once it is read)
    keys: list[str]         # the images read, in order
    images: torch.Tensor    # [len(keys), 3, S, S] in [0, 1]
    skipped: list[dict]     # [{"key", "reason", "part"}]: the images that could not be read
    notes: list[dict] = field(default_factory=list)  # [{"key", "kind", "detail"}]: enlarged, animated

    def pin_memory(self) -> "Chunk":
        """Called by DataLoader(pin_memory=True): page-locked images copy to the GPU asynchronously."""
        return dataclasses.replace(self, images=self.images.pin_memory())


def read_parts(source: Source, parts: list[int], size: int, batch_size: int, workers: int,
               device: torch.device) -> Iterator[Chunk]:
    """The batches of `parts` on `device`, each part's in order (parts interleave when shards are
    read by several workers). With workers > 0, one pool of worker processes reads ahead, across
    parts; each batch of a folder is cut into one piece per worker, so that all of them read it and
    the model waits for the first one 1/workers of its reading time, not all of it."""
    reader = PartReader(source, parts, size, batch_size, pieces=max(1, workers))
    workers = min(workers, len(reader.units))  # no process without a unit to read
    if not reader.units:
        return iter(())
    loader = DataLoader(reader, batch_size=None, num_workers=workers, pin_memory=device.type == "cuda",
                        prefetch_factor=PREFETCH if workers else None)
    return _batches(_in_order(loader), device)


class PartReader(torch.utils.data.IterableDataset):
    """The chunks of some parts. Worker w of W reads the units w, w + W, ...: a unit is a piece of a
    batch of a folder's part (any file can be read first), or a whole shard (a tar is read from its
    start; its chunks are whole batches)."""

    def __init__(self, source: Source, parts: list[int], size: int, batch_size: int, pieces: int = 1):
        self.source, self.size, self.batch_size = source, size, batch_size
        if source.kind == "folder":
            self.units = [u for p in parts for u in _folder_units(p, source.part_images(p), batch_size, pieces)]
        else:
            self.units = [(p, 0, 0, 0, True, True) for p in parts]

    def __iter__(self) -> Iterator[Chunk]:
        info = torch.utils.data.get_worker_info()
        w, W = (0, 1) if info is None else (info.id, info.num_workers)
        for part, start, stop, index, closes_batch, last in self.units[w::W]:
            if self.source.kind == "folder":
                items = list(self.source.items(part, self.size, start, stop))
                yield _read_chunk(part, index, closes_batch, last, items, self.size)
            else:
                yield from self._shard(part)

    def _shard(self, part: int) -> Iterator[Chunk]:
        """A shard's batches, one read ahead to know which is the last (an empty shard: one empty batch)."""
        items = self.source.items(part, self.size)
        batch, index = _take(items, self.batch_size), 0
        while True:
            following = _take(items, self.batch_size)
            yield _read_chunk(part, index, True, not following, batch, self.size)
            if not following:
                return
            batch, index = following, index + 1


def _folder_units(part: int, n: int, batch_size: int, pieces: int) -> Iterator[tuple]:
    """(part, start, stop, index, closes_batch, last) of each piece of each batch of a folder's part of n images."""
    step = -(-batch_size // pieces)  # ceil: `pieces` pieces a batch, the last ones maybe smaller or none
    index = 0
    for begin in range(0, n, batch_size):
        end = min(begin + batch_size, n)
        for start in range(begin, end, step):
            stop = min(start + step, end)
            yield part, start, stop, index, stop == end, stop == n
            index += 1


def _in_order(chunks) -> Iterator[Chunk]:
    """Each part's chunks in their order. DataLoader hands over the workers' outputs in turn, which
    keeps that order already; this makes it so whatever the loader does."""
    waiting: dict[tuple[int, int], Chunk] = {}
    following: dict[int, int] = {}  # part -> the index of its next chunk to hand on
    for chunk in chunks:
        waiting[chunk.part, chunk.index] = chunk
        p = chunk.part
        while (p, following.setdefault(p, 0)) in waiting:
            yield waiting.pop((p, following[p]))
            following[p] += 1


def _batches(chunks: Iterator[Chunk], device: torch.device) -> Iterator[Chunk]:
    """Pieces joined into their batches, on `device`."""
    pieces: dict[int, list[Chunk]] = {}  # part -> the pieces of its open batch
    for chunk in chunks:
        # from pinned memory the copy needs no staging buffer, and does not wait for the GPU
        chunk.images = chunk.images.to(device, non_blocking=True)
        pieces.setdefault(chunk.part, []).append(chunk)
        if chunk.closes_batch:
            done = pieces.pop(chunk.part)
            if len(done) == 1:
                yield chunk
            else:
                yield Chunk(chunk.part, done[0].index, True, chunk.last, [k for c in done for k in c.keys],
                            torch.cat([c.images for c in done]), [s for c in done for s in c.skipped],
                            [n for c in done for n in c.notes])


def _read_chunk(part: int, index: int, closes_batch: bool, last: bool, items: list[Item], size: int) -> Chunk:
    keys, images, skipped, notes = [], [], [], []
    for key, reader in items:
        try:
            image, said = reader()
        except ImageReadError as e:
            skipped.append({"key": key, "reason": str(e), "part": part})
            continue
        images.append(image)
        keys.append(key)
        notes += [{"key": key, "kind": kind, "detail": detail} for kind, detail in said]
    batch = torch.stack(images) if images else torch.zeros(0, 3, size, size)  # [b, 3, S, S]
    return Chunk(part, index, closes_batch, last, keys, batch, skipped, notes)


def _take(items: Iterator[Item], n: int) -> list[Item]:
    return list(itertools.islice(items, n))


def _prepare(path: str | Path, size: int, seed: int | None = None) -> tuple[torch.Tensor, list[Note]]:
    """`alit.images.load_image(path, size)` (or, given a view's seed, that view: views.py), with what
    a user hears of from `alit reconstruct`: ("enlarged", "WxH") for an image smaller than the
    model's size, ("animated", "N frames")."""
    raw = read_image(path, size)  # [3, H, W]
    h, w = raw.shape[1:]
    notes = [("enlarged", f"{w}x{h}")] if min(h, w) < size else []
    frames = frame_count(path)
    if frames > 1:
        notes.append(("animated", f"{frames} frames"))
    return (to_8bit(fit(raw, size)) if seed is None else view_of(raw, size, seed)), notes


def _file_reader(path: Path, size: int, seed: int | None = None
                 ) -> Callable[[], tuple[torch.Tensor, list[Note]]]:
    def read() -> tuple[torch.Tensor, list[Note]]:
        try:
            return _prepare(path, size, seed)
        except ImageReadError as e:
            raise ImageReadError(_reason(str(e), str(path))) from None
    return read


def _shard_items(url: str, size: int, views: int = 0) -> Iterator[Item]:
    """(key, reader) per sample of a shard (per view of it with `views`); a sample without an image,
    or a broken shard, is an item whose reader raises, so it is recorded as skipped."""
    from webdataset import tarfile_samples

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
        for k in range(views) if views else [None]:
            name = key if k is None else view_key(key, k)
            if member is None:
                yield name, _failing("no image member (looked for ." + ", .".join(IMAGE_KEYS) + ")")
            else:
                seed = None if k is None else view_seed(key, k)
                yield name, _bytes_reader(sample[member], member, size, seed)
    for message in errors:
        yield f"{Path(url).name}:?", _failing(f"unreadable shard ({message})")


def _bytes_reader(data: bytes, suffix: str, size: int, seed: int | None = None
                  ) -> Callable[[], tuple[torch.Tensor, list[Note]]]:
    def read() -> tuple[torch.Tensor, list[Note]]:
        # through a file, so that a shard's image is read exactly as the same file in a folder is
        fd, name = tempfile.mkstemp(suffix=f".{suffix}", prefix="alit-tokenize-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            return _prepare(name, size, seed)
        except ImageReadError as e:
            raise ImageReadError(_reason(str(e), name)) from None
        finally:
            os.unlink(name)
    return read


def _failing(reason: str) -> Callable[[], tuple[torch.Tensor, list[Note]]]:
    def read() -> tuple[torch.Tensor, list[Note]]:
        raise ImageReadError(reason)
    return read


def _reason(message: str, path: str) -> str:
    """An ImageReadError's message without its leading 'PATH: ' (the key names the image)."""
    prefix = f"{path}: "
    return message[len(prefix):] if message.startswith(prefix) else message
