"""Transformer pieces shared by the recurrent encoder and the latent decoder."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint


class Attention(nn.Module):
    """Full bidirectional multi-head self-attention with a packed q/k/v projection (rows q, k, v)."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor, rows: slice | None = None) -> torch.Tensor:
        """x [B, S, D] -> [B, S, D]; with `rows`, only those positions are computed -> [B, R, D]
        (they still attend to every position)."""
        B, S, D = x.shape
        h = self.heads
        if rows is None:
            qkv = self.qkv(x).view(B, S, 3, h, D // h)  # [B, S, 3, h, D/h]
            q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each [B, h, S, D/h]
        else:
            # keys and values from every position, queries only where an output is wanted
            w, b = self.qkv.weight, self.qkv.bias
            kv = F.linear(x, w[D:], b[D:]).view(B, S, 2, h, D // h)  # [B, S, 2, h, D/h]
            k, v = kv.permute(2, 0, 3, 1, 4)  # each [B, h, S, D/h]
            q = F.linear(x[:, rows], w[:D], b[:D])  # [B, R, D]
            q = q.view(B, q.shape[1], h, D // h).transpose(1, 2)  # [B, h, R, D/h]
        y = F.scaled_dot_product_attention(q, k, v)  # scale 1/sqrt(D/h), no mask
        return self.proj(y.transpose(1, 2).reshape(B, q.shape[2], D))


class MLP(nn.Module):
    def __init__(self, width: int, ratio: int = 4):
        super().__init__()
        self.fc = nn.Linear(width, ratio * width)
        self.proj = nn.Linear(ratio * width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(F.gelu(self.fc(x)))  # exact (erf) GELU, as the paper's models


class Block(nn.Module):
    """Pre-LN residual block: x + attn(ln1 x), then x + mlp(ln2 x)."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.ln1 = nn.LayerNorm(width)
        self.attn = Attention(width, heads)
        self.ln2 = nn.LayerNorm(width)
        self.mlp = MLP(width)

    def forward(self, x: torch.Tensor, rows: slice | None = None) -> torch.Tensor:
        """[B, S, D] -> [B, S, D], or [B, R, D] for the positions `rows` only."""
        if rows is None:
            x = x + self.attn(self.ln1(x))
        else:
            x = x[:, rows] + self.attn(self.ln1(x), rows)
        return x + self.mlp(self.ln2(x))


class Transformer(nn.Sequential):
    """A stack of blocks with no final LayerNorm (callers own their norms).

    grad_checkpointing: keep only each block's input for backward and recompute the block there
    (activation memory of a block pass shrinks to its input, for ~1/3 more compute; same gradients).
    """

    def __init__(self, width: int, depth: int, heads: int):
        super().__init__(*[Block(width, heads) for _ in range(depth)])
        self.grad_checkpointing = False

    def forward(self, x: torch.Tensor, rows: slice | None = None) -> torch.Tensor:
        """[B, S, D] -> [B, S, D]. With `rows`, only those output positions are returned: the last
        block computes no others (the earlier ones need every position)."""
        last = len(self) - 1
        recompute = self.grad_checkpointing and torch.is_grad_enabled()
        for i, block in enumerate(self):
            r = rows if i == last else None
            x = checkpoint(block, x, r, use_reentrant=False) if recompute else block(x, r)
        return x
