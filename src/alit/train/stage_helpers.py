"""What the stages share (each stage imports from here, never from a sibling stage): the model a
recipe names, the per-step seeds and halting, the latent codebook's restarts, activation
checkpointing."""
from __future__ import annotations

import dataclasses

import torch
from torch import nn

from ..config import BaseConfig, ModelConfig
from ..data.transforms import sample_seed
from ..errors import AlitError
from ..model.halting import Halting
from ..presets import preset
from .. import dist
from .codebooks import DeadCodeRestarter, latent_quantizer_restarter


def preset_config(name: str, overrides: dict) -> ModelConfig:
    """ModelConfig of a preset with recipe overrides; a `base` mapping updates the preset's base."""
    overrides = dict(overrides)
    base_changes = overrides.pop("base", None) or {}
    try:
        config = preset(name, **overrides)
        if base_changes:
            if isinstance(base_changes, BaseConfig):
                base = base_changes
            else:
                base = dataclasses.replace(config.base, **base_changes)
            config = config.replace(base=base)
    except (TypeError, ValueError) as e:
        raise AlitError(f"recipe: model {name!r} with model_overrides {overrides}: {e}") from None
    return config


def step_seed(seed: int, step: int, micro: int) -> int:
    """A seed for the random draws of one (step, micro-step, process)."""
    return sample_seed(seed, step * 4096 + micro, stream=16 + dist.rank())


def training_halting(stage, step: int, micro: int) -> Halting:
    """The recipe's halting mode; "paper" draws from a generator seeded by (seed, step, micro, rank)."""
    mode = stage.recipe.halting
    gen = None
    if mode == "paper":
        gen = torch.Generator(stage.device).manual_seed(step_seed(stage.recipe.seed, step, micro))
    return Halting(mode, stage.model.config.halting_threshold, gen)


def latent_codebook_restarter(model: nn.Module, every: int, log) -> DeadCodeRestarter | None:
    """Restarts of an ALIT model's unused latent codes every `every` steps (None: no restarts, or
    no latent quantiser)."""
    if not every or model.quantizer is None:
        return None
    restarter = latent_quantizer_restarter(model.quantizer, every)
    log(f"latent codebook: unused codes restarted every {every} steps")
    return restarter


def grad_checkpointing(model, log) -> None:
    """Activation checkpointing of every transformer block (recomputed in backward), said in the log."""
    log(f"activation checkpointing: {model.set_grad_checkpointing()} transformer blocks recomputed in backward")
