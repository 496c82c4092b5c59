"""Dynamic halting: image tokens the decoder already explains are masked out of the encoder.

After decoding at iteration t, a mask [B, N] marks image tokens to halt; in the encoder sequence
they are replaced by `mask_token + pos` at their position, so later iterations spend attention on
what is still missing. The mask is recomputed from scratch every iteration.

Modes (docs/design.md 2.1):
- "off": nothing halts.
- "threshold": deterministic. VQGAN base: halt where p(ground-truth id) >= threshold. VAE base:
  halt where the mean absolute code error over channels is below the threshold.
- "paper": the paper's code. VQGAN base: Bernoulli(p) draws, kept only where p >= threshold
  (draws come from `generator`, or are injected to reproduce a stored run). VAE base: nothing
  halts (the paper's code writes its mask into a temporary copy).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..config import HALTING_MODES


@dataclass
class Halting:
    mode: str = "off"
    threshold: float = 0.55
    generator: torch.Generator | None = None
    draws: Sequence[torch.Tensor] | None = None  # injected Bernoulli draws, [B, N] per iteration

    def __post_init__(self):
        if self.mode not in HALTING_MODES:
            raise ValueError(f"halting must be one of {HALTING_MODES}, got {self.mode!r}")

    def mask(self, t: int, gt_prob: torch.Tensor | None,
             code_error: torch.Tensor | None) -> torch.Tensor | None:
        """The halting mask [B, N] (bool) after iteration t, or None when nothing can halt.

        gt_prob: VQGAN base, probability of each token's ground-truth id [B, N].
        code_error: VAE base, mean |predicted - true code| over channels [B, N].
        """
        if self.mode == "off":
            return None
        if gt_prob is not None:
            above = gt_prob >= self.threshold
            if self.mode == "threshold":
                return above
            return self._draw(t, gt_prob).bool() & above
        intended = code_error < self.threshold
        return intended if self.mode == "threshold" else None

    def _draw(self, t: int, p: torch.Tensor) -> torch.Tensor:
        if self.draws is not None:
            if t >= len(self.draws) or self.draws[t].shape != p.shape:
                raise ValueError(f"injected halting draws must hold a {tuple(p.shape)} tensor for "
                                 f"iteration {t}; got {len(self.draws)} draws")
            return self.draws[t].to(p.device, p.dtype)
        return torch.bernoulli(p.detach(), generator=self.generator)
