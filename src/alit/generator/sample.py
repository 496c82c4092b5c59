"""Sampling: a length from p(L | c) (or the one asked for), then the ids of that length, one per step.

Samples are grouped by length and run in batches of one length, so a batch costs steps in
proportion to its length (and no sample waits for a longer one). With the KV cache (the default)
a step feeds one position; without it, the whole prefix again (the same ids, for measuring).

Randomness: every sample j owns row j of one seeded table of uniform draws [n, 1 + max_len], read
by inverse-CDF sampling (column 0: the length, column 1 + i: id i). A sample therefore depends on
the seed and its index only: not on the batch size, on n, or on the cache.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from ..encoding import Encoding
from ..errors import AlitError
from .model import GeneratorConfig, KVCache, LengthGPT


@dataclass(frozen=True)
class SamplingOptions:
    temperature: float = 1.0    # logits / T; 0: always the likeliest id
    top_k: int | None = None    # keep the k likeliest ids
    top_p: float | None = None  # keep the likeliest ids up to a probability of p (nucleus)
    cfg: float = 1.0            # classifier-free guidance w: logits u + w (c - u); 1: the class logits alone

    def __post_init__(self):
        if not self.temperature >= 0:
            raise AlitError(f"temperature must be 0 or more, got {self.temperature}")
        if self.top_k is not None and self.top_k < 1:
            raise AlitError(f"top_k must be at least 1, got {self.top_k}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise AlitError(f"top_p must be in (0, 1], got {self.top_p}")
        if not self.cfg >= 0:
            raise AlitError(f"cfg must be 0 or more, got {self.cfg}")


@dataclass
class Samples:
    encoding: Encoding               # the tokens: `tok.decode(samples.encoding)` gives the images
    classes: torch.Tensor            # LongTensor [n]: the class of each sample (the null class: none)
    log_likelihood: torch.Tensor     # float64 [n], nats: log p(L | c) + log p(ids | L, c) under the model
                                     # (temperature 1, no truncation, no guidance)
    length_log_likelihood: torch.Tensor  # float64 [n]: log p(L | c)
    seconds: torch.Tensor            # float64 [n]: each sample's share of the wall time of its batches
    seed: int


@torch.no_grad()
def sample(model: LengthGPT, n: int, num_tokens: int | str = "auto", classes=None,
           options: SamplingOptions = SamplingOptions(), *, seed: int | None = None, batch_size: int = 64,
           use_cache: bool = True, clock=time.perf_counter) -> Samples:
    """n samples. num_tokens: "auto" (drawn from p(L | c)) or one of the tokenizer's lengths.
    classes: None (unconditional: the null class), a class id or name, or one per sample."""
    c = model.config
    if n < 1 or batch_size < 1:
        raise AlitError(f"n and batch_size must be at least 1, got {n} and {batch_size}")
    classes = class_ids(c, classes, n)
    if options.cfg != 1 and c.num_classes == 0:
        raise AlitError("classifier-free guidance (cfg) needs a generator trained with classes")
    fixed = length_index_of(c, num_tokens)
    seed = int(torch.randint(0, 2 ** 31 - 1, ()).item()) if seed is None else int(seed)
    draws = torch.rand(n, 1 + c.max_len, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    seconds = torch.zeros(n, dtype=torch.float64)
    length_index, length_ll = _lengths(model, classes, fixed, draws[:, 0], batch_size, seconds, clock)
    ids = torch.full((n, c.max_len), -1, dtype=torch.long)
    ids_ll = torch.zeros(n, dtype=torch.float64)
    for rows in _groups(length_index, batch_size):
        start = clock()
        L = c.lengths[int(length_index[rows[0]])]
        got, ll = _sample_ids(model, classes[rows], length_index[rows], draws[rows, 1:1 + L], options, use_cache)
        ids[rows, :L], ids_ll[rows] = got.cpu(), ll.cpu()  # on an accelerator: waits for the sampling
        seconds[rows] += (clock() - start) / len(rows)
    lengths = torch.tensor([c.lengths[i] for i in length_index.tolist()], dtype=torch.long)
    Lmax = int(lengths.max())
    enc = Encoding(lengths, ids[:, :Lmax], None, c.lengths.index(Lmax) + 1, c.tokenizer, c.vocab_size)
    return Samples(enc, classes, length_ll + ids_ll, length_ll, seconds, seed)


def class_ids(c: GeneratorConfig, classes, n: int) -> torch.Tensor:
    """LongTensor [n] of class ids from None, one id or name, or one per sample."""
    if classes is None:
        return torch.full((n,), c.null_class, dtype=torch.long)
    if c.num_classes == 0:
        raise AlitError("this generator was trained without classes: sample without a class")
    one = isinstance(classes, (int, str)) or (isinstance(classes, torch.Tensor) and classes.ndim == 0)
    items = [classes] * n if one else list(classes)
    if len(items) != n:
        raise AlitError(f"{len(items)} classes for {n} samples")
    return torch.tensor([_class_id(c, x.item() if isinstance(x, torch.Tensor) else x) for x in items],
                        dtype=torch.long)


def _class_id(c: GeneratorConfig, x: int | str) -> int:
    """A class name (or its id written as digits) or id -> the id."""
    if isinstance(x, str):
        if x in c.classes:
            return c.classes.index(x)
        if not x.isdigit():
            more = " ..." if c.num_classes > 10 else ""
            raise AlitError(f"unknown class {x!r}; the generator knows {', '.join(c.classes[:10])}{more}")
    i = int(x)
    if not 0 <= i < c.num_classes:
        raise AlitError(f"class {i} is not in [0, {c.num_classes})")
    return i


def length_index_of(c: GeneratorConfig, num_tokens: int | str) -> int | None:
    """None for "auto", else the position of num_tokens among the lengths."""
    if num_tokens == "auto":
        return None
    try:
        return c.lengths.index(int(num_tokens))
    except (TypeError, ValueError):
        raise AlitError(f"num_tokens must be 'auto' or one of the lengths {list(c.lengths)}, got {num_tokens!r}") from None


def _lengths(model, classes, fixed, draws, batch_size, seconds, clock) -> tuple[torch.Tensor, torch.Tensor]:
    """(length index [n], log p(L | c) [n]): drawn from p(L | c) as learned (the sampling options
    shape the ids only), or the fixed one."""
    c, device = model.config, next(model.parameters()).device
    index = torch.zeros(len(classes), dtype=torch.long)
    ll = torch.zeros(len(classes), dtype=torch.float64)
    for a in range(0, len(classes), batch_size):
        start = clock()
        rows = slice(a, a + batch_size)
        h = model(c.class_token(classes[rows]).to(device)[:, None])[:, 0]  # [b, C]
        logits = model.length_logits(h).double()  # [b, num lengths]
        if fixed is None:
            chosen = pick(logits, draws[rows].to(device))
        else:
            chosen = torch.full((logits.shape[0],), fixed, dtype=torch.long, device=device)
        ll[rows] = logits.log_softmax(-1).gather(1, chosen[:, None])[:, 0].cpu()
        index[rows] = chosen.cpu()
        seconds[rows] += (clock() - start) / logits.shape[0]
    return index, ll


def _groups(length_index: torch.Tensor, batch_size: int) -> list[torch.Tensor]:
    """Rows of one length at a time (shortest first), in batches of at most batch_size."""
    out = []
    for i in sorted(set(length_index.tolist())):
        rows = torch.nonzero(length_index == i).flatten()
        out += list(rows.split(batch_size))
    return out


def _sample_ids(model: LengthGPT, classes, length_index, draws, options: SamplingOptions,
                use_cache: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """ids [b, L] and their log-likelihood [b] for b sequences of one length L = draws.shape[1]."""
    c = model.config
    param = next(model.parameters())
    b, L = draws.shape
    guided = options.cfg != 1
    if guided:  # the same sequences twice: with their class, then with the null class
        classes = torch.cat([classes, torch.full_like(classes, c.null_class)])
        length_index = length_index.repeat(2)
    tokens = torch.stack([c.class_token(classes), c.length_token(length_index)], 1).to(param.device)  # [rows, 2]
    cache = KVCache(c, tokens.shape[0], param.device, param.dtype) if use_cache else None
    h = model(tokens, cache)[:, -1]  # [rows, C]: predicts id 0
    draws = draws.to(param.device)
    out = torch.empty(b, L, dtype=torch.long, device=param.device)
    ll = torch.zeros(b, dtype=torch.float64, device=param.device)
    for i in range(L):
        logits = model.id_logits(h).double()  # [rows, K]
        cond = logits[:b]
        if guided:
            logits = logits[b:] + options.cfg * (cond - logits[b:])
        out[:, i] = pick(logits, draws[:, i], options)
        ll += cond.log_softmax(-1).gather(1, out[:, i:i + 1])[:, 0]
        if i + 1 == L:
            break
        new = out[:, i].repeat(2 if guided else 1)[:, None]  # [rows, 1]
        if use_cache:
            h = model(new, cache)[:, -1]
        else:
            tokens = torch.cat([tokens, new], 1)  # [rows, 2 + i + 1]
            h = model(tokens)[:, -1]
    return out, ll


def pick(logits: torch.Tensor, u: torch.Tensor, options: SamplingOptions = SamplingOptions()) -> torch.Tensor:
    """One draw per row of logits [b, V] by inverse CDF at the uniforms u [b] -> LongTensor [b]."""
    if options.temperature == 0:
        return logits.argmax(-1)
    logits = logits.double() / options.temperature
    if options.top_k is not None and options.top_k < logits.shape[1]:
        kth = logits.topk(options.top_k, dim=-1).values[:, -1:]  # [b, 1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = logits.softmax(-1)  # [b, V]
    if options.top_p is not None:
        sorted_p, order = probs.sort(-1, descending=True)
        keep = (sorted_p.cumsum(-1) - sorted_p) < options.top_p  # mass before each id: the likeliest always stays
        probs = probs * torch.zeros_like(keep).scatter(-1, order, keep)
    cdf = probs.cumsum(-1)  # [b, V]
    target = u.to(cdf)[:, None] * cdf[:, -1:]
    return torch.searchsorted(cdf, target, right=True)[:, 0].clamp(max=logits.shape[1] - 1)
