"""The generator: a decoder-only transformer over adaptive-length token sequences.

ALIT's codes are not nested (the code of an image at 32 tokens is not a prefix of its code at 64),
so a sample chooses its length first and then the ids of that length: p(L | c) p(ids | L, c).
One sequence, in a single vocabulary of ids, length tokens and class tokens:

    position   0          1            2 ..      L
    input      [class]    [length L]   id_0 .. id_{L-2}
    predicts   L          id_0         id_1 .. id_{L-1}

The class comes first so that the length may depend on it. An unconditional generator, or a class
dropped for classifier-free guidance, puts the null class there: it doubles as the start token.
Outputs are read through the token embedding (tied weights), restricted to the ids (`id_logits`)
or to the lengths (`length_logits`). `KVCache` keeps each block's keys and values while sampling,
so that a step costs one position, not the whole prefix.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..config import checked_fields


@dataclass(frozen=True)
class GeneratorConfig:
    vocab_size: int                # the tokenizer's codebook size K: ids are 0 .. K-1
    lengths: tuple[int, ...]       # every length the tokenizer gives, ascending; the longest sets the context
    tokenizer: str                 # fingerprint of that tokenizer (`tok.fingerprint()`): its ids, no other's
    classes: tuple[str, ...] = ()  # class names, a class id is a position here; () for no classes
    n_layer: int = 4               # transformer blocks
    n_head: int = 4                # attention heads (n_embd must divide by it)
    n_embd: int = 256              # width of every token
    dropout: float = 0.0           # on embeddings, attention weights and residual branches (training only)

    def __post_init__(self):
        object.__setattr__(self, "lengths", tuple(int(n) for n in self.lengths))
        object.__setattr__(self, "classes", tuple(str(c) for c in self.classes))
        if self.vocab_size < 2:
            raise ValueError(f"vocab_size must be at least 2, got {self.vocab_size}")
        if not self.lengths or self.lengths[0] < 1 or list(self.lengths) != sorted(set(self.lengths)):
            raise ValueError(f"lengths must be positive and strictly ascending, got {list(self.lengths)}")
        if len(set(self.classes)) != len(self.classes):
            raise ValueError("class names must be distinct")
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd {self.n_embd} is not a multiple of n_head {self.n_head}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def null_class(self) -> int:
        """The class id of 'no class' (unconditional samples, dropped classes)."""
        return self.num_classes

    @property
    def max_len(self) -> int:
        return self.lengths[-1]

    @property
    def context(self) -> int:
        """Input positions of the longest sequence: class, length and all ids but the last."""
        return self.max_len + 1

    @property
    def vocab(self) -> int:
        """Rows of the token embedding: ids, then lengths, then classes and the null class."""
        return self.vocab_size + len(self.lengths) + self.num_classes + 1

    def length_token(self, length_index: torch.Tensor) -> torch.Tensor:
        return length_index + self.vocab_size

    def class_token(self, classes: torch.Tensor) -> torch.Tensor:
        return classes + self.vocab_size + len(self.lengths)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["lengths"], d["classes"] = list(self.lengths), list(self.classes)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "GeneratorConfig":
        return cls(**checked_fields(cls, d))


# Sizes, as nanoGPT's: tiny for tests and CPUs, small for a few hours on one GPU, base as GPT-2 small.
PRESETS = {
    "tiny": dict(n_layer=2, n_head=2, n_embd=64),
    "small": dict(n_layer=6, n_head=6, n_embd=384),
    "base": dict(n_layer=12, n_head=12, n_embd=768),
}


def generator_config(preset: str, *, vocab_size: int, lengths, tokenizer: str, classes=(), **overrides) -> GeneratorConfig:
    """The config of a preset size for a tokenizer's ids (`overrides`: any other field)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown generator preset {preset!r}; known: {', '.join(PRESETS)}")
    return GeneratorConfig(vocab_size=vocab_size, lengths=tuple(lengths), tokenizer=tokenizer,
                           classes=tuple(classes), **{**PRESETS[preset], **overrides})


