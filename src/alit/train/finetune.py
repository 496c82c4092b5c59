"""Stage 2, `finetune` (docs/design.md 1.3): everything trains, starting from the distill EMA weights.

Step s trains rollout iteration t = (s - 1) mod T, or the recipe's `iteration_cycle` in turn: the
images go through iterations 0..t and the code of iteration t is decoded to pixels by the base
decoder. Generator loss:
    pixel_weight * L1 + perceptual_weight * perceptual + quantiser loss(t)
    + schedule(s) * adaptive weight * hinge GAN,
with one PatchGAN per rollout iteration (the paper) or one shared, trained on the same step.
"""
from __future__ import annotations

import torch
from torch import nn

from ..config import ModelConfig
from ..errors import AlitError
from ..model.alit import ALIT
from ..model.halting import Halting
from .codebooks import latent_quantizer_restarter
from .distill import training_halting
from .loop import preset_config
from .pixels import PixelObjective, PixelStage
from .sources import load_init

__all__ = ["FinetuneStage"]


class FinetuneForward(nn.Module):
    """What DDP wraps: (images, t) -> (pixels of iteration t [B, 3, H, W], its quantiser loss).

    truncate: the recipe's `truncate_rollout` (see `truncated_step`)."""

    def __init__(self, model: ALIT, truncate: bool = False):
        super().__init__()
        self.model = model
        self.truncate = truncate

    def forward(self, images: torch.Tensor, t: int, halting: Halting):
        if self.truncate:
            codes, qloss = truncated_step(self.model, images, t, halting)
        else:
            roll = self.model.rollout(images, halting, num_iters=t + 1, pixels=False)
            codes, qloss = roll.codes[t], roll.quantizer_losses[t]
        return self.model.codes_to_images(codes), qloss


def truncated_step(model: ALIT, images: torch.Tensor, t: int, halting: Halting):
    """Iteration t's (predicted code, quantiser loss), with iterations 0..t-1 run without a graph.

    The values are those of `model.rollout(images, halting, num_iters=t + 1)`; only the gradient
    differs: it reaches the weights through iteration t, the latent seed it appends and the
    `ln_recur` of that append, not through the earlier passes of the shared encoder (for t = 0,
    everything, as without truncation)."""
    halt = model.resolve_halting(halting, images.device)
    if t == 0:
        state = model.start(images)
    else:
        with torch.no_grad():
            state = model.start(images)
            for i in range(t):
                model.iterate(state, i, halt, decode=False, grow=i < t - 1)
        state.x = model.encoder.grow(state.x, t)
    step = model.iterate(state, t, halt, last=True)
    return step.codes, step.quantizer_loss


class FinetuneStage(PixelStage):
    find_unused = True  # the base codebook (and the mask token while nothing halts) get no gradient

    def __init__(self, recipe, device, log, resume_config: dict | None = None):
        super().__init__(recipe, device, log)
        if resume_config is not None:
            model = ALIT(ModelConfig.from_dict(resume_config["config"]))
        elif recipe.init is None:
            raise AlitError("finetune starts from a distilled model: --init DISTILL_RUN_OR_CHECKPOINT "
                            "(`--set init=random` only for smoke tests)")
        elif recipe.init == "random":
            log("initial weights: random (init=random): a smoke test, not the paper's stage 2")
            model = ALIT(preset_config(recipe.model, recipe.model_overrides))
        else:
            loaded, where = load_init(recipe.init)
            model = ALIT(loaded.config)
            model.load_state_dict(loaded.state_dict())
            log(f"initial weights: {where} (a run or checkpoint: its EMA weights; a model folder: as it is)")
        self.model = model.to(device).train()
        self.model.requires_grad_(True)  # stage 2: everything trains, the base included
        self.forward_module = FinetuneForward(self.model, truncate=recipe.truncate_rollout)
        if recipe.truncate_rollout:
            log("truncated rollout: iteration t trains through its own pass only (truncate_rollout)")
        if recipe.restart_dead_codes and self.model.quantizer is not None:
            self.restarter = latent_quantizer_restarter(self.model.quantizer, recipe.restart_dead_codes)
            log(f"latent codebook: unused codes restarted every {recipe.restart_dead_codes} steps")
        if recipe.activation_checkpointing:
            log(f"activation checkpointing: {self.model.set_grad_checkpointing()} transformer blocks recomputed in backward")
        T = self.model.config.num_iters
        self.cycle = list(range(T)) if recipe.iteration_cycle is None else list(recipe.iteration_cycle)
        if max(self.cycle) >= T:
            raise AlitError(f"recipe: iteration_cycle {self.cycle} names iteration {max(self.cycle)}, "
                            f"but the model has {T} (0..{T - 1})")
        if recipe.iteration_cycle is not None:
            log(f"iterations trained in turn: {self.cycle}")
        count = T if recipe.discriminator == "per_iteration" else 1
        self.pixels = PixelObjective(recipe, device, log, discriminators=count)

    def micro_step(self, images, step, micro, backward):
        t = self.cycle[(step - 1) % len(self.cycle)]
        recon, qloss = self.forward_module(images, t, training_halting(self, step, micro))
        logs = {"iteration": torch.tensor(float(t), device=images.device), "quantizer_loss": qloss.detach()}
        index = t if len(self.pixels.discriminators) > 1 else 0
        return self.pixels.step(images, recon, qloss, logs, step=step, steps_per_epoch=self.steps_per_epoch,
                                last_layer=self.model.base.decoder.conv_out.weight, index=index,
                                backward=backward)
