"""The paper's training augmentation: RandomResizedCrop (area 0.8-1) + horizontal flip.

Every random draw comes from a generator seeded by the sample's seed, so an image's crop is a
function of (run seed, sample position) alone: the same with 1 or 8 processes, any number of
workers, and after a resume.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image

RATIO = (3 / 4, 4 / 3)


def sample_seed(seed: int, position: int, stream: int = 0) -> int:
    """A 63-bit seed for position `position` of random stream `stream` (0: samples) of run seed `seed`."""
    return int(np.random.SeedSequence([seed, stream, position]).generate_state(2, np.uint64)[0] >> np.uint64(1))


def crop_box(width: int, height: int, scale: tuple[float, float], gen: torch.Generator,
             ratio: tuple[float, float] = RATIO) -> tuple[int, int, int, int]:
    """(left, top, w, h) of a random crop covering `scale` of the area with aspect ratio in `ratio`."""
    area = width * height
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(10):
        u = torch.rand(4, generator=gen, dtype=torch.float64).tolist()
        target = area * (scale[0] + (scale[1] - scale[0]) * u[0])
        aspect = math.exp(log_lo + (log_hi - log_lo) * u[1])
        w = round(math.sqrt(target * aspect))
        h = round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            left = min(int(u[2] * (width - w + 1)), width - w)
            top = min(int(u[3] * (height - h + 1)), height - h)
            return left, top, w, h
    # no luck (an extreme aspect ratio): the largest central crop within the ratio range
    aspect = width / height
    if aspect < ratio[0]:
        w, h = width, round(width / ratio[0])
    elif aspect > ratio[1]:
        w, h = round(height * ratio[1]), height
    else:
        w, h = width, height
    return (width - w) // 2, (height - h) // 2, w, h


def to_tensor(img: Image.Image) -> torch.Tensor:
    """PIL RGB -> float [3, H, W] in [0, 1]."""
    return torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1).float() / 255


class RandomResizedCropFlip:
    """PIL image -> float [3, size, size] in [0, 1], random crop + resize (bicubic) + flip."""

    def __init__(self, size: int, scale: tuple[float, float] = (0.8, 1.0), flip: bool = True,
                 ratio: tuple[float, float] = RATIO):
        self.size, self.scale, self.flip, self.ratio = size, tuple(scale), flip, tuple(ratio)

    def __call__(self, img: Image.Image, seed: int) -> torch.Tensor:
        gen = torch.Generator().manual_seed(seed)
        left, top, w, h = crop_box(img.width, img.height, self.scale, gen, self.ratio)
        out = img.resize((self.size, self.size), Image.BICUBIC, box=(left, top, left + w, top + h))
        if self.flip and torch.rand(1, generator=gen).item() < 0.5:
            out = out.transpose(Image.FLIP_LEFT_RIGHT)
        return to_tensor(out)


class CenterCrop:
    """PIL image -> the central square resized to size x size (previews, evaluation)."""

    def __init__(self, size: int):
        self.size = size

    def __call__(self, img: Image.Image, seed: int = 0) -> torch.Tensor:
        side = min(img.width, img.height)
        left, top = (img.width - side) // 2, (img.height - side) // 2
        out = img.resize((self.size, self.size), Image.BICUBIC, box=(left, top, left + side, top + side))
        return to_tensor(out)
