"""Exponential moving average of a module's weights (what checkpoints export)."""
from __future__ import annotations

import torch
from torch import nn


class EMA:
    """Float32 shadow copies of a module's state.

    Trainable parameters are averaged; frozen parameters and buffers are copied, so a frozen base
    tokenizer comes out bit-identical. With `warmup`, the decay after n updates is
    min(decay, (1 + n) / (10 + n)), so short runs export more than their initial weights.
    """

    def __init__(self, module: nn.Module, decay: float, warmup: bool = True):
        self.decay = decay
        self.warmup = warmup
        self.updates = 0
        self.shadow = {k: v.detach().float().clone() if v.is_floating_point() else v.detach().clone()
                       for k, v in module.state_dict().items()}

    def current_decay(self) -> float:
        if not self.warmup:
            return self.decay
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        d = self.current_decay()
        trainable = {n for n, p in module.named_parameters() if p.requires_grad}
        state = module.state_dict()
        averaged = [k for k in state if k in trainable]
        copied = [k for k in state if k not in trainable]
        # one multi-tensor kernel each, not one per tensor (hundreds of launches a step on a GPU)
        if averaged:
            torch._foreach_lerp_([self.shadow[k] for k in averaged], [state[k].float() for k in averaged], 1 - d)
        if copied:
            torch._foreach_copy_([self.shadow[k] for k in copied], [state[k] for k in copied])
        self.updates += 1

    def state_dict(self, like: nn.Module | None = None) -> dict[str, torch.Tensor]:
        """The averaged weights, in the module's own dtypes when `like` is given."""
        if like is None:
            return dict(self.shadow)
        ref = like.state_dict()
        return {k: v.to(ref[k].dtype) for k, v in self.shadow.items()}

    def load(self, weights: dict[str, torch.Tensor], updates: int) -> None:
        missing = set(self.shadow) - set(weights)
        if missing:
            raise KeyError(f"EMA weights lack {sorted(missing)[:5]}")
        for k, v in weights.items():
            if k in self.shadow:
                self.shadow[k].copy_(v)
        self.updates = updates