class KVCache:
    """Keys and values of every block at the positions fed so far (`pos` of them)."""

    def __init__(self, config: GeneratorConfig, batch: int, device, dtype):
        shape = (config.n_layer, batch, config.n_head, config.context, config.n_embd // config.n_head)
        self.k = torch.zeros(shape, device=device, dtype=dtype)  # [n_layer, B, h, context, hd]
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.pos = 0

    def store(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keep k, v [B, h, t, hd] of the new positions; -> every position's [B, h, pos + t, hd]."""
        end = self.pos + k.shape[2]
        self.k[layer, :, :, self.pos:end] = k
        self.v[layer, :, :, self.pos:end] = v
        return self.k[layer, :, :, :end], self.v[layer, :, :, :end]


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GeneratorConfig, layer: int):
        super().__init__()
        self.layer, self.n_head, self.dropout = layer, config.n_head, config.dropout
        self.qkv = nn.Linear(config.n_embd, 3 * config.n_embd)
        self.proj = nn.Linear(config.n_embd, config.n_embd)
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.n_head, C // self.n_head).permute(2, 0, 3, 1, 4)  # [B, h, T, hd]
        start = 0 if cache is None else cache.pos
        if cache is not None:
            k, v = cache.store(self.layer, k, v)  # [B, h, start + T, hd]
        dropout = self.dropout if self.training else 0.0
        if start == 0:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=dropout)
        else:  # new positions after cached ones: position start + i sees keys 0 .. start + i
            mask = torch.ones(T, start + T, dtype=torch.bool, device=x.device).tril(diagonal=start)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)
        y = y.transpose(1, 2).reshape(B, T, C)  # heads side by side again
        return self.resid_dropout(self.proj(y))


class MLP(nn.Module):
    def __init__(self, config: GeneratorConfig):
        super().__init__()
        self.fc = nn.Linear(config.n_embd, 4 * config.n_embd)
        self.proj = nn.Linear(4 * config.n_embd, config.n_embd)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.proj(F.gelu(self.fc(x))))


class Block(nn.Module):
    def __init__(self, config: GeneratorConfig, layer: int):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd)
        self.attn = CausalSelfAttention(config, layer)
        self.ln_2 = nn.LayerNorm(config.n_embd)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), cache)
        return x + self.mlp(self.ln_2(x))


class LengthGPT(nn.Module):
    """The architecture alone: tokens -> hidden states, and the two read-outs."""

    def __init__(self, config: GeneratorConfig):
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab, config.n_embd)
        self.wpe = nn.Embedding(config.context, config.n_embd)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config, i) for i in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd)
        self.apply(self._init)
        for name, p in self.named_parameters():
            if name.endswith("proj.weight"):  # residual branches: the sum of n_layer of them stays O(1)
                nn.init.normal_(p, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)
        if isinstance(module, nn.Linear):
            nn.init.zeros_(module.bias)

    def forward(self, tokens: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        """tokens [B, t] (of the joint vocabulary), at positions cache.pos .. (0 .. without a cache)
        -> hidden states [B, t, n_embd]; a cache is advanced past them."""
        start = 0 if cache is None else cache.pos
        t = tokens.shape[1]
        if start + t > self.config.context:
            raise ValueError(f"{start + t} positions, the context holds {self.config.context}")
        pos = torch.arange(start, start + t, device=tokens.device)  # [t]
        x = self.drop(self.wte(tokens) + self.wpe(pos))  # [B, t, C]
        for block in self.blocks:
            x = block(x, cache)
        if cache is not None:
            cache.pos += t
        return self.ln_f(x)

    def id_logits(self, h: torch.Tensor) -> torch.Tensor:
        """Hidden states [..., C] -> logits over the ids [..., K]."""
        return h @ self.wte.weight[:self.config.vocab_size].T

    def length_logits(self, h: torch.Tensor) -> torch.Tensor:
        """Hidden states [..., C] -> logits over the lengths [..., len(lengths)]."""
        K = self.config.vocab_size
        return h @ self.wte.weight[K:K + len(self.config.lengths)].T

    def sequence(self, classes: torch.Tensor, length_index: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """The input of whole sequences: classes [B], length_index [B], ids [B, Lmax] (-1 past each
        length) -> tokens [B, 1 + Lmax] = [class, length, ids but the last]."""
        c = self.config
        head = torch.stack([c.class_token(classes), c.length_token(length_index)], 1)  # [B, 2]
        return torch.cat([head, ids[:, :-1].clamp(min=0)], 1)  # padding: any id, never a target
