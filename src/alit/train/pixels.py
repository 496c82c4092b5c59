"""The pixel-space objective `base` and `finetune` share: pixel_weight * L1 + perceptual_weight *
perceptual (+ ssim_weight * (1 - SSIM), ours, off by default), plus the scheduled hinge PatchGAN
term with the adaptive weight, and the discriminator update of the same step."""
from __future__ import annotations

import torch

from .. import dist
from ..losses.gan import Adversarial, gan_weight
from ..losses.perceptual import build_perceptual
from ..scoring import ssim
from .optim import adamw
from .recipe import parse_duration
from .stage import Stage


class PixelObjective:
    def __init__(self, recipe, device: torch.device, log, discriminators: int = 1):
        self.recipe, self.device = recipe, device
        self.perceptual = build_perceptual(recipe.perceptual, recipe.perceptual_path)
        if self.perceptual is None:
            log("perceptual loss: none (perceptual=none)")
        else:
            self.perceptual.to(device)
            log(f"perceptual loss: {self.perceptual.name}" + (
                " -- a SUBSTITUTE for LPIPS (the offline HED VGG16), not the paper's loss"
                if self.perceptual.substitute else ""))
        self.adversarial = None
        self.discriminators = []  # what runs forward passes (DDP-wrapped after wrap())
        if recipe.gan.schedule:
            g = recipe.gan
            self.adversarial = Adversarial(discriminators, g.channels, g.layers, g.max_adaptive_weight)
            self.adversarial.to(device).train()
            self.discriminators = list(self.adversarial.discriminators)
            log(f"GAN: {discriminators} PatchGAN discriminator(s), schedule {[list(x) for x in g.schedule]}")
        else:
            log("GAN: off (empty gan.schedule)")
        self._schedule = None

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        if self.adversarial is None:
            return {}
        g = self.recipe.gan
        return {"discriminator": adamw(self.adversarial, g.lr or self.recipe.peak_lr, g.betas, g.weight_decay,
                                       self.device)}

    def lr_scale(self, name: str) -> float:
        lr = self.recipe.gan.lr
        return lr / self.recipe.peak_lr if name == "discriminator" and lr else 1.0

    def wrap(self) -> None:
        self.discriminators = [dist.wrap(d, self.device) for d in self.discriminators]

    def weight(self, step: int, steps_per_epoch: float | None) -> float:
        if self.adversarial is None:
            return 0.0
        if self._schedule is None:
            self._schedule = [(parse_duration(s, steps_per_epoch, "gan.schedule start"), w)
                              for s, w in self.recipe.gan.schedule]
        return gan_weight(step, self._schedule)

    def step(self, images: torch.Tensor, recon: torch.Tensor, extra: torch.Tensor, logs: dict, *, step: int,
             steps_per_epoch: float | None, last_layer: torch.Tensor, index: int, backward) -> dict:
        """Generator loss (reconstruction + `extra` + GAN) backward, then the discriminator's."""
        r = self.recipe
        recon = recon.float()
        l1 = (recon - images).abs().mean()
        rec = r.pixel_weight * l1
        logs["l1"] = l1.detach()
        if r.ssim_weight > 0:  # the SSIM the `ssim:S` rule and `alit eval` use; float32 while training
            similarity = ssim(images, recon, dtype=torch.float32).mean()
            rec = rec + r.ssim_weight * (1 - similarity)
            logs["ssim"] = similarity.detach()
        if self.perceptual is not None:
            p = self.perceptual(recon, images).mean()
            rec = rec + r.perceptual_weight * p
            logs["perceptual"] = p.detach()
        total = rec + extra
        w = self.weight(step, steps_per_epoch)
        if w > 0:
            # the generator's term goes through the bare module: its parameters are frozen there
            g_term, g_logs = self.adversarial.generator(recon, rec, last_layer, index, w,
                                                        disc=self.adversarial.discriminators[index])
            total = total + g_term
            logs.update(g_logs)
        logs["loss"] = total.detach()
        backward(total)
        if w > 0:
            d_loss, d_logs = self.adversarial.discriminator(images, recon, index, disc=self.discriminators[index])
            backward(d_loss)
            logs.update(d_logs)
        return logs

    def state_dict(self) -> dict:
        return {"adversarial": self.adversarial.state_dict()} if self.adversarial is not None else {}

    def load_state_dict(self, state: dict) -> None:
        if self.adversarial is not None and "adversarial" in state:
            self.adversarial.load_state_dict(state["adversarial"])


class PixelStage(Stage):
    """A stage trained on pixels: its `pixels` objective adds the discriminators and their optimizer."""

    pixels: PixelObjective

    def optimizers(self):
        return {**super().optimizers(), **self.pixels.optimizers()}

    def lr_scale(self, name: str) -> float:
        return self.pixels.lr_scale(name)

    def wrap(self) -> None:
        super().wrap()
        self.pixels.wrap()

    def ddp_modules(self):
        return [self.forward_module, *self.pixels.discriminators]

    def extra_state(self) -> dict:
        return self.pixels.state_dict()

    def load_extra_state(self, state: dict) -> None:
        self.pixels.load_state_dict(state)
