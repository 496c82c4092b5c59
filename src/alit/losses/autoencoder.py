"""Losses of the base 2D tokenizers themselves (`alit train base`).

The VQGAN module only looks up nearest codes; training it needs the VQ-VAE objective: the
codebook moves towards the encoder outputs, the encoder commits to its codes, and the decoder
sees the codes with a straight-through gradient. The KL-VAE needs the KL of its posterior.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..precision import nearest_code


@dataclass
class VQOutput:
    codes: torch.Tensor           # [B, C, G, G] straight-through codes for the decoder
    ids: torch.Tensor             # [B, G*G]
    codebook_loss: torch.Tensor   # mse(codes, h.detach()): trains the codebook
    commitment_loss: torch.Tensor  # commitment * mse(codes.detach(), h): trains the encoder


def vector_quantize(h: torch.Tensor, codebook: torch.Tensor, commitment: float = 0.25) -> VQOutput:
    """Encoder features h [B, C, G, G], codebook [K, C] -> nearest codes with both VQ losses."""
    B, C, G, W = h.shape
    flat = h.permute(0, 2, 3, 1).reshape(-1, C)  # [B*G*G, C], row-major grid
    ids = nearest_code(flat, codebook)  # [B*G*G]
    q = F.embedding(ids, codebook).view(B, G, W, C).permute(0, 3, 1, 2)  # [B, C, G, G]
    codebook_loss = F.mse_loss(q, h.detach())
    commitment_loss = commitment * F.mse_loss(q.detach(), h)
    codes = h + (q - h).detach()
    return VQOutput(codes, ids.view(B, G * W), codebook_loss, commitment_loss)


def kl_divergence(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, exp(logvar)) || N(0, 1)) summed over latent elements, per image [B]."""
    return 0.5 * (mean.pow(2) + logvar.exp() - 1 - logvar).flatten(1).sum(1)


def codebook_usage(ids: torch.Tensor, size: int) -> torch.Tensor:
    """Fraction of the codebook used in a batch of ids (a dead-code monitor)."""
    return torch.bincount(ids.flatten(), minlength=size).gt(0).float().mean()
