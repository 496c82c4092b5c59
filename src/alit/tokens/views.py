"""`alit tokenize --views K`: K seeded random views of every image, keyed `KEY#k` (k = 0 .. K-1),
so that a small image set yields K sequences per image and pre-tokenised data carries the
augmentation.

A view is the training recipes' random resized crop and flip, taken of the whole image before the
model's own preparation: a box of 80-100% of the image's area with an aspect ratio in [3/4, 4/3]
(`data.transforms.crop_box` with the recipes' default `crop_scale` and `crop_ratio`), then
`images.fit` as every command prepares an image (shorter side to the model's size, the centre
square: nothing is stretched), mirrored with probability 1/2, on the 8-bit grid. Its random draws
come from a generator seeded by (key, k) alone: the same view on every run, any number of
processes or workers, and after a resume.
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import torch

from ..data.transforms import RATIO, crop_box
from ..images import fit, read_image
from ..scoring import to_8bit

SCALE = (0.8, 1.0)  # the area range of the crop (the recipes' crop_scale default)


def view_key(key: str, k: int) -> str:
    return f"{key}#{k}"


def view_seed(key: str, k: int) -> int:
    """A 63-bit seed for view k of the image with this key."""
    digest = hashlib.sha256(f"{key}\0{k}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def view_of(image: torch.Tensor, size: int, seed: int) -> torch.Tensor:
    """One view [3, size, size] on the 8-bit grid of an image [3, H, W] in [0, 1]."""
    gen = torch.Generator().manual_seed(seed)
    left, top, w, h = crop_box(image.shape[2], image.shape[1], SCALE, gen, RATIO)
    out = fit(image[:, top:top + h, left:left + w], size)
    if torch.rand(1, generator=gen).item() < 0.5:
        out = out.flip(-1)
    return to_8bit(out)


def view_loader(key: str, k: int) -> Callable[[str | Path, int], torch.Tensor]:
    """load(path, size) -> view k of the image at path (whose key is `key`), as `load_image` reads it."""
    seed = view_seed(key, k)

    def load(path: str | Path, size: int) -> torch.Tensor:
        return view_of(read_image(path, size), size, seed)
    return load
