"""AdamW with decay only on matrix weights, the warm-up + cosine learning-rate schedule, and the
update of one optimizer step (`OptimizerStep`)."""
from __future__ import annotations

import math
from dataclasses import dataclass

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


@dataclass
class Update:
    """What one optimizer step did: `applied` False when it was skipped (a non-finite loss or
    gradient); the global gradient norm of each optimizer's parameters, before clipping."""

    applied: bool
    grad_norms: dict[str, float]


class OptimizerStep:
    """The update of every optimizer a stage trains, in one place: `begin` (lr, zero grads),
    `backward` of each micro-step's loss (averaged over `accum` micro-steps; scaled for fp16),
    then `apply`: unscale, clip to `grad_clip` (None: only measure), step -- or no update at all
    when a loss or a gradient is not finite. The loss scaler is on for fp16 only."""

    def __init__(self, optimizers: dict[str, torch.optim.Optimizer], grad_clip: float | None, *,
                 accum: int = 1, fp16: bool = False):
        self.optimizers, self.grad_clip, self.accum = optimizers, grad_clip, accum
        self.scaler = torch.amp.GradScaler("cuda", enabled=fp16)

    def begin(self, lr: float, lr_scale) -> None:
        """Set each optimizer's lr (`lr` times `lr_scale(name)`) and clear its gradients."""
        for name, opt in self.optimizers.items():
            set_lr(opt, lr * lr_scale(name))
            opt.zero_grad(set_to_none=True)

    def backward(self, loss: torch.Tensor) -> None:
        self.scaler.scale(loss / self.accum).backward()

    def apply(self, losses_finite: bool) -> Update:
        """The update, unless a loss (`losses_finite` False) or a gradient is not finite."""
        grad_norms: dict[str, float] = {}
        finite = losses_finite
        if finite:
            for name, opt in self.optimizers.items():
                self.scaler.unscale_(opt)
                params = [p for g in opt.param_groups for p in g["params"] if p.grad is not None]
                if params:  # clipped to grad_clip, or only measured (inf)
                    norm = torch.nn.utils.clip_grad_norm_(params, self.grad_clip or math.inf)
                    grad_norms[name] = float(norm)
            # a finite loss can still give non-finite gradients; fp16's scaler skips those itself
            finite = self.scaler.is_enabled() or all(math.isfinite(v) for v in grad_norms.values())
        if not finite:
            for opt in self.optimizers.values():
                opt.zero_grad(set_to_none=True)
            return Update(False, grad_norms)
        for opt in self.optimizers.values():
            self.scaler.step(opt)
        self.scaler.update()
        return Update(True, grad_norms)

    def state_dict(self) -> dict:
        return {"optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
                "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else None}

    def load_state_dict(self, state: dict) -> None:
        for name, opt in self.optimizers.items():
            opt.load_state_dict(state["optimizers"][name])
        if self.scaler.is_enabled() and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
