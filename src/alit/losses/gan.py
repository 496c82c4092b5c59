"""The adversarial pieces of the paper's stage 2 (and of base-tokenizer training).

PatchGAN discriminator (3 strided layers, 64 channels, BatchNorm, as in taming / the paper's
`gan_losses.*.discriminator`), hinge losses, and the adaptive weight: the ratio of the gradient
norms of the reconstruction loss and of the generator's GAN loss at the decoder's last layer.
`Adversarial` holds one discriminator per rollout iteration (the paper) or one shared, and has a
`generator` and a `discriminator` mode.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class PatchDiscriminator(nn.Module):
    """Images [B, 3, H, W] in [0, 1] -> real/fake logits per patch [B, 1, h, w]."""

    def __init__(self, channels: int = 64, layers: int = 3, in_channels: int = 3):
        super().__init__()
        mods: list[nn.Module] = [nn.Conv2d(in_channels, channels, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        width = channels
        for i in range(1, layers + 1):
            out = channels * min(2 ** i, 8)
            stride = 2 if i < layers else 1  # the last layer keeps the resolution
            mods += [nn.Conv2d(width, out, 4, stride, 1, bias=False), nn.BatchNorm2d(out), nn.LeakyReLU(0.2, True)]
            width = out
        mods.append(nn.Conv2d(width, 1, 4, 1, 1))
        self.main = nn.Sequential(*mods)
        self.apply(_init)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.main(images * 2 - 1)  # the discriminator sees [-1, 1], as taming's


def _init(m: nn.Module) -> None:
    if isinstance(m, nn.Conv2d):
        nn.init.normal_(m.weight, 0.0, 0.02)
    elif isinstance(m, nn.BatchNorm2d):
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


def hinge_d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    return 0.5 * (F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean())


def hinge_g_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    return -fake_logits.mean()


def adaptive_weight(rec_loss: torch.Tensor, gan_loss: torch.Tensor, last_layer: torch.Tensor,
                    max_weight: float = 1e4) -> torch.Tensor:
    """|d rec / d W| / (|d gan / d W| + 1e-4) at the last decoder weight W, clamped, detached."""
    g_rec = torch.autograd.grad(rec_loss, last_layer, retain_graph=True)[0]
    g_gan = torch.autograd.grad(gan_loss, last_layer, retain_graph=True)[0]
    return (g_rec.norm() / (g_gan.norm() + 1e-4)).clamp(0, max_weight).detach()


def gan_weight(step: int, schedule: Sequence[tuple[int, float]]) -> float:
    """The schedule's weight at optimizer step `step` (1-based): the last entry whose start <= step."""
    weight = 0.0
    for start, w in sorted(schedule):
        if step > start:
            weight = w
    return weight


class Adversarial(nn.Module):
    """Discriminator(s) and the two hinge objectives.

    `generator(fake, rec_loss, last_layer, index, weight)` -> (weighted loss, logs): the term added to
    the generator's loss, weight * adaptive weight * hinge_g, with the discriminator frozen.
    `discriminator(real, fake, index)` -> (loss, logs) for the discriminator's own update.
    """

    def __init__(self, count: int = 1, channels: int = 64, layers: int = 3, max_weight: float = 1e4):
        super().__init__()
        self.discriminators = nn.ModuleList([PatchDiscriminator(channels, layers) for _ in range(count)])
        self.max_weight = max_weight

    def generator(self, fake: torch.Tensor, rec_loss: torch.Tensor, last_layer: torch.Tensor,
                  index: int = 0, weight: float = 1.0, disc: nn.Module | None = None):
        disc = disc if disc is not None else self.discriminators[index]
        frozen = [p for p in disc.parameters() if p.requires_grad]
        for p in frozen:  # the generator's term must not train the discriminator
            p.requires_grad_(False)
        try:
            g = hinge_g_loss(disc(fake))
        finally:
            for p in frozen:
                p.requires_grad_(True)
        w = adaptive_weight(rec_loss, g, last_layer, self.max_weight) if fake.requires_grad else g.new_zeros(())
        return weight * w * g, {"gan/g_loss": g.detach(), "gan/adaptive_weight": w, "gan/weight": torch.tensor(weight)}

    def discriminator(self, real: torch.Tensor, fake: torch.Tensor, index: int = 0,
                      disc: nn.Module | None = None):
        """disc: the (possibly DDP-wrapped) discriminator to call; default self.discriminators[index]."""
        disc = disc if disc is not None else self.discriminators[index]
        # one pass over both halves (taming runs two, with BatchNorm statistics per half): a
        # DDP-wrapped module is called once per backward
        logits = disc(torch.cat([real, fake.detach()]))
        real_logits, fake_logits = logits.chunk(2)
        loss = hinge_d_loss(real_logits, fake_logits)
        return loss, {"gan/d_loss": loss.detach(), "gan/logits_real": real_logits.detach().mean(),
                      "gan/logits_fake": fake_logits.detach().mean()}
