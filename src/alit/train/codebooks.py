"""Dead-code restarts: a codebook entry no input chose for `every` optimizer steps is moved onto
one of the input vectors its codebook serves worst.

Small data and short runs collapse a vector quantiser: early on every input falls in one code's
cell, the other codes get no gradient, and the code carries no information (the tiny recipe's
latent quantiser chose one code for every image before this). Restarting unused codes on real
inputs (as Jukebox and later VQ work do) keeps the codebook in use. It runs in training only, on
every process alike: usage is summed over processes and the candidate vectors gathered from all of
them, and the choice (largest distance to the nearest code) does not depend on their order, so
1 process and N processes with the same global batch restart the same codes.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from . import dist


class DeadCodeRestarter:
    """Restarts the unused rows of the codebook `weight` [K, d].

    The training step reports what the quantiser saw with `observe(z, ids)`; `normalize` says the
    quantiser compares L2-normalised vectors (the latent quantiser) rather than raw ones (VQGAN).
    """

    def __init__(self, weight: nn.Parameter, every: int, normalize: bool, max_pool: int = 8192):
        self.weight, self.every, self.normalize, self.max_pool = weight, every, normalize, max_pool
        # counts live on the codebook's device (no host sync per step): `usage` since the last
        # restart, of all processes; `step_usage` of this process, this step
        self.usage = torch.zeros(weight.shape[0], dtype=torch.long, device=weight.device)
        self.step_usage = torch.zeros_like(self.usage)
        self.pool: list[torch.Tensor] = []  # this step's inputs, as given

    def observe(self, z: torch.Tensor, ids: torch.Tensor) -> None:
        """Input vectors z [..., d] and the ids [...] they were given."""
        self.step_usage += torch.bincount(ids.detach().reshape(-1), minlength=len(self.usage))
        self.pool.append(z.detach())

    @torch.no_grad()
    def step_end(self, step: int) -> int:
        """After optimizer step `step`: every `every` steps, restart the codes nobody used; returns
        how many were restarted."""
        # summed over processes every step, so a checkpoint (written by rank 0) holds everyone's
        self.usage += dist.all_reduce_sum(self.step_usage)
        self.step_usage.zero_()
        pool, self.pool = self.pool, []  # the candidates are the inputs of the restart step itself
        if self.every <= 0 or step % self.every:
            return 0
        usage = self.usage.clone()
        self.usage.zero_()
        d = self.weight.shape[1]
        pool = torch.cat([z.reshape(-1, d) for z in pool])[-self.max_pool:].float() if pool else self.weight.new_zeros(0, d)
        if self.normalize:
            pool = F.normalize(pool, dim=-1)
        pool = dist.all_gather_cat(pool)
        dead = (usage == 0).nonzero().flatten()
        if len(dead) == 0 or len(pool) == 0:
            return 0
        codes = self.weight.detach().float()
        if self.normalize:
            codes = F.normalize(codes, dim=-1)
        error = torch.cdist(pool, codes).min(1).values  # [P] distance to the nearest code
        # distinct candidates, worst served first; ties broken by value, never by position
        pool, inverse = torch.unique(pool, dim=0, return_inverse=True)
        error = torch.zeros(len(pool), device=pool.device).scatter_reduce(0, inverse, error, "amax")
        order = torch.argsort(error, descending=True, stable=True)[:len(dead)]
        dead = dead[:len(order)]
        # the chosen go to the dead codes in value order (unique sorts), not error order: two
        # near-equal errors would swap places between runs that differ only by rounding
        chosen = torch.unique(pool[order], dim=0)
        self.weight.data[dead] = chosen.to(self.weight.dtype)
        return len(dead)

    def state_dict(self) -> dict:
        return {"usage": self.usage.clone()}

    def load_state_dict(self, state: dict) -> None:
        if "usage" in state:
            self.usage.copy_(state["usage"])


def latent_quantizer_restarter(quantizer: nn.Module, every: int) -> DeadCodeRestarter:
    """For `model.quantizer.VectorQuantizer`: a forward hook observes each training call
    (input z [B, L, d], output `Quantized`); evaluation and no-grad calls are not counted."""
    restarter = DeadCodeRestarter(quantizer.codebook.weight, every, normalize=True)

    def hook(module, args, output):
        if module.training and torch.is_grad_enabled():
            restarter.observe(args[0], output.ids)

    quantizer.register_forward_hook(hook)
    return restarter
