"""The recurrent encoder: image tokens plus a growing set of latent tokens, one pass per iteration."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ModelConfig
from ..precision import exact_float32
from .layers import Transformer


def _embedding(*shape: int) -> nn.Parameter:
    return nn.Parameter(shape[-1] ** -0.5 * torch.randn(*shape))


class RecurrentEncoder(nn.Module):
    """Builds the sequence [cls ; N image tokens ; latents of iterations 0..t] and refines it.

    Every iteration re-encodes all latents: the code of length 2 L0 is not a prefix extension of
    the code of length L0.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        W, N, L0 = cfg.encoder_width, cfg.num_image_tokens, cfg.tokens_per_iter
        # the pixels' own patch features fill the channels the base features leave free
        self.patch_embed = nn.Conv2d(3, W - cfg.base.latent_channels, cfg.patch_size, cfg.patch_size)
        self.cls = _embedding(1, W)
        self.pos = _embedding(1 + N, W)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, W))
        self.latent_tokens = _embedding(L0, W)
        self.latent_pos = _embedding(L0, W)
        self.step_emb = _embedding(cfg.num_iters, L0, W)
        self.ln_pre = nn.LayerNorm(W)
        self.ln_recur = nn.LayerNorm(W)
        self.blocks = Transformer(W, cfg.encoder_depth, cfg.encoder_heads)
        self.ln_post = nn.LayerNorm(W)
        self.to_latent = nn.Linear(W, cfg.latent_dim) if cfg.factorize else nn.Identity()
        # ours (`error_feedback`): code error [Cb] -> image-token update [W]; zeroed by ALIT's init
        self.feedback = nn.Linear(cfg.base.latent_channels, W) if cfg.error_feedback else None
        self.num_image_tokens = N

    def image_tokens(self, images: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """images [B, 3, H, W], base features [B, Cb, G, G] -> unit-norm tokens [B, N, W]."""
        patches = self.patch_embed(images)  # [B, W - Cb, G, G]
        tokens = torch.cat([features, patches], 1).flatten(2).transpose(1, 2)  # [B, N, W]
        return F.normalize(tokens, dim=-1)

    def _seed(self, t: int, batch: int) -> torch.Tensor:
        seed = self.latent_tokens + self.latent_pos + self.step_emb[t]  # [L0, W]
        return seed.expand(batch, -1, -1)

    def start(self, tokens: torch.Tensor) -> torch.Tensor:
        """Image tokens [B, N, W] -> the iteration-0 sequence [B, 1+N+L0, W]."""
        B = tokens.shape[0]
        x = torch.cat([self.cls.expand(B, 1, -1), tokens], 1) + self.pos  # [B, 1+N, W]
        x = torch.cat([x, self._seed(0, B)], 1)  # [B, 1+N+L0, W]
        return self.ln_pre(x)

    def grow(self, x: torch.Tensor, t: int) -> torch.Tensor:
        """Append the latent seed of iteration t; the whole sequence goes through ln_recur."""
        return self.ln_recur(torch.cat([x, self._seed(t, x.shape[0])], 1))

    def latents(self, x: torch.Tensor) -> torch.Tensor:
        """Encoder output [B, 1+N+L, W] -> factorised latents [B, L, d], in the weights' dtype under
        any autocast: they choose the ids, and their bf16 rounding alone changed the length the
        bundled model's rule chose for 1 image in 10 (benchmarks/results/precision_agreement.md)."""
        z = x[:, 1 + self.num_image_tokens:]  # [B, L, W]
        with exact_float32(z.device.type):
            return self.to_latent(self.ln_post(z.to(self.ln_post.weight.dtype)))

    def feed(self, x: torch.Tensor, error: torch.Tensor) -> torch.Tensor:
        """Add the projected code error [B, N, Cb] of the iteration just run to the image tokens of x."""
        N = self.num_image_tokens
        return self._with_image(x, x[:, 1:1 + N] + self.feedback(error.to(x.dtype)))

    def halt(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Replace halted image tokens (mask [B, N] bool) by mask_token + their position."""
        N = self.num_image_tokens
        masked = (self.mask_token + self.pos[1:1 + N]).expand(x.shape[0], -1, -1)  # [B, N, W]
        return self._with_image(x, torch.where(mask[..., None], masked, x[:, 1:1 + N]))

    def _with_image(self, x: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """x [B, 1+N+L, W] with its N image tokens replaced by `image` [B, N, W]."""
        return torch.cat([x[:, :1], image, x[:, 1 + self.num_image_tokens:]], 1)
