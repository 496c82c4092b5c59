"""Stage `base`: train the 2D base tokenizer that `distill` then freezes.

VQGAN: pixel_weight * L1 + perceptual_weight * perceptual + codebook_weight * (codebook +
commitment losses), straight-through codes, then the hinge PatchGAN term with the adaptive
weight once the GAN schedule starts. KL-VAE: L1 + perceptual + kl_weight * KL (per pixel value),
the GAN likewise if scheduled. The result is a base checkpoint (`config.json` type "base") that
`alit train distill --base RUN` takes.
"""
from __future__ import annotations

import torch
from torch import nn

from ..base import build_base
from ..config import BaseConfig
from ..losses.autoencoder import codebook_usage, kl_divergence, vector_quantize
from .codebooks import DeadCodeRestarter
from .pixels import PixelObjective, PixelStage
from .previews import previews_grid
from .stage_helpers import preset_config, step_seed

__all__ = ["AutoencoderStage"]


class AutoencoderForward(nn.Module):
    """What DDP wraps: images -> (reconstructions [B, 3, H, W], weighted auxiliary loss, its terms)."""

    def __init__(self, model: nn.Module, recipe, restarter=None):
        super().__init__()
        self.model = model
        self.restarter = restarter
        self.commitment, self.codebook_weight, self.kl_weight = recipe.commitment, recipe.codebook_weight, recipe.kl_weight

    def forward(self, images: torch.Tensor, noise_seed: int):
        m = self.model
        if m.cfg.kind == "vqgan":
            h = m.encode(images)  # [B, C, G, G]
            vq = vector_quantize(h, m.codebook, self.commitment)
            if self.restarter is not None:
                self.restarter.observe(h.permute(0, 2, 3, 1), vq.ids)  # [B, G, G, C], ids [B, G*G]
            terms = {"codebook_loss": vq.codebook_loss, "commitment_loss": vq.commitment_loss}
            aux = self.codebook_weight * (vq.codebook_loss + vq.commitment_loss)
            return m.decode(vq.codes), aux, {**terms, "codebook_usage": codebook_usage(vq.ids, m.cfg.codebook_size)}
        mean, logvar = m.moments(images)  # [B, e, G, G] each
        gen = torch.Generator(images.device).manual_seed(noise_seed)
        noise = torch.randn(mean.shape, generator=gen, device=mean.device, dtype=mean.dtype)
        z = mean + torch.exp(0.5 * logvar) * noise  # the posterior is sampled while training
        kl = kl_divergence(mean.float(), logvar.float()).mean() / images[0].numel()  # per pixel value
        return m.decode(z), self.kl_weight * kl, {"kl_loss": kl}


class AutoencoderStage(PixelStage):
    def __init__(self, recipe, device, log, saved_meta: dict | None = None):
        super().__init__(recipe, device, log)
        if saved_meta is not None:
            cfg, size = BaseConfig(**saved_meta["config"]), saved_meta.get("image_size", 256)
        else:
            full = preset_config(recipe.model, recipe.model_overrides)
            cfg, size = full.base, full.image_size
        self.cfg, self.size = cfg, size
        self.model = build_base(cfg, size).to(device).train()
        if cfg.kind == "vqgan":
            # taming's codebook init: small codes, so early encoder outputs spread over many of them
            nn.init.uniform_(self.model.quantize.embedding.weight, -1 / cfg.codebook_size, 1 / cfg.codebook_size)
        if cfg.kind == "vqgan" and recipe.restart_dead_codes:
            self.restarter = DeadCodeRestarter(self.model.codebook, recipe.restart_dead_codes, normalize=False)
            log(f"codebook: unused codes restarted every {recipe.restart_dead_codes} steps")
        self.forward_module = AutoencoderForward(self.model, recipe, self.restarter)
        log(f"base tokenizer: {cfg.kind} from preset {recipe.model!r}, {size}px, grid {size // cfg.downsample}, "
            f"{sum(p.numel() for p in self.model.parameters()):,} parameters")
        self.pixels = PixelObjective(recipe, device, log, discriminators=1)

    @property
    def image_size(self) -> int:
        return self.size

    def export_config(self):
        return self.cfg, self.size

    def micro_step(self, images, step, micro, backward):
        recon, aux, terms = self.forward_module(images, step_seed(self.recipe.seed, step, micro))
        logs = {k: v.detach() for k, v in terms.items()}
        return self.pixels.step(images, recon, aux, logs, step=step, steps_per_epoch=self.steps_per_epoch,
                                last_layer=self.model.decoder.conv_out.weight, index=0, backward=backward)

    @torch.no_grad()
    def preview(self, images):
        self.model.eval()
        try:
            m = self.model
            if self.cfg.kind == "vqgan":
                recon = m.decode(vector_quantize(m.encode(images), m.codebook).codes)
            else:
                recon = m.decode(m.moments(images)[0])
        finally:
            self.model.train()
        return {"reconstructions/base": previews_grid(images, [recon])}, {}
