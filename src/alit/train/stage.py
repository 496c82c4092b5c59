"""What a training stage is to the loop (`loop.py`): what is built, what trains, what one
micro-step computes, what a checkpoint exports. `stages.py` names every stage."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .. import data as data_lib
from .. import dist, weights
from .optim import adamw
from .previews import latent_reliance, previews_grid
from .recipe import Recipe


class Stage:
    """One training stage. Subclasses build `model` (the module a checkpoint exports) and
    `forward_module` (what DDP wraps), and say what one micro-step computes.

    saved_meta: the config.json of the checkpoint a resumed run continues from (the model is
    rebuilt from its config; the weights come from the checkpoint), None for a fresh run."""

    model: nn.Module
    forward_module: nn.Module
    find_unused = False  # DDP: parameters that may get no gradient in a step
    restarter = None  # codebooks.DeadCodeRestarter of the codebook that trains, if the recipe asks
    steps_per_epoch: float | None = None  # set by the loop once the dataset size is known

    def __init__(self, recipe: Recipe, device: torch.device, log, saved_meta: dict | None = None):
        self.recipe, self.device, self.log = recipe, device, log

    # --- what a checkpoint exports (an ALIT model by default) ----------------------------------
    @property
    def image_size(self) -> int:
        return self.model.config.image_size

    def export_config(self):
        """(config for weights.save, image_size or None)."""
        return self.model.config, None

    def write_model(self, state: dict[str, torch.Tensor], folder: Path, source: str) -> None:
        """A checkpoint's model: `state` as model.safetensors + config.json in `folder`."""
        config, image_size = self.export_config()
        weights.save(state, config, folder, source=source, image_size=image_size)

    @staticmethod
    def read_model_meta(folder: Path) -> dict:
        """The config.json that `write_model` wrote (a resumed run's `saved_meta`)."""
        return weights.read_meta(folder)

    # --- what it trains on -------------------------------------------------------------------
    def training_data(self, plan: data_lib.BatchPlan) -> data_lib.TrainingData:
        """The batches of this process (images of the recipe's `data` by default)."""
        r = self.recipe
        options = data_lib.DataOptions(workers=r.workers, crop_scale=r.crop_scale, crop_ratio=r.crop_ratio,
                                       flip=r.hflip, dataset_size=r.dataset_size, cache=r.cache_images)
        return data_lib.training_data(r.data, self.image_size, plan, options)

    def preview_inputs(self) -> torch.Tensor | None:
        """A fixed batch for the previews every `image_every` steps (None: no previews)."""
        return data_lib.preview_images(self.recipe.data, self.image_size)

    # --- what trains -------------------------------------------------------------------------
    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """name -> optimizer; every one follows the lr schedule (scaled by `lr_scale`)."""
        r = self.recipe
        opt = adamw(self.model, r.peak_lr, r.betas, r.weight_decay, self.device, r.lr_multipliers)
        for prefix, factor in r.lr_multipliers.items():
            self.log(f"lr of {prefix}.*: {factor} x the schedule's (lr_multipliers)")
        return {"model": opt}

    def lr_scale(self, name: str) -> float:
        return 1.0

    def wrap(self) -> None:
        """Wrap the modules that run forward passes in DDP."""
        self.forward_module = dist.wrap(self.forward_module, self.device, find_unused=self.find_unused)

    def ddp_modules(self) -> list[nn.Module]:
        return [self.forward_module]

    def micro_step(self, images: torch.Tensor, step: int, micro: int, backward) -> dict[str, torch.Tensor]:
        """Forward, losses, `backward(loss)`; returns detached scalars, "loss" among them."""
        raise NotImplementedError

    # --- extra state (discriminators) and previews ---------------------------------------------
    def extra_state(self) -> dict:
        return {}

    def load_extra_state(self, state: dict) -> None:
        pass

    @torch.no_grad()
    def preview(self, images: torch.Tensor) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
        """(TensorBoard grids: each image, then its reconstruction at every length; numbers for the
        step's record: `latent_reliance`), from one rollout of the preview images."""
        training = self.model.training
        self.model.eval()
        try:
            roll = self.model.rollout(images, "off")
            scalars = latent_reliance(self.model, roll)
        finally:
            self.model.train(training)
        return {"reconstructions/by_length": previews_grid(images, roll.reconstructions)}, scalars
