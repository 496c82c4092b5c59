"""`alit tokenize --views K`: K seeded random views of every image, keyed `KEY#k` (k = 0 .. K-1),
so that a small image set yields K sequences per image and pre-tokenised data carries the
augmentation.

A view is a random resized crop and a flip, as the training recipes crop with square crops
(`crop_ratio [1, 1]`): a square of 80-100% of the area of the largest square the image holds, at a
uniformly random place in the image, resized to the model's size (`images.fit`, as every command
prepares an image: nothing is stretched), mirrored with probability 1/2, on the 8-bit grid. The
scale is of that square, not of the whole image: on a 16:9 photo no crop of 80% of its area has an
aspect ratio within [3/4, 4/3], and RandomResizedCrop falls back to the same central crop every
time. The random draws come from a generator seeded by (key, k) alone: the same view on every run,
any number of processes or workers, and after a resume.
"""
from __future__ import annotations

import hashlib
import math

import torch

from ..images import fit
from ..scoring import to_8bit

SCALE = (0.8, 1.0)  # the crop's area, of the largest square's (the recipes' crop_scale default)


def view_key(key: str, k: int) -> str:
    return f"{key}#{k}"


def view_seed(key: str, k: int) -> int:
    """A 63-bit seed for view k of the image with this key."""
    digest = hashlib.sha256(f"{key}\0{k}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def square_box(width: int, height: int, gen: torch.Generator) -> tuple[int, int, int]:
    """(left, top, side) of a random square of SCALE of the largest square's area, anywhere in the image."""
    short = min(width, height)
    u = torch.rand(3, generator=gen, dtype=torch.float64).tolist()
    side = max(1, min(short, round(short * math.sqrt(SCALE[0] + (SCALE[1] - SCALE[0]) * u[0]))))
    left = min(int(u[1] * (width - side + 1)), width - side)
    top = min(int(u[2] * (height - side + 1)), height - side)
    return left, top, side


def view_of(image: torch.Tensor, size: int, seed: int) -> torch.Tensor:
    """One view [3, size, size] on the 8-bit grid of an image [3, H, W] in [0, 1]."""
    gen = torch.Generator().manual_seed(seed)
    left, top, side = square_box(image.shape[2], image.shape[1], gen)
    out = fit(image[:, top:top + side, left:left + side], size)
    if torch.rand(1, generator=gen).item() < 0.5:
        out = out.flip(-1)
    return to_8bit(out)

