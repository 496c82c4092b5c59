"""AdamW with decay only on matrix weights, and the warm-up + cosine learning-rate schedule."""
from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import AlitError

_DECAYED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d)


def param_groups(module: nn.Module, weight_decay: float, multipliers: dict[str, float] | None = None) -> list[dict]:
    """Weights of linear/conv layers decay; biases, norms, embeddings, tokens do not.

    multipliers (the recipe's `lr_multipliers`): parameter-name prefix -> factor on the lr of the
    parameters under it (the first prefix that matches), e.g. {"encoder.feedback": 10} for a
    projection added at zero to a trained model. Each group carries its factor as "lr_scale"."""
    multipliers = dict(multipliers or {})
    groups: dict[tuple[bool, float], list] = {}
    seen, used = set(), set()
    for prefix, mod in module.named_modules():
        for name, p in mod.named_parameters(recurse=False):
            if not p.requires_grad or id(p) in seen:
                continue
            seen.add(id(p))
            full = f"{prefix}.{name}" if prefix else name
            match = next((k for k in multipliers if full == k or full.startswith(k + ".")), None)
            used.add(match)
            decays = isinstance(mod, _DECAYED) and name == "weight"
            groups.setdefault((decays, multipliers.get(match, 1.0)), []).append(p)
    unused = sorted(set(multipliers) - used)
    if unused:
        raise AlitError(f"recipe: lr_multipliers: {', '.join(unused)} names no trainable parameter "
                        "(use a parameter-name prefix, e.g. encoder.feedback)")
    return [{"params": ps, "weight_decay": weight_decay if decays else 0.0, "lr_scale": scale}
            for (decays, scale), ps in sorted(groups.items(), key=lambda kv: (not kv[0][0], kv[0][1]))]


def adamw(module: nn.Module, lr: float, betas, weight_decay: float, device: torch.device,
          multipliers: dict[str, float] | None = None):
    groups = param_groups(module, weight_decay, multipliers)
    if not groups:
        raise ValueError("nothing to train: every parameter is frozen")
    # fused kernels change the summation order; the foreach path keeps CPU runs reproducible
    optimizer = torch.optim.AdamW(groups, lr=lr, betas=tuple(betas), fused=device.type == "cuda")
    set_lr(optimizer, lr)  # each group's own factor
    return optimizer


def lr_at(step: int, peak: float, warmup: int, total: int, floor: float = 0.0) -> float:
    """Learning rate of optimizer step `step` (1-based): linear warm-up, then cosine to `floor`."""
    if warmup > 0 and step <= warmup:
        return peak * step / warmup
    if total <= warmup:
        return peak
    # step warmup + 1 runs at the peak; the last step stays just above the floor
    progress = min(1.0, (step - warmup - 1) / (total - warmup))
    return floor + (peak - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set every group's lr: `lr` times the group's own "lr_scale" (1 when it has none)."""
    for g in optimizer.param_groups:
        g["lr"] = lr * g.get("lr_scale", 1.0)
