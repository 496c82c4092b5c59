"""Stage 1, `distill` (docs/design.md 1.3): the base tokenizer is frozen; the recurrent encoder, latent
quantiser and decoder learn to predict its code at every rollout iteration, with the paper's
per-iteration weights (`losses.distill`)."""
from __future__ import annotations

import torch
from torch import nn

from ..config import ModelConfig
from ..errors import AlitError
from ..losses.distill import distill_loss
from ..model.alit import ALIT
from ..model.halting import Halting
from .sources import load_base, load_init
from .stage import Stage
from .stage_helpers import grad_checkpointing, latent_codebook_restarter, preset_config, training_halting

__all__ = ["DistillStage"]


class DistillForward(nn.Module):
    """What DDP wraps: images -> (total loss, per-iteration terms)."""

    def __init__(self, model: ALIT, weights):
        super().__init__()
        self.model = model
        self.weights = tuple(weights)

    def forward(self, images: torch.Tensor, halting: Halting, quantize: bool = True):
        roll = self.model.rollout(images, halting, pixels=False, quantize=quantize)
        out = distill_loss(roll, self.weights)
        logs = {"loss": out.total}
        for t, (nll, code, q) in enumerate(zip(out.nll, out.code, out.quantizer)):
            if nll is not None:
                logs[f"nll/{t}"] = nll
            logs[f"code/{t}"] = code
            if self.model.quantizer is not None:
                logs[f"quantizer/{t}"] = q
        return out.total, logs


class DistillStage(Stage):
    find_unused = True  # the encoder's mask token gets no gradient while nothing halts

    def __init__(self, recipe, device, log, saved_meta: dict | None = None):
        super().__init__(recipe, device, log)
        if saved_meta is not None:
            config = ModelConfig.from_dict(saved_meta["config"])
            model = ALIT(config)  # weights come from the checkpoint
        else:
            config = preset_config(recipe.model, recipe.model_overrides)
            if recipe.init is not None:
                if recipe.base is not None:
                    raise AlitError("give --base or --init, not both: --init's model brings its own base")
                loaded, where = load_init(recipe.init)
                config = loaded.config
                quantize = recipe.model_overrides.get("quantize", config.quantize)
                model = ALIT(config.replace(quantize=quantize))
                missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
                if unexpected or any(not k.startswith("quantizer.") for k in missing):
                    raise AlitError(f"{where}: its weights do not fit this model ({(unexpected or missing)[:3]})")
                log(f"initial weights: {where} (its EMA weights, base included, frozen)"
                    + (", with a new latent quantiser" if missing else ""))
            elif recipe.base is None:
                raise AlitError("distill needs a trained base tokenizer: --base BASE_RUN_OR_CHECKPOINT "
                                "(train one with `alit train base --config tiny`, or convert the paper's "
                                "with `alit convert`); `--set base=random` only for smoke tests")
            elif recipe.base == "random":
                log("base tokenizer: random weights (base=random): a smoke test, not a useful model")
                model = ALIT(config)
            else:
                base, where = load_base(recipe.base, config.image_size)
                if base.cfg.kind != config.base.kind:
                    raise AlitError(f"{where} is a {base.cfg.kind} base, but model {recipe.model!r} is "
                                    f"{config.base.kind}-based: --set model=<size>-{base.cfg.kind}")
                config = config.replace(base=base.cfg)
                model = ALIT(config)
                model.base.load_state_dict(base.state_dict())
                log(f"base tokenizer: {where} ({base.cfg.kind}, {sum(p.numel() for p in base.parameters()):,} "
                    f"parameters), frozen")
        self.model = model.to(device)
        self.model.base.requires_grad_(False)  # stage 1: the base is frozen (docs/design.md 1.3)
        self.model.train()
        self.forward_module = DistillForward(self.model, recipe.iteration_weights)
        self.restarter = latent_codebook_restarter(self.model, recipe.restart_dead_codes, log)
        if recipe.quantizer_warmup and self.model.quantizer is not None:
            every = recipe.restart_dead_codes
            if not every or recipe.quantizer_warmup % every:
                raise AlitError(f"quantizer_warmup ({recipe.quantizer_warmup}) needs restart_dead_codes "
                                f"dividing it (got {every}): the codes restart onto the latents when it ends")
            log(f"latent quantiser bypassed for the first {recipe.quantizer_warmup} steps")
        if recipe.activation_checkpointing:
            grad_checkpointing(self.model, log)
        trainable = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
        log(f"model: {recipe.model}, {config.num_iters} iterations x {config.tokens_per_iter} tokens, "
            f"{config.image_size}px, {trainable:,} trainable parameters; halting during training: {recipe.halting}")

    def micro_step(self, images, step, micro, backward):
        warm = step <= self.recipe.quantizer_warmup
        loss, logs = self.forward_module(images, training_halting(self, step, micro), quantize=not warm)
        if warm and self.restarter is not None:
            self.restarter.step_usage.zero_()  # nothing counts as used: every code restarts at its end
        backward(loss)
        return {k: v.detach() for k, v in logs.items()}


