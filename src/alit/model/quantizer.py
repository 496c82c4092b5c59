"""The latent vector quantiser: cosine-similarity codebook with a straight-through gradient."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..precision import nearest_code


@dataclass
class Quantized:
    latents: torch.Tensor          # [B, L, d] normalised code rows (straight-through form)
    ids: torch.Tensor              # [B, L] LongTensor
    commitment_loss: torch.Tensor  # scalar, already weighted by the commitment factor
    codebook_loss: torch.Tensor    # scalar

    @property
    def loss(self) -> torch.Tensor:
        return self.commitment_loss + self.codebook_loss


class VectorQuantizer(nn.Module):
    """Nearest code by squared distance between L2-normalised vectors (d-dim, K codes)."""

    def __init__(self, codebook_size: int, dim: int, commitment: float = 0.25):
        super().__init__()
        self.commitment = commitment
        self.codebook = nn.Embedding(codebook_size, dim)
        self.codebook.weight.data.uniform_(-1.0 / codebook_size, 1.0 / codebook_size)

    def normalized_codebook(self) -> torch.Tensor:
        return F.normalize(self.codebook.weight, dim=-1)  # [K, d]

    def lookup(self, ids: torch.Tensor) -> torch.Tensor:
        """ids [B, L] -> the normalised code rows [B, L, d] that the decoder consumes."""
        return F.embedding(ids, self.normalized_codebook())

    def forward(self, z: torch.Tensor) -> Quantized:
        B, L, d = z.shape
        z = F.normalize(z, dim=-1)
        codes = self.normalized_codebook()
        ids = nearest_code(z.reshape(-1, d), codes).view(B, L)  # [B, L]
        q = F.embedding(ids, codes)  # [B, L, d]
        commitment = self.commitment * F.mse_loss(q.detach(), z)
        codebook = F.mse_loss(q, z.detach())
        q = z + (q - z).detach()  # straight-through: gradients pass to the encoder unchanged
        return Quantized(q, ids, commitment, codebook)
