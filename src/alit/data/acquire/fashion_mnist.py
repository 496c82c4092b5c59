"""Fashion-MNIST (Debian `dataset-fashion-mnist`) as a labelled image folder for `alit probe`.

The package holds the four gzipped IDX files of the original release (70,000 28 x 28 gray images,
10 classes, MIT). `convert` writes OUT/train/<class>/<index>.png and OUT/test/<class>/<index>.png
(8-bit gray PNG, the original pixels), keeping the official train/test split.
"""
from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
from PIL import Image

from ...errors import AlitError

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
APT_HINT = "apt-get install -y dataset-fashion-mnist"
CLASSES = ("t-shirt_top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag",
           "ankle_boot")
FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
         "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (gzipped or not): magic 0x0000 <type 0x08 = uint8> <ndim>, big-endian sizes, data."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as e:
        raise AlitError(f"{path}: cannot read ({e})") from None
    if len(data) < 4 or data[:2] != b"\0\0" or data[2] != 0x08:
        raise AlitError(f"{path}: not an IDX file of unsigned bytes")
    ndim = data[3]
    shape = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise AlitError(f"{path}: {body.size} bytes of data for shape {shape}")
    return body.reshape(shape)


def convert(out: str | Path, source: str | Path = DEBIAN_DIR, limit: int | None = None) -> dict[str, int]:
    """Write the images as PNGs; `limit` keeps the first N of each split. Returns images per split.
    Files already present are left as they are, so a second run writes nothing new."""
    source, out = Path(source), Path(out)
    if limit is not None and limit < 1:
        raise AlitError(f"--limit must be at least 1, got {limit}")
    missing = [n for pair in FILES.values() for n in pair if not (source / n).is_file()]
    if missing:
        raise AlitError(f"{source}: Fashion-MNIST files missing ({', '.join(missing)}); install them with "
                        f"`{APT_HINT}` (Debian) or give --source DIR")
    counts = {}
    for split, (images_file, labels_file) in FILES.items():
        images, labels = read_idx(source / images_file), read_idx(source / labels_file)
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise AlitError(f"{source}: {images_file} {images.shape} does not match {labels_file} {labels.shape}")
        n = len(images) if limit is None else min(limit, len(images))
        for c in CLASSES:
            (out / split / c).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            dest = out / split / CLASSES[labels[i]] / f"{i:05d}.png"
            if not dest.is_file():
                Image.fromarray(images[i]).save(dest)
        counts[split] = n
    return counts
