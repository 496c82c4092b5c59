"""Which images a training step sees: a function of (seed, step) alone.

The run reads an endless stream of positions c = 0, 1, 2, ...; position c is image
perm_e[c mod n] of epoch e = c // n, with perm_e a permutation seeded by (seed, e). Optimizer step
s (1-based) takes positions [(s-1) B, s B). Inside a step they are split into accumulation
micro-steps, then processes: micro-step m, rank r reads
    (s-1) B + m (W M) + r M + [0, M)          B = A W M (A micro-steps, W processes, M images)
so the set of images of a step does not depend on W or A, a resumed run continues at the
right place, and the augmentation of each image is seeded by its position.
"""
from __future__ import annotations

import torch

from .transforms import sample_seed


class StepBatches(torch.utils.data.Sampler):
    """Batch sampler: yields [(index, sample seed)] for every (step, micro-step) of one rank."""

    def __init__(self, size: int, batch_size: int, micro_batch: int, rank: int, world: int, seed: int,
                 first_step: int, last_step: int | None = None):
        if batch_size % (micro_batch * world):
            raise ValueError(f"batch_size {batch_size} is not a multiple of micro_batch_size "
                             f"{micro_batch} x {world} processes")
        self.size, self.batch, self.micro, self.rank, self.world = size, batch_size, micro_batch, rank, world
        self.seed, self.first, self.last = seed, first_step, last_step
        self.accum = batch_size // (micro_batch * world)
        self._perms: dict[int, torch.Tensor] = {}

    def index(self, position: int) -> int:
        epoch, k = divmod(position, self.size)
        perm = self._perms.get(epoch)
        if perm is None:
            gen = torch.Generator().manual_seed(sample_seed(self.seed, epoch, stream=1))
            perm = torch.randperm(self.size, generator=gen)
            self._perms = {epoch: perm}  # positions only move forward: keep one epoch
        return int(perm[k])

    def positions(self, step: int, micro: int) -> range:
        start = (step - 1) * self.batch + micro * self.world * self.micro + self.rank * self.micro
        return range(start, start + self.micro)

    def __iter__(self):
        step = self.first
        while self.last is None or step <= self.last:  # None: endless (the loop stops it)
            for m in range(self.accum):
                yield [(self.index(c), sample_seed(self.seed, c)) for c in self.positions(step, m)]
            step += 1

    def __len__(self) -> int:
        if self.last is None:
            raise TypeError("an endless StepBatches has no length")
        return max(0, self.last - self.first + 1) * self.accum
