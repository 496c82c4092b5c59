"""The latent decoder: N query tokens attend to the latents and predict the base tokenizer's code."""
from __future__ import annotations

import torch
from torch import nn

from ..config import ModelConfig
from .encoder import _embedding
from .layers import Transformer


class LatentDecoder(nn.Module):
    """latents [B, L, d] -> per-image-token outputs [B, N, out] (base logits or base latents)."""

    def __init__(self, cfg: ModelConfig, out_dim: int):
        super().__init__()
        W, N = cfg.decoder_width, cfg.num_image_tokens
        self.cls = _embedding(1, W)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, W))
        self.pos = _embedding(1 + N, W)
        self.from_latent = nn.Linear(cfg.latent_dim, W) if cfg.factorize else nn.Identity()
        self.latent_pos = _embedding(cfg.max_latent_positions, W)
        self.ln_pre = nn.LayerNorm(W)
        self.blocks = Transformer(W, cfg.decoder_depth, cfg.decoder_heads)
        self.ln_post = nn.LayerNorm(W)
        self.head = nn.Sequential(nn.Linear(W, 2 * W), nn.Tanh(), nn.Linear(2 * W, out_dim))
        self.num_image_tokens = N

    def queries(self, batch: int) -> torch.Tensor:
        """[cls ; N mask tokens] + pos -> [B, 1+N, W] (independent of the image)."""
        N = self.num_image_tokens
        q = torch.cat([self.cls[None], self.mask_token.expand(1, N, -1)], 1) + self.pos
        return q.expand(batch, -1, -1)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        B, L, _ = latents.shape
        z = self.from_latent(latents) + self.latent_pos[:L]  # [B, L, W]
        x = torch.cat([self.queries(B), z], 1)  # [B, 1+N+L, W]
        # only the N query outputs are read: the last block computes no others
        x = self.blocks(self.ln_pre(x), rows=slice(1, 1 + self.num_image_tokens))  # [B, N, W]
        return self.head(self.ln_post(x))
