"""Ours, not the paper's: standardise the factorised latents before the quantiser and decoder.

Why (measured on a fresh `tiny-vae-continuous` with a trained base, issue #12): the encoder's latent
outputs are the learned latent seed plus what attention brings from the image, and at
initialisation the image's share is under 1% (std across images 0.0068 against a magnitude of
0.80). The decoder then sees inputs that are the same for every image, learns each grid position's
mean code first, and the gradient that would teach it to read the latents is ~1000x weaker: stage
1 sits on a saddle for hundreds to thousands of steps. Removing the part that every image shares
(the mean over images, per iteration, position and channel) and scaling the rest to unit variance
keeps the image's share of the latent path at 1 from the first step on.

Like batch norm: batch statistics while training (and running averages of them updated: a plain
mean over the first 1/momentum batches, so the averages are right from the first steps on, then an
exponential one), the running averages at inference, so a batch of one image encodes as it would in any batch. It has no
learned parameters; the quantiser after it L2-normalises each latent anyway.
"""
from __future__ import annotations

import torch
from torch import nn


class LatentStandardizer(nn.Module):
    """[B, L, d] factorised latents of iteration t -> (z - mean) / std per (t, position, channel)."""

    def __init__(self, num_iters: int, max_positions: int, dim: int, momentum: float = 0.01,
                 eps: float = 1e-5):
        super().__init__()
        self.momentum, self.eps = momentum, eps
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
        if self.training and z.shape[0] > 1:
            stats = z.float()
            mean, var = stats.mean(0), stats.var(0, unbiased=False)  # [L, d] each
            with torch.no_grad():
                self.batches[t] += 1
                weight = max(self.momentum, 1.0 / self.batches[t].item())
                self.running_mean[t, :L].lerp_(mean.detach().to(self.running_mean.dtype), weight)
                self.running_var[t, :L].lerp_(var.detach().to(self.running_var.dtype), weight)
        else:
            mean, var = self.running_mean[t, :L], self.running_var[t, :L]
        return ((z.float() - mean) * torch.rsqrt(var + self.eps)).to(z.dtype)


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
