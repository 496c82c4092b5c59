"""Dead-code restarts: a codebook entry no input chose for `every` optimizer steps is moved onto
one of the input vectors its codebook serves worst.

Small data and short runs collapse a vector quantiser: early on every input falls in one code's
cell, the other codes get no gradient, and the code carries no information (the tiny recipe's
latent quantiser chose one code for every image before this). Restarting unused codes on real
inputs (as Jukebox and later VQ work do) keeps the codebook in use. It runs in training only, on
every process alike: usage is summed over processes and the candidate vectors gathered from all of
them in the order of the images' places in the global batch (alit/data/sampler.py), so 1
process and N processes with the same global batch see the same candidates in the same order.
The order is the only tie-breaker, and it is exact across such runs: the
dead codes take the candidates in batch order (never in the order of their errors or values), and
when every candidate is taken (the common case early on) which ones are taken does not depend on
the errors either. What rounding can still change: which of two near-equal codes an input picks,
hence which codes count as unused, and the cut among candidates with near-equal errors; a run
whose codes were restarted onto near-equal inputs (latents that barely differ across images) can
then restart different rows than another process count would.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .. import dist


class DeadCodeRestarter:
    """Restarts the unused rows of the codebook `weight` [K, d].

    The training loop calls `begin_micro_step()` before each micro-step's forward; the forward
    reports what the quantiser saw with `observe(z, ids)`, z [B, ..., d] with the micro-batch's
    images first; `normalize` says the quantiser compares L2-normalised vectors (the latent
    quantiser) rather than raw ones (VQGAN). At most about `max_pool` candidates are kept: those of
    the step's first images.
    """

    def __init__(self, weight: nn.Parameter, every: int, normalize: bool, max_pool: int = 8192):
        self.weight, self.every, self.normalize, self.max_pool = weight, every, normalize, max_pool
        # counts live on the codebook's device (no host sync per step): `usage` since the last
        # restart, of all processes; `step_usage` of this process, this step
        self.usage = torch.zeros(weight.shape[0], dtype=torch.long, device=weight.device)
        self.step_usage = torch.zeros_like(self.usage)
        self.pool: list[list[torch.Tensor]] = []  # per micro-step, its calls' inputs [B, n, d]

    def begin_micro_step(self) -> None:
        self.pool.append([])

    def observe(self, z: torch.Tensor, ids: torch.Tensor) -> None:
        """Input vectors z [B, ..., d] and the ids [B, ...] they were given."""
        flat = ids.detach().reshape(-1)
        # index_add_, not bincount: bincount on CUDA reads the largest id back to size its output
        self.step_usage.index_add_(0, flat, torch.ones_like(flat))
        if not self.pool:
            self.begin_micro_step()
        self.pool[-1].append(z.detach().reshape(z.shape[0], -1, z.shape[-1]))

    def _candidates(self) -> torch.Tensor:
        """The step's input vectors of every process [P, d], ordered by (the image's place in the
        global batch, call, position): micro-step m of rank r holds places m W M + r M + [0, M)."""
        d, world, rank = self.weight.shape[1], dist.world_size(), dist.rank()
        blocks = []
        for m, calls in enumerate(self.pool):
            rows = torch.cat(calls, 1).float() if calls else self.weight.new_zeros(0, 1, d).float()
            M, R = rows.shape[:2]  # [M, R, d]: image-major
            first = m * world * M + rank * M  # this block's first place in the global batch
            keep = max(0, min(M, math.ceil(self.max_pool / max(R, 1)) - first))
            blocks.append(rows[:keep].reshape(-1, d))
        if world > 1:  # the blocks of (micro-step, rank), in that order
            per_rank = dist.gather_objects([b.cpu() for b in blocks])
            blocks = [per_rank[r][m].to(self.weight.device) for m in range(len(blocks)) for r in range(world)]
        return torch.cat(blocks) if blocks else self.weight.new_zeros(0, d).float()

    @torch.no_grad()
    def step_end(self, step: int) -> int:
        """After optimizer step `step`: every `every` steps, restart the codes nobody used; returns
        how many were restarted."""
        # summed over processes every step, so a checkpoint (written by rank 0) holds everyone's
        self.usage += dist.all_reduce_sum(self.step_usage)
        self.step_usage.zero_()
        if self.every <= 0 or step % self.every:
            self.pool = []
            return 0
        pool = self._candidates()  # the candidates are the inputs of the restart step itself
        self.pool = []
        usage = self.usage.clone()
        self.usage.zero_()
        dead = (usage == 0).nonzero().flatten()
        if len(dead) == 0 or len(pool) == 0:
            return 0
        if self.normalize:
            pool = F.normalize(pool, dim=-1)
        # equal candidates count once, at their first place
        _, inverse = torch.unique(pool, dim=0, return_inverse=True)
        places = torch.arange(len(pool), device=pool.device)
        first = torch.full((int(inverse.max()) + 1,), len(pool), device=pool.device).scatter_reduce(
            0, inverse, places, "amin")
        pool = pool[first.sort().values]
        codes = self.weight.detach().float()
        if self.normalize:
            codes = F.normalize(codes, dim=-1)
        error = torch.cdist(pool, codes).min(1).values  # [P] distance to the nearest code
        chosen = torch.argsort(error, descending=True, stable=True)[:len(dead)].sort().values  # batch order
        dead = dead[:len(chosen)]
        self.weight.data[dead] = pool[chosen].to(self.weight.dtype)
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
