"""WebDataset tar shards for sets too large for a folder (ImageNet-1K and up).

Shards are split over (process, worker) pairs, reshuffled every epoch with a seeded order, and
their samples pass through a seeded shuffle buffer. Unlike an image folder, the order is not a
function of the step: a resumed run restarts at the beginning of its current epoch (estimated
from `dataset_size`), with the same crops for the same samples, but not the same batches.
"""
from __future__ import annotations

import glob
import io
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..errors import AlitError

IMAGE_KEYS = ("jpg", "jpeg", "png", "webp", "bmp", "tif", "tiff", "ppm")


def is_shards(spec: str) -> bool:
    """True for a .tar file, a brace pattern of them, or a folder holding .tar files."""
    if spec.endswith(".tar") or "{" in spec:
        return True
    p = Path(spec)
    return p.is_dir() and any(f.endswith(".tar") for f in os.listdir(p))


def expand(spec: str) -> list[str]:
    """A folder of .tar files, a glob, or a brace pattern (dir/train-{0000..0099}.tar) -> paths."""
    import braceexpand

    p = Path(spec)
    if p.is_dir():
        urls = sorted(str(f) for f in p.iterdir() if f.name.endswith(".tar"))
    else:
        urls = []
        for pattern in braceexpand.braceexpand(spec):
            urls.extend(sorted(glob.glob(pattern)) if any(c in pattern for c in "*?[") else [pattern])
    missing = [u for u in urls if not Path(u).is_file()]
    if not urls or missing:
        raise AlitError(f"{spec}: no shards found" + (f" (missing {missing[:3]})" if missing else ""))
    return urls


def _seed(*parts: int) -> int:
    return int(np.random.SeedSequence(list(parts)).generate_state(1, np.uint64)[0] >> np.uint64(1))


class Shards(torch.utils.data.IterableDataset):
    """Endless stream of (image [3, S, S], unreadable sample names) for one process."""

    def __init__(self, spec: str, transform, seed: int, rank: int, world: int, start_epoch: int = 0,
                 buffer: int = 1000):
        try:
            import webdataset  # noqa: F401  (the tar reader; fail early when it is missing)
        except ImportError:
            raise AlitError("WebDataset shards need the `webdataset` package: pip install webdataset "
                            "(or pip install 'alit[train]')") from None

        self.urls = expand(spec)
        self.transform, self.seed, self.rank, self.world = transform, seed, rank, world
        self.start_epoch, self.buffer = start_epoch, buffer

    def _samples(self, urls: list[str]):
        from webdataset import tarfile_samples

        skipped: list[str] = []

        def note(exc: Exception) -> bool:  # a broken tar member or shard: name it, go on
            skipped.append(f"{exc}")
            return True

        for sample in tarfile_samples([{"url": u} for u in urls], handler=note):
            key = next((k for k in IMAGE_KEYS if k in sample), None)
            name = f"{sample.get('__url__', '?')}:{sample.get('__key__', '?')}"
            if key is None:
                skipped.append(f"{name} (no image member)")
                continue
            try:
                with Image.open(io.BytesIO(sample[key])) as img:
                    img.load()
                    rgb = img.convert("RGB")
            except Exception as e:  # noqa: BLE001 - any decoder failure skips the sample
                skipped.append(f"{name} ({type(e).__name__}: {e})")
                continue
            yield name, rgb, skipped
            skipped = []

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        wid, nworkers = (info.id, info.num_workers) if info is not None else (0, 1)
        slot, slots = self.rank * nworkers + wid, self.world * nworkers
        if len(self.urls) < slots:
            raise AlitError(f"{len(self.urls)} shards for {self.world} processes x {nworkers} workers: "
                            f"every worker needs at least one shard (use fewer workers)")
        epoch = self.start_epoch
        while True:
            order = torch.randperm(len(self.urls), generator=torch.Generator().manual_seed(_seed(self.seed, 1, epoch)))
            mine = [self.urls[i] for i in order.tolist()[slot::slots]]
            gen = torch.Generator().manual_seed(_seed(self.seed, 2, epoch, slot))
            pool, count = [], 0
            for name, img, skipped in self._samples(mine):
                pool.append((name, img, skipped))
                if len(pool) < self.buffer:
                    continue
                j = int(torch.randint(len(pool), (1,), generator=gen))
                pool[j], pool[-1] = pool[-1], pool[j]
                yield self._finish(pool.pop(), epoch, slot, count)
                count += 1
            while pool:
                j = int(torch.randint(len(pool), (1,), generator=gen))
                pool[j], pool[-1] = pool[-1], pool[j]
                yield self._finish(pool.pop(), epoch, slot, count)
                count += 1
            epoch += 1

    def _finish(self, item, epoch: int, slot: int, count: int):
        name, img, skipped = item
        return self.transform(img, _seed(self.seed, 3, epoch, slot, count)), skipped


def write_shards(images: list[str | Path], dst: str | Path, per_shard: int = 1000) -> list[Path]:
    """Pack image files into dst/shard-000000.tar, ... (one `.jpg`/`.png`/... member per sample)."""
    from webdataset import TarWriter

    dst = Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    out = []
    for start in range(0, len(images), per_shard):
        path = dst / f"shard-{start // per_shard:06d}.tar"
        with TarWriter(str(path)) as sink:
            for i, f in enumerate(images[start:start + per_shard]):
                f = Path(f)
                ext = f.suffix.lower().lstrip(".").replace("jpeg", "jpg")
                sink.write({"__key__": f"{start + i:09d}", ext: f.read_bytes()})
        out.append(path)
    return out
