"""A folder of images, searched recursively; class sub-folders are optional and only recorded.

A file that cannot be decoded is not the end of a run: the sample is replaced by the next
readable file (deterministically, so every process agrees), and the bad path travels with the
batch so the training log can name and count it.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError

from ..errors import AlitError

EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".ppm", ".pgm", ".jfif")


def list_images(root: str | Path) -> list[Path]:
    """Every image file under root (recursive, symlinks followed), in a fixed sorted order."""
    root = Path(root)
    if not root.is_dir():
        raise AlitError(f"{root}: not a folder of images")
    files = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for f in sorted(filenames):
            if f.lower().endswith(EXTENSIONS) and not f.startswith("."):
                files.append(Path(dirpath) / f)
    files.sort(key=lambda p: p.relative_to(root).as_posix())
    if not files:
        raise AlitError(f"{root}: no images found (looked for {', '.join(EXTENSIONS)} recursively)")
    return files


def open_rgb(path: str | Path) -> Image.Image:
    """Decode fully (a truncated file fails here, not later) and convert to RGB."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with Image.open(path) as img:
            img.load()
            return img.convert("RGB")


class ImageFolder(torch.utils.data.Dataset):
    """Items are (dataset index, sample seed) -> (image [3, S, S] in [0, 1], unreadable paths)."""

    def __init__(self, root: str | Path, transform, cache: bool = False):
        self.root = Path(root)
        self._cache: dict[int, Image.Image] | None = {} if cache else None  # decoded images, per worker
        self.files = list_images(self.root)
        self.transform = transform
        # class = first sub-folder, when the images sit in sub-folders (ImageNet layout)
        rel = [f.relative_to(self.root).parts for f in self.files]
        self.classes = sorted({p[0] for p in rel if len(p) > 1})
        index = {c: i for i, c in enumerate(self.classes)}
        self.labels = [index[p[0]] if len(p) > 1 else -1 for p in rel]
        self._bad: set[int] = set()

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, item: tuple[int, int]):
        index, seed = item
        skipped = []
        for k in range(len(self.files)):
            i = (index + k) % len(self.files)
            if i in self._bad:
                continue
            try:
                img = self._cache.get(i) if self._cache is not None else None
                if img is None:
                    img = open_rgb(self.files[i])
                    if self._cache is not None:
                        self._cache[i] = img
            except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as e:
                self._bad.add(i)
                skipped.append(f"{self.files[i]} ({type(e).__name__}: {e})")
                continue
            return self.transform(img, seed), skipped
        raise AlitError(f"{self.root}: none of the {len(self.files)} image files could be read; "
                        f"first errors: {skipped[:3]}")


def collate(items):
    """[(image, skipped)] -> (images [B, 3, S, S], skipped paths)."""
    images = torch.stack([im for im, _ in items])
    skipped = [s for _, sk in items for s in sk]
    return images, skipped
