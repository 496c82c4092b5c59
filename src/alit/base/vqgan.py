"""The MAGE-style VQGAN: the discrete base tokenizer behind ALIT's "vqgan" models.

It is not the usual taming VQGAN. Its quirks, all needed to reproduce the released weights:
bias-free 3x3 convs in the residual blocks and the encoder's input conv; a residual block that
changes width discards its input (result = shortcut(h) + h); 2x2 average-pool downsampling;
no attention; no quant_conv / post_quant_conv; a 1x1 encoder output conv.

Parameter names follow the official checkpoint (`encoder.*`, `decoder.*`, `quantize.embedding.weight`)
so that `vqgan.ckpt`, or the `base_tokenizer.vqgan.*` part of an ALIT checkpoint with that prefix
stripped, loads with strict=True.
"""
from __future__ import annotations

import torch.nn as nn
from torch import Tensor

from ..config import BaseConfig
from ..precision import nearest_code
from .blocks import Level, Middle, UpDecoder, check_images, group_norm, swish


class ResBlock(nn.Module):
    """norm -> swish -> conv3x3 -> norm -> swish -> conv3x3, all convs bias-free.

    [B, C_in, H, W] -> [B, C_out, H, W]. When the width changes, the input is dropped and the 1x1
    shortcut maps the block's own output out -> out: result = shortcut(h) + h (as in the checkpoints).
    """

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.norm1 = group_norm(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.norm2 = group_norm(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.nin_shortcut = (nn.Conv2d(out_channels, out_channels, 1, bias=False)
                             if in_channels != out_channels else None)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(swish(self.norm1(x)))
        h = self.conv2(swish(self.norm2(h)))
        if self.nin_shortcut is not None:
            return self.nin_shortcut(h) + h
        return x + h


class Encoder(nn.Module):
    """Images [B, 3, H, W] -> continuous features h [B, latent_channels, H/f, W/f]."""

    def __init__(self, cfg: BaseConfig):
        super().__init__()
        ch, mults = cfg.channels, cfg.channel_mult
        self.conv_in = nn.Conv2d(3, ch, 3, padding=1, bias=False)
        levels, width = [], ch
        for i, mult in enumerate(mults):
            blocks = []
            for _ in range(cfg.num_res_blocks):
                blocks.append(ResBlock(width, ch * mult))
                width = ch * mult
            last = i == len(mults) - 1
            levels.append(Level(blocks, downsample=None if last else nn.AvgPool2d(2)))
        self.down = nn.ModuleList(levels)
        self.mid = Middle(ResBlock(width, width), ResBlock(width, width))
        self.norm_out = group_norm(width)
        self.conv_out = nn.Conv2d(width, cfg.latent_channels, 1)

    def forward(self, images: Tensor) -> Tensor:
        h = self.conv_in(images)  # [B, ch, H, W]
        for level in self.down:
            h = level(h)
        h = self.mid(h)  # [B, ch * mult[-1], H/f, W/f]
        return self.conv_out(swish(self.norm_out(h)))  # [B, latent_channels, H/f, W/f]


class Decoder(UpDecoder):
    """Codes z [B, latent_channels, G, G] -> images [B, 3, G*f, G*f] (raw, not clamped)."""

    def __init__(self, cfg: BaseConfig):
        super().__init__(cfg.latent_channels, cfg.channels, cfg.channel_mult, cfg.num_res_blocks, ResBlock,
                         lambda width: Middle(ResBlock(width, width), ResBlock(width, width)))


class Codebook(nn.Module):
    """Plain nearest-neighbour lookup table of `size` vectors of `dim` channels."""

    def __init__(self, size: int, dim: int):
        super().__init__()
        self.embedding = nn.Embedding(size, dim)

    def forward(self, z: Tensor) -> Tensor:
        """Vectors [M, C] -> ids [M] of the nearest rows (squared Euclidean, first index on ties)."""
        return nearest_code(z, self.embedding.weight)


class VQGAN(nn.Module):
    """MAGE-style VQGAN with ALIT's base-tokenizer protocol (see `alit.base`).

    `image_size` is accepted for symmetry with `KLVAE`; the VQGAN is fully convolutional and
    works at any size divisible by `cfg.downsample`.
    """

    def __init__(self, cfg: BaseConfig, image_size: int):
        super().__init__()
        if cfg.num_res_blocks < 1:
            raise ValueError(f"num_res_blocks must be >= 1, got {cfg.num_res_blocks}")
        self.cfg = cfg
        self.image_size = image_size
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        self.quantize = Codebook(cfg.codebook_size, cfg.latent_channels)

    @property
    def codebook(self) -> Tensor:
        """The code vectors [K, C]."""
        return self.quantize.embedding.weight

    def encode(self, images: Tensor) -> Tensor:
        """Images [B, 3, H, W] in [0, 1], used as given -> pre-quantisation features h [B, C, G, G]."""
        check_images(images, multiple=self.cfg.downsample, values=False)
        return self.encoder(images)

    def quantize_ids(self, h: Tensor) -> Tensor:
        """Features [B, C, G, G] -> ids [B, G*G] of the nearest codes, row-major over the grid."""
        B, C, G, W = h.shape
        z = h.permute(0, 2, 3, 1).reshape(B * G * W, C)  # [B*G*G, C], row-major grid
        return self.quantize(z).view(B, G * W)

    def decode(self, z: Tensor) -> Tensor:
        """Codes [B, C, G, G] -> images [B, 3, G*f, G*f], raw (not clamped)."""
        if z.ndim != 4 or z.shape[1] != self.cfg.latent_channels:
            raise ValueError(f"expected codes [B, {self.cfg.latent_channels}, G, G], got {list(z.shape)}")
        return self.decoder(z)

