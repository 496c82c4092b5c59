"""Every training stage, by name: its recipe class, its stage class, what its run gives.

The recipe loader, `alit.train.run`, the loop and the command line read the stages from here and
nowhere else. A stage's name is its recipe class's `stage` (what its YAML files say). A new stage
is one entry in SPECS, with its recipe class (recipe.py), its stage class (a `stage.Stage`) and a
shipped `configs/<name>-tiny.yaml`.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import AlitError
from .autoencoder import AutoencoderStage
from .distill import DistillStage
from .finetune import FinetuneStage
from .generator import GeneratorStage
from .recipe import BaseRecipe, DistillRecipe, FinetuneRecipe, GeneratorRecipe, Recipe
from .stage import Stage


@dataclass(frozen=True)
class StageSpec:
    recipe: type[Recipe]   # what its YAML recipes are read into
    stage: type[Stage]     # what builds the model and computes a micro-step
    summary: str           # one line for `alit train --help`
    result: str            # how its newest model is used, "{run}" standing for the run folder

    @property
    def name(self) -> str:
        return self.recipe.stage

    def result_of(self, run_dir) -> str:
        return self.result.format(run=run_dir)


ALIT_MODEL = "alit.load('{run}')"

SPECS = (
    StageSpec(BaseRecipe, AutoencoderStage, "the 2D tokenizer (VQGAN / KL-VAE)",
              "`alit train distill --base {run}`"),
    StageSpec(DistillRecipe, DistillStage, "stage 1", ALIT_MODEL),
    StageSpec(FinetuneRecipe, FinetuneStage, "stage 2", ALIT_MODEL),
    StageSpec(GeneratorRecipe, GeneratorStage, "a generator of a token folder's ids (--data TOKENS_DIR)",
              "alit.load_generator('{run}')"),
)
STAGES: dict[str, StageSpec] = {spec.name: spec for spec in SPECS}  # base, distill, finetune, generator
STAGE_NAMES: tuple[str, ...] = tuple(STAGES)


def stage_spec(name: str) -> StageSpec:
    """The stage `name`, or an AlitError listing the stages."""
    if name not in STAGES:
        raise AlitError(f"unknown stage {name!r}; choose from {', '.join(STAGE_NAMES)}")
    return STAGES[name]
