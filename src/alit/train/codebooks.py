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
        self.usage = torch.zeros(weight.shape[0], dtype=torch.long)  # since the last restart, all processes
        self.step_usage = torch.zeros_like(self.usage)  # this process, this step
        self.pool: list[torch.Tensor] = []
        self.restarted = 0  # codes restarted by the last `step_end`

    def observe(self, z: torch.Tensor, ids: torch.Tensor) -> None:
        """Input vectors z [..., d] and the ids [...] they were given."""
        z = z.detach().reshape(-1, z.shape[-1]).float()
        if self.normalize:
            z = F.normalize(z, dim=-1)
        self.step_usage += torch.bincount(ids.detach().reshape(-1).cpu(), minlength=len(self.usage))
        self.pool.append(z)

    @torch.no_grad()
    def step_end(self, step: int) -> int:
        """After optimizer step `step`: every `every` steps, restart the codes nobody used."""
        self.restarted = 0
        # summed over processes every step, so a checkpoint (written by rank 0) holds everyone's
        self.usage += dist.all_reduce_sum(self.step_usage.to(self.weight.device)).cpu()
        self.step_usage.zero_()
        if self.every <= 0 or step % self.every:
            self.pool.clear()  # the candidates are the vectors of the restart step itself
            return 0
        usage = self.usage.clone()
        pool = torch.cat(self.pool)[-self.max_pool:] if self.pool else self.weight.new_zeros(0, self.weight.shape[1])
        self.pool.clear()
        self.usage.zero_()
        pool = dist.all_gather_cat(pool.float())
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
        self.weight.data[dead.to(self.weight.device)] = chosen.to(self.weight.dtype)
        self.restarted = len(dead)
        return self.restarted

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
