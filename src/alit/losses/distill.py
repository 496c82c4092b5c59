"""Stage 1, latent distillation (docs/design.md 1.3): predict the frozen base tokenizer's code.

VQGAN base, per iteration t: w_t * CE(logits, gt ids) + mse(soft code, gt code) + quantiser loss.
VAE base: w_t * mse(predicted latent, gt latent) + quantiser loss.
(The paper's code builds a label-smoothing criterion but applies only its plain NLL term.)
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..model.alit import Rollout

DISTILL_WEIGHTS = (2.5, 2.0, 1.5, 1.25, 1.0, 1.0, 1.0, 1.0)


@dataclass
class DistillLoss:
    total: torch.Tensor                 # scalar, what backward() is called on
    nll: list[torch.Tensor | None]      # per iteration (VQGAN base), else None entries
    code: list[torch.Tensor]            # per iteration
    quantizer: list[torch.Tensor]       # per iteration (0 without quantiser)


def iteration_weight(t: int, weights: Sequence[float] = DISTILL_WEIGHTS) -> float:
    """w_t; iterations beyond the table use its last entry."""
    return weights[min(t, len(weights) - 1)]


def distill_loss(roll: Rollout, weights: Sequence[float] = DISTILL_WEIGHTS,
                 iterations: Sequence[int] | None = None) -> DistillLoss:
    """The stage-1 loss summed over `iterations` (default: every iteration of the rollout)."""
    targets = roll.targets
    its = range(len(roll.codes)) if iterations is None else iterations
    total = roll.codes[0].new_zeros(())
    nlls, codes, quants = [], [], []
    for t in its:
        w = iteration_weight(t, weights)
        code = F.mse_loss(roll.codes[t], targets.codes)
        if roll.logits is not None:
            logits = roll.logits[t]  # [B, N, K]
            nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.ids.reshape(-1))
            total = total + w * nll + code
        else:
            nll = None
            total = total + w * code
        q = roll.quantizer_losses[t]
        total = total + q
        nlls.append(nll)
        codes.append(code)
        quants.append(q)
    return DistillLoss(total, nlls, codes, quants)
