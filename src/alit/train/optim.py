"""AdamW with decay only on matrix weights, and the warm-up + cosine learning-rate schedule."""
from __future__ import annotations

import math

import torch
from torch import nn

_DECAYED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d)


def param_groups(module: nn.Module, weight_decay: float) -> list[dict]:
    """Two groups: weights of linear/conv layers decay; biases, norms, embeddings, tokens do not."""
    decay, plain, seen = [], [], set()
    for mod in module.modules():
        for name, p in mod.named_parameters(recurse=False):
            if not p.requires_grad or id(p) in seen:
                continue
            seen.add(id(p))
            (decay if isinstance(mod, _DECAYED) and name == "weight" else plain).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": plain, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def adamw(module: nn.Module, lr: float, betas, weight_decay: float, device: torch.device):
    groups = param_groups(module, weight_decay)
    if not groups:
        raise ValueError("nothing to train: every parameter is frozen")
    # fused kernels change the summation order; the foreach path keeps CPU runs reproducible
    return torch.optim.AdamW(groups, lr=lr, betas=tuple(betas), fused=device.type == "cuda")


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
    for g in optimizer.param_groups:
        g["lr"] = lr
