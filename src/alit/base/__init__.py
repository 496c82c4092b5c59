"""The frozen 2D base tokenizers that ALIT distils into 1D tokens, behind one small protocol.

Both models map images [B, 3, H, W] in [0, 1] to a G x G grid of C-channel features
(G = H / cfg.downsample) and back:

    encode(images) -> [B, C, G, G]   the base tokens ALIT learns to reproduce
    decode(z)      -> [B, 3, H, W]   images, raw (not clamped)

`VQGAN` (cfg.kind == "vqgan", C = latent_channels) is discrete: `encode` gives the continuous
pre-quantisation features, `quantize_ids(h)` their nearest-code ids [B, G*G] (row-major), and
`codebook` the code vectors [K, C]; `decode` takes codes such as `codebook[ids]` laid out as
[B, C, G, G].

`KLVAE` (cfg.kind == "vae", C = latent_channels = e) is continuous: `encode` gives the posterior
mean (or a sample) times `cfg.scale_factor`, `moments(images)` the unscaled (mean, logvar), and
`decode` runs `post_quant_conv` and the decoder on whatever it is given (no unscaling).

Parameter names match the official checkpoints, so the `base_tokenizer.vqgan.*` /
`base_tokenizer.vae.*` parts of an ALIT checkpoint load strictly once the prefix is stripped.
"""
from __future__ import annotations

import torch.nn as nn

from ..config import BaseConfig
from .blocks import check_images
from .vae import KLVAE
from .vqgan import VQGAN

__all__ = ["VQGAN", "KLVAE", "build_base", "check_images"]


def build_base(cfg: BaseConfig, image_size: int) -> nn.Module:
    """The base tokenizer `cfg.kind` describes, configured for `image_size`-pixel inputs."""
    if cfg.kind == "vqgan":
        return VQGAN(cfg, image_size)
    if cfg.kind == "vae":
        return KLVAE(cfg, image_size)
    raise ValueError(f"unknown base kind {cfg.kind!r}")
