"""Pieces shared by the two base autoencoders (`vqgan.py`, `vae.py`).

Attribute names mirror the official checkpoints (`block.i`, `attn.i`, `downsample`, `upsample.conv`,
`block_1`, `attn_1`, `block_2`) so that their state dicts load with no key map. The residual
blocks themselves differ between the two families and live in their own files.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor


def group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm as both base tokenizers use it: 32 groups, eps 1e-6, affine."""
    return nn.GroupNorm(32, channels, eps=1e-6, affine=True)


def swish(x: Tensor) -> Tensor:
    """x * sigmoid(x)."""
    return x * torch.sigmoid(x)


class Upsample(nn.Module):
    """Nearest-neighbour x2, then a 3x3 conv with bias: [B, C, H, W] -> [B, C, 2H, 2W]."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Level(nn.Module):
    """One resolution level: residual blocks, each optionally followed by an attention block,
    then an optional resampler (`downsample` in an encoder, `upsample` in a decoder).

    [B, C_in, H, W] -> [B, C_out, H', W'] with H' = H/2, H or 2H depending on the resampler.
    """

    def __init__(self, blocks: Sequence[nn.Module], attns: Sequence[nn.Module] = (),
                 downsample: nn.Module | None = None, upsample: nn.Module | None = None):
        super().__init__()
        if attns and len(attns) != len(blocks):
            raise ValueError(f"{len(attns)} attention blocks for {len(blocks)} residual blocks")
        self.block = nn.ModuleList(blocks)
        self.attn = nn.ModuleList(attns)  # empty (no state-dict keys) where the level has none
        # None stays a plain attribute, so a level without a resampler adds no keys either
        self.downsample = downsample
        self.upsample = upsample

    def forward(self, x: Tensor) -> Tensor:
        for i, block in enumerate(self.block):
            x = block(x)
            if len(self.attn):
                x = self.attn[i](x)
        if self.downsample is not None:
            x = self.downsample(x)
        if self.upsample is not None:
            x = self.upsample(x)
        return x


class Middle(nn.Module):
    """The bottleneck at constant width: block_1, optional attention attn_1, block_2."""

    def __init__(self, block_1: nn.Module, block_2: nn.Module, attn_1: nn.Module | None = None):
        super().__init__()
        # assignment order fixes the state-dict order: block_1, attn_1, block_2
        self.block_1 = block_1
        self.attn_1 = attn_1
        self.block_2 = block_2

    def forward(self, x: Tensor) -> Tensor:
        x = self.block_1(x)
        if self.attn_1 is not None:
            x = self.attn_1(x)
        return self.block_2(x)


class UpDecoder(nn.Module):
    """The decoder both families share: codes [B, C, G, G] -> conv_in -> the middle -> levels, each
    upsampling but the last -> norm, swish, conv_out -> images [B, 3, G*f, G*f] (raw, not clamped).

    `block(in_channels, out_channels)` makes one residual block, `middle(width)` the middle. Modules
    are made in the checkpoints' order (so a seeded random model is the same as before)."""

    def __init__(self, latent_channels: int, ch: int, mults: Sequence[int], num_blocks: int,
                 block: Callable[[int, int], nn.Module], middle: Callable[[int], nn.Module]):
        super().__init__()
        width = ch * mults[-1]
        self.conv_in = nn.Conv2d(latent_channels, width, 3, padding=1)
        self.mid = middle(width)
        levels = []
        # built deepest first (that is where the width comes from), stored shallowest first
        # (the checkpoint's `up.0` is the full-resolution level)
        for i in reversed(range(len(mults))):
            blocks = []
            for _ in range(num_blocks):
                blocks.append(block(width, ch * mults[i]))
                width = ch * mults[i]
            levels.insert(0, Level(blocks, upsample=Upsample(width) if i > 0 else None))
        self.up = nn.ModuleList(levels)
        self.norm_out = group_norm(width)
        self.conv_out = nn.Conv2d(width, 3, 3, padding=1)

    def forward(self, z: Tensor) -> Tensor:
        h = self.mid(self.conv_in(z))  # [B, ch * mult[-1], G, G]
        for level in self.up[::-1]:
            h = level(h)
        return self.conv_out(swish(self.norm_out(h)))  # [B, 3, G*f, G*f]


def check_images(images: Tensor, size: int | None = None, multiple: int = 1, *,
                 values: bool = True) -> None:
    """Raise ValueError unless `images` is a non-empty float tensor [B, 3, H, W] with H = W = `size`
    (when given) and H, W multiples of `multiple`; with `values`, also pixels in [0, 1] (one pass,
    one device sync: the base encoders skip it, the model's entry points have made it)."""
    if not isinstance(images, Tensor):
        raise ValueError(f"expected images as a torch.Tensor, got {type(images).__name__}")
    if size is not None and tuple(images.shape[1:]) != (3, size, size):
        raise ValueError(f"expected images of shape [B, 3, {size}, {size}], got {list(images.shape)}")
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected images [B, 3, H, W], got {list(images.shape)}")
    if images.shape[2] % multiple or images.shape[3] % multiple:
        raise ValueError(f"image size {list(images.shape[2:])} is not a multiple of the base "
                         f"downsampling {multiple}")
    if not images.is_floating_point():
        raise ValueError(f"expected float images in [0, 1], got dtype {images.dtype} "
                         f"(divide uint8 images by 255)")
    if images.shape[0] == 0:
        raise ValueError("expected at least one image, got an empty batch")
    if values:
        lo, hi = torch.stack(torch.aminmax(images.detach())).tolist()
        if lo < -1e-3 or hi > 1 + 1e-3 or lo != lo or hi != hi:
            raise ValueError(f"expected images in [0, 1], got values in [{lo:.3g}, {hi:.3g}]")
