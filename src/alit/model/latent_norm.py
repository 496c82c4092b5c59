"""Ours, not the paper's: standardise the factorised latents before the quantiser and decoder.

Why: at initialisation what all images share drowns what differs, and stage 1 stalls on each
position's mean code (history and the A/B: benchmarks/results/default_model_log.md, sections 3-4).

Like batch norm: batch statistics in training (of the global batch under DDP, see `reduce`), their
running averages at inference, so a batch of one image encodes as it would in any batch. The
averages are a plain mean over the first 1/momentum batches, then an exponential one; under gradient
accumulation each micro-step (its images on all processes) is one batch, as for batch norm. No
learned parameters: the quantiser after it L2-normalises each latent anyway.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


class LatentStandardizer(nn.Module):
    """[B, L, d] factorised latents of iteration t -> (z - mean) / std per (t, position, channel).

    reduce: the element-wise sum over the processes that train together, differentiable, or None
    (this process alone). `alit.dist.wrap` sets it under DDP: the rank helpers live there, and
    model/ imports nothing from train/. With it, every process takes the statistics of the global
    batch (as SyncBatchNorm), also for a micro-batch of one image, and so updates the same averages.
    """

    def __init__(self, num_iters: int, max_positions: int, dim: int, momentum: float = 0.01,
                 eps: float = 1e-5, reduce: Callable[[torch.Tensor], torch.Tensor] | None = None):
        super().__init__()
        self.momentum, self.eps, self.reduce = momentum, eps, reduce
        self.register_buffer("running_mean", torch.zeros(num_iters, max_positions, dim))
        self.register_buffer("running_var", torch.ones(num_iters, max_positions, dim))
        self.register_buffer("batches", torch.zeros(num_iters, dtype=torch.long))  # seen per iteration

    @torch.no_grad()
    def reset_statistics(self) -> None:
        """Forget the running averages (identity statistics); the next batches set them afresh.
        After a stage that changed the encoder (stage 2 trains iteration t on one step in T, so the
        averages of the late iterations lag), recompute them over the training images in train mode."""
        self.running_mean.zero_()
        self.running_var.fill_(1.0)
        self.batches.zero_()

    def forward(self, z: torch.Tensor, t: int) -> torch.Tensor:
        L = z.shape[1]
        if self.training and (self.reduce is not None or z.shape[0] > 1):
            mean, var = self._batch_statistics(z)  # [L, d] each, float32
            self._update(t, mean, var)
        else:
            mean, var = self.running_mean[t, :L], self.running_var[t, :L]
        return ((z.float() - mean) * torch.rsqrt(var + self.eps)).to(z.dtype)

    def _batch_statistics(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and biased variance over the batch of z [B, L, d] (of all processes, with `reduce`)."""
        stats = z.float()
        if self.reduce is None:
            return stats.mean(0), stats.var(0, unbiased=False)
        count = stats.new_full((1,), stats.shape[0])  # the processes' batch sizes may differ
        sums = self.reduce(torch.cat([stats.sum(0).flatten(), count]))  # [L*d + 1]
        mean = sums[:-1].view_as(stats[0]) / sums[-1]
        # a second pass rather than E[z^2] - E[z]^2, which cancels: at initialisation the latents'
        # mean is over 100x their spread across images
        var = self.reduce((stats - mean).square().sum(0)) / sums[-1]
        return mean, var

    @torch.no_grad()
    def _update(self, t: int, mean: torch.Tensor, var: torch.Tensor) -> None:
        self.batches[t] += 1
        # the weight max(momentum, 1 / batches) stays on the device: reading `batches` on the host
        # would wait for the device at every iteration
        weight = torch.clamp(1.0 / self.batches[t].float(), min=self.momentum)
        L = mean.shape[0]
        _lerp_(self.running_mean[t, :L], mean, weight)
        _lerp_(self.running_var[t, :L], var, weight)


def _lerp_(buffer: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> None:
    """buffer.lerp_(target, weight) computed in float32, as lerp_ with a Python float weight does:
    lerp_ with a tensor weight would round it to the buffer's dtype in a bfloat16 model."""
    buffer.copy_(buffer.float().lerp(target.to(buffer.dtype).float(), weight))


@torch.no_grad()
def update_statistics(model: nn.Module, image_batches) -> int:
    """Recompute `model.latent_norm`'s running averages over `image_batches` (an iterable of image
    tensors [B, 3, S, S] in [0, 1]): the plain mean of every rollout iteration's batch statistics, as
    `torch.optim.swa_utils.update_bn` does for batch norm. Call it after a stage that moved the
    encoder (stage 2 trains iteration t on one step in T, so the late iterations' averages lag).
    Batches of one image carry no statistics and are skipped. Returns the number of images seen;
    the standardiser is left in eval mode, the rest of the model as it was."""
    norm = model.latent_norm
    norm.reset_statistics()
    momentum, norm.momentum = norm.momentum, 0.0  # weight 1/n for the n-th batch: a plain mean
    norm.train()
    seen = 0
    try:
        for images in image_batches:
            if images.shape[0] > 1:
                model.rollout(images, "off", pixels=False)
                seen += images.shape[0]
    finally:
        norm.momentum = momentum
        norm.eval()
    return seen
