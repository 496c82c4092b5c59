"""The LDM AutoencoderKL ("KL-16" as released with MAR): the continuous base tokenizer behind
ALIT's "vae" models.

Standard LDM blocks: biased convs, a 1x1 shortcut on the input when the width changes,
single-head spatial self-attention, strided-conv downsampling after zero-padding the bottom/right.
The encoder is variational (2e output channels: mean and log-variance), followed by a 1x1
`quant_conv`; the decoder is preceded by a 1x1 `post_quant_conv` and has attention only in its
middle. Parameter names follow the official checkpoint (`encoder.*`, `decoder.*`, `quant_conv`,
`post_quant_conv`), so `vae.ckpt["model"]`, or the `base_tokenizer.vae.*` part of an ALIT
checkpoint with that prefix stripped, loads with strict=True.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from ..config import BaseConfig
from .blocks import Level, Middle, UpDecoder, check_images, group_norm, swish

LOGVAR_RANGE = (-30.0, 20.0)  # the clamp LDM applies to the posterior log-variance


class ResnetBlock(nn.Module):
    """norm -> swish -> conv3x3 -> norm -> swish -> conv3x3, plus the input (1x1 conv when the
    width changes): [B, C_in, H, W] -> [B, C_out, H, W]."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.norm1 = group_norm(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = group_norm(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.nin_shortcut = (nn.Conv2d(in_channels, out_channels, 1)
                             if in_channels != out_channels else None)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(swish(self.norm1(x)))
        h = self.conv2(swish(self.norm2(h)))
        if self.nin_shortcut is not None:
            x = self.nin_shortcut(x)
        return x + h


class AttnBlock(nn.Module):
    """Single-head self-attention over the H*W positions with 1x1-conv projections and a residual:
    [B, C, H, W] -> [B, C, H, W]."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = group_norm(channels)
        self.q = nn.Conv2d(channels, channels, 1)
        self.k = nn.Conv2d(channels, channels, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        B, C, H, W = x.shape
        h = self.norm(x)
        q = self.q(h).flatten(2).transpose(1, 2)  # [B, HW, C]
        k = self.k(h).flatten(2)  # [B, C, HW]
        v = self.v(h).flatten(2)  # [B, C, HW]
        weights = torch.softmax((q @ k) * C ** -0.5, dim=-1)  # [B, HW query, HW key]
        out = (v @ weights.transpose(1, 2)).view(B, C, H, W)  # [B, C, H, W]
        return x + self.proj_out(out)


class Downsample(nn.Module):
    """Zero-pad one row/column at the bottom/right, then a stride-2 3x3 conv:
    [B, C, H, W] -> [B, C, H/2, W/2]."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        # asymmetric padding (not padding=1) is what the released weights were trained with
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Encoder(nn.Module):
    """Images [B, 3, H, W] -> moments [B, 2e, H/f, W/f] (mean and log-variance, before quant_conv).

    Attention follows each residual block of a level whose resolution (the configured
    `image_size` halved once per level) is in `cfg.attn_resolutions`.
    """

    def __init__(self, cfg: BaseConfig, image_size: int):
        super().__init__()
        ch, mults = cfg.channels, cfg.channel_mult
        self.conv_in = nn.Conv2d(3, ch, 3, padding=1)
        levels, width, resolution = [], ch, image_size
        for i, mult in enumerate(mults):
            blocks, attns = [], []
            for _ in range(cfg.num_res_blocks):
                blocks.append(ResnetBlock(width, ch * mult))
                width = ch * mult
                if resolution in cfg.attn_resolutions:
                    attns.append(AttnBlock(width))
            last = i == len(mults) - 1
            levels.append(Level(blocks, attns, downsample=None if last else Downsample(width)))
            if not last:
                resolution //= 2
        self.down = nn.ModuleList(levels)
        self.mid = Middle(ResnetBlock(width, width), ResnetBlock(width, width), AttnBlock(width))
        self.norm_out = group_norm(width)
        self.conv_out = nn.Conv2d(width, 2 * cfg.latent_channels, 3, padding=1)

    def forward(self, images: Tensor) -> Tensor:
        h = self.conv_in(images)  # [B, ch, H, W]
        for level in self.down:
            h = level(h)
        h = self.mid(h)  # [B, ch * mult[-1], H/f, W/f]
        return self.conv_out(swish(self.norm_out(h)))  # [B, 2e, H/f, W/f]


class Decoder(UpDecoder):
    """Latents [B, e, G, G] (after post_quant_conv) -> images [B, 3, G*f, G*f] (raw, not clamped).

    Width `cfg.decoder_channels` (default: `channels`), `decoder_num_res_blocks + 1` blocks per level
    (default: `num_res_blocks + 1`), attention only in the middle.
    """

    def __init__(self, cfg: BaseConfig):
        ch = cfg.decoder_channels if cfg.decoder_channels is not None else cfg.channels
        num_blocks = 1 + (cfg.decoder_num_res_blocks if cfg.decoder_num_res_blocks is not None
                          else cfg.num_res_blocks)
        super().__init__(cfg.latent_channels, ch, cfg.channel_mult, num_blocks, ResnetBlock,
                         lambda width: Middle(ResnetBlock(width, width), ResnetBlock(width, width), AttnBlock(width)))


class KLVAE(nn.Module):
    """LDM AutoencoderKL with ALIT's base-tokenizer protocol (see `alit.base`).

    `image_size` is the resolution the architecture is configured for: it decides which encoder
    levels carry attention (`cfg.attn_resolutions`), so it must match the checkpoint's.
    """

    def __init__(self, cfg: BaseConfig, image_size: int):
        super().__init__()
        if cfg.num_res_blocks < 1:
            raise ValueError(f"num_res_blocks must be >= 1, got {cfg.num_res_blocks}")
        self.cfg = cfg
        self.image_size = image_size
        e = cfg.latent_channels
        self.encoder = Encoder(cfg, image_size)
        self.decoder = Decoder(cfg)
        self.quant_conv = nn.Conv2d(2 * e, 2 * e, 1)
        self.post_quant_conv = nn.Conv2d(e, e, 1)

    def moments(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """Images [B, 3, H, W] in [0, 1] -> posterior (mean, logvar), each [B, e, G, G];
        logvar clamped to [-30, 20]."""
        check_images(images, multiple=self.cfg.downsample, values=False)
        moments = self.quant_conv(self.encoder(images))  # [B, 2e, G, G]
        mean, logvar = moments.chunk(2, dim=1)
        return mean, logvar.clamp(*LOGVAR_RANGE)

    def encode(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Images [B, 3, H, W] -> latents [B, e, G, G] = (posterior mean, or a sample when
        `cfg.sample_posterior`) * `cfg.scale_factor`."""
        mean, logvar = self.moments(images)
        latents = mean
        if self.cfg.sample_posterior:
            noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
            latents = mean + torch.exp(0.5 * logvar) * noise
        return latents * self.cfg.scale_factor

    def decode(self, z: Tensor) -> Tensor:
        """Latents [B, e, G, G] -> images [B, 3, G*f, G*f], raw (not clamped).

        `z` is decoded as given: the caller decides whether to undo `scale_factor` first.
        """
        if z.ndim != 4 or z.shape[1] != self.cfg.latent_channels:
            raise ValueError(f"expected latents [B, {self.cfg.latent_channels}, G, G], got {list(z.shape)}")
        return self.decoder(self.post_quant_conv(z))
