"""Run recipes: one dataclass per training stage (`recipe_loader.py` reads them from YAML).

A recipe is everything about a run except the architecture's weights: which preset, what data,
how long, which losses with which weights. Durations (`max_steps`, `warmup`, GAN schedule starts)
are a step count or a string `"<epochs>ep"` converted with the dataset's size once it is known.
"""
from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field

import yaml

from ..config import HALTING_MODES
from ..errors import AlitError
from ..generator.model import PRESETS as GENERATOR_PRESETS
from ..losses.distill import DISTILL_WEIGHTS

PRECISIONS = ("auto", "fp32", "tf32", "bf16", "fp16")
PERCEPTUAL = ("lpips", "hed", "none")
Duration = typing.Union[int, str]  # steps, or "<float>ep"


@dataclass
class GanRecipe:
    """PatchGAN hinge loss with the adaptive weight (taming / the paper's stage 2)."""

    # [start, weight] pairs: after `start` steps, the adversarial term is scaled by `weight` (times the
    # adaptive weight). Before the first start nothing adversarial runs, not even the discriminator.
    schedule: list[tuple[Duration, float]] = field(default_factory=list)
    channels: int = 64                  # discriminator width of the first layer
    layers: int = 3                     # strided conv layers after the first
    max_adaptive_weight: float = 1e4    # clamp of |grad rec| / |grad gan| at the last decoder layer
    lr: float | None = None             # discriminator lr; None: the generator's peak lr
    betas: tuple[float, float] = (0.5, 0.9)  # taming's discriminator Adam betas
    weight_decay: float = 0.0


@dataclass
class Recipe:
    """What every stage shares."""

    stage: str = ""                     # the stage's name: each recipe class sets its own (stages.py)
    model: str = "tiny"                 # preset name, e.g. "small-vqgan-quantized" (alit.preset)
    model_overrides: dict = field(default_factory=dict)  # ModelConfig fields on top of the preset
    # data
    data: str | None = None             # image folder or WebDataset shards ("dir/{0000..0099}.tar")
    dataset_size: int | None = None     # images per epoch for shards ("<n>ep" durations need it)
    crop_scale: tuple[float, float] = (0.8, 1.0)  # RandomResizedCrop area range
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)  # its aspect-ratio range ([1, 1]: square crops)
    hflip: bool = True
    workers: int = 4                    # DataLoader worker processes per training process
    cache_images: bool = False          # ours: workers keep decoded images in memory (small folders)
    # batch and schedule
    batch_size: int = 256               # images per optimizer step, all processes together
    micro_batch_size: int | None = None  # images per forward per process (None: batch / processes)
    max_steps: Duration = 1000          # total optimizer steps of the run (also after --resume)
    # ours: a wall-clock budget in seconds for this process (None: none). The run stops with a
    # checkpoint once it is spent, and the lr schedule is fitted to the steps that fit in it
    # (measured after the first steps), so a fixed time gives a complete schedule.
    max_time: float | None = None
    warmup: Duration = 0                # linear lr warm-up, then cosine decay to min_lr
    lr: float | None = None             # peak lr; None: base_lr * batch_size / 256
    base_lr: float = 1.5e-4
    min_lr: float = 0.0
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = 0.05          # AdamW; none on biases, norms and embeddings
    grad_clip: float | None = 3.0       # max global gradient norm (None: no clipping)
    # ours: parameter-name prefix -> factor on its lr, e.g. {encoder.feedback: 10} for a part added
    # at zero to a trained model ({}: one lr for all, the paper's)
    lr_multipliers: dict = field(default_factory=dict)
    ema: float = 0.9999                 # EMA decay of the weights (0: no EMA)
    ema_warmup: bool = True             # decay min(ema, (1 + n) / (10 + n)) after n updates
    precision: str = "auto"             # auto (bf16 on a GPU that has it, else fp32) | fp32 | tf32 | bf16 | fp16
    seed: int = 0
    # bookkeeping
    checkpoint_every: int = 1000        # steps between checkpoints (one is always written at the end)
    keep_checkpoints: int = 3           # newest checkpoints kept in the run folder
    image_every: int = 1000             # steps between TensorBoard reconstruction grids (0: never)
    max_nonfinite: int = 5              # this many non-finite losses in a row stop the run
    # ours, not the paper's: every N steps, move the codes no input chose in those N steps onto
    # the inputs their codebook serves worst (0: never). Small data collapses a codebook without it.
    restart_dead_codes: int = 0

    def __post_init__(self):
        _choice("precision", self.precision, PRECISIONS)
        for name in ("batch_size", "checkpoint_every", "keep_checkpoints", "max_nonfinite", "workers", "seed",
                     "restart_dead_codes"):
            low = 0 if name in ("workers", "seed", "restart_dead_codes") else 1
            if getattr(self, name) < low:
                raise AlitError(f"recipe: {name} must be >= {low}, got {getattr(self, name)}")
        if self.micro_batch_size is not None and self.micro_batch_size < 1:
            raise AlitError(f"recipe: micro_batch_size must be >= 1, got {self.micro_batch_size}")
        if not 0 <= self.ema < 1:
            raise AlitError(f"recipe: ema must be in [0, 1), got {self.ema}")
        lo, hi = self.crop_scale
        if not 0 < lo <= hi <= 1:
            raise AlitError(f"recipe: crop_scale must satisfy 0 < lo <= hi <= 1, got {list(self.crop_scale)}")
        lo, hi = self.crop_ratio
        if not 0 < lo <= hi:
            raise AlitError(f"recipe: crop_ratio must satisfy 0 < lo <= hi (width / height), "
                            f"got {list(self.crop_ratio)}")
        parse_duration(self.max_steps, None, "max_steps", check_only=True)
        if self.max_time is not None and self.max_time <= 0:
            raise AlitError(f"recipe: max_time must be a positive number of seconds, got {self.max_time}")
        parse_duration(self.warmup, None, "warmup", check_only=True)
        for prefix, factor in self.lr_multipliers.items():
            if not isinstance(factor, (int, float)) or isinstance(factor, bool) or not factor > 0:
                raise AlitError(f"recipe: lr_multipliers.{prefix} must be a positive number, got {factor!r}")

    @property
    def peak_lr(self) -> float:
        return self.lr if self.lr is not None else self.base_lr * self.batch_size / 256

    def to_dict(self) -> dict:
        return _plain(dataclasses.asdict(self))


@dataclass
class PixelLosses:
    """The pixel-space loss section of the stages that decode to pixels (`base`, `finetune`):
    L1 + perceptual (+ SSIM) + the scheduled GAN (`pixels.PixelObjective`)."""

    perceptual: str = "lpips"           # lpips | hed (offline VGG16 substitute) | none
    perceptual_weight: float = 1.0
    perceptual_path: str | None = None  # torchvision vgg16 weights (default: the torch hub cache)
    pixel_weight: float = 1.0           # L1
    # ours: weight of 1 - SSIM of the reconstruction (torchmetrics' SSIM, the `ssim:S` rule's); 0: off,
    # the paper's loss. A model whose length rule judges SSIM then trains what the rule judges.
    ssim_weight: float = 0.0
    gan: GanRecipe = field(default_factory=GanRecipe)

    def __post_init__(self):
        super().__post_init__()  # the Recipe's checks (a recipe class lists PixelLosses before Recipe)
        _choice("perceptual", self.perceptual, PERCEPTUAL)
        _check_schedule(self.gan)
        _non_negative("ssim_weight", self.ssim_weight)


@dataclass
class BaseRecipe(PixelLosses, Recipe):
    """Train the 2D base tokenizer itself: VQGAN (L1 + perceptual + VQ losses, then GAN) or KL-VAE."""

    stage: str = "base"
    codebook_weight: float = 1.0        # VQGAN: codebook + commitment losses
    commitment: float = 0.25            # VQGAN: commitment factor
    kl_weight: float = 1e-6             # VAE: KL per pixel value (LDM's 1e-6 with a summed pixel loss)


@dataclass
class DistillRecipe(Recipe):
    """Stage 1 (docs/design.md 1.3): the base is frozen; CE + code MSE per iteration (latent MSE for a VAE)."""

    stage: str = "distill"
    base: str | None = None             # base checkpoint folder / base run / ALIT checkpoint (its base);
                                        # "random" only for smoke tests
    init: str | None = None             # ours: continue from an ALIT run / checkpoint (its EMA weights,
                                        # base included) instead of fresh weights on `base`
    halting: str = "off"                # halting during training: off | threshold | paper
    activation_checkpointing: bool = False  # recompute transformer blocks in backward (less memory)
    # ours: for this many first steps the decoder reads the latent quantiser's normalised inputs
    # instead of its codes (no quantiser loss); then every code is restarted onto those inputs.
    # Needs restart_dead_codes, dividing it. The codes' pull on the inputs otherwise collapses a
    # short run's latents onto one code before the decoder has learnt to read them.
    quantizer_warmup: int = 0
    iteration_weights: list[float] = field(default_factory=lambda: list(DISTILL_WEIGHTS))

    def __post_init__(self):
        super().__post_init__()
        _choice("halting", self.halting, HALTING_MODES)
        if not self.iteration_weights:
            raise AlitError("recipe: iteration_weights must not be empty")


@dataclass
class FinetuneRecipe(PixelLosses, Recipe):
    """Stage 2 (docs/design.md 1.3): everything trains, one rollout iteration per step (cycling t = 0..T-1,
    or `iteration_cycle`)."""

    stage: str = "finetune"
    init: str | None = None             # distill run / checkpoint (its EMA weights); "random" for smoke tests
    halting: str = "off"
    activation_checkpointing: bool = False  # recompute transformer blocks in backward (less memory)
    discriminator: str = "per_iteration"  # per_iteration (the paper: one per rollout iteration) | shared
    # ours: the rollout iterations trained in turn, step s training iteration_cycle[(s - 1) % len];
    # None: 0, 1, ..., T-1 (the paper's one iteration in T). Listing an iteration twice trains it twice
    # as often, e.g. [0, 1, 2, 3, 4, 5, 6, 7, 4, 5, 6, 7] for the longer half of the lengths.
    iteration_cycle: list[int] | None = None
    # ours: truncated backpropagation through the rollout. Iterations 0..t-1 run without a graph and
    # the loss of iteration t reaches the weights through iteration t alone (and the seed it adds),
    # so the late lengths' gradients cannot reshape the early passes. False: the paper's full graph.
    truncate_rollout: bool = False

    def __post_init__(self):
        super().__post_init__()
        _choice("halting", self.halting, HALTING_MODES)
        _choice("discriminator", self.discriminator, ("per_iteration", "shared"))
        cycle = self.iteration_cycle  # a list of integers or null: `check` saw to the types
        if cycle is not None and (not cycle or min(cycle) < 0):
            raise AlitError(f"recipe: iteration_cycle must be a non-empty list of iteration numbers "
                            f"(0 = the first), or null for 0..T-1; got {cycle!r}")



@dataclass
class GeneratorRecipe(Recipe):
    """A length-aware autoregressive generator of a tokenizer's ids (alit/generator/), trained on the
    token folder `data` that `alit tokenize` wrote. `model` is a generator preset (tiny, small,
    base); `model_overrides` any other GeneratorConfig field (n_layer, n_head, n_embd, dropout).
    The image keys (crops, workers, image_every) do not apply."""

    stage: str = "generator"
    classes: bool = False               # condition on the first folder of each key (ImageFolder layout)
    class_dropout: float = 0.1          # share of sequences trained without their class (guidance)
    batch_size: int = 64                # sequences per optimizer step
    max_steps: Duration = 2000
    warmup: Duration = 100
    lr: float | None = 1.0e-3
    min_lr: float = 1.0e-4
    weight_decay: float = 0.1
    grad_clip: float | None = 1.0
    ema: float = 0.999
    workers: int = 0
    checkpoint_every: int = 500
    image_every: int = 0

    def __post_init__(self):
        super().__post_init__()
        _choice("model", self.model, tuple(GENERATOR_PRESETS))
        if not 0 <= self.class_dropout < 1:
            raise AlitError(f"recipe: class_dropout must be in [0, 1), got {self.class_dropout}")

# --- durations -----------------------------------------------------------------------------------
def parse_duration(value: Duration, steps_per_epoch: float | None, name: str = "duration",
                   check_only: bool = False) -> int:
    """A step count, or "<epochs>ep" -> steps (rounded) given the steps per epoch."""
    if isinstance(value, bool):
        raise AlitError(f"recipe: {name} must be a step count or '<n>ep', got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise AlitError(f"recipe: {name} must be >= 0, got {value}")
        return value
    text = str(value).strip()
    if not text.endswith("ep"):
        raise AlitError(f"recipe: {name} must be a step count or '<n>ep' (epochs), got {value!r}")
    try:
        epochs = float(text[:-2])
    except ValueError:
        raise AlitError(f"recipe: {name} must be a step count or '<n>ep' (epochs), got {value!r}") from None
    if epochs < 0:
        raise AlitError(f"recipe: {name} must be >= 0, got {value!r}")
    if check_only:
        return 0
    if steps_per_epoch is None:
        raise AlitError(f"recipe: {name}={value!r} is in epochs, but the dataset size is unknown "
                        f"(WebDataset shards): set dataset_size, or give {name} in steps")
    return round(epochs * steps_per_epoch)


def dump(recipe: Recipe) -> str:
    return yaml.safe_dump(recipe.to_dict(), sort_keys=False)


def _non_negative(name: str, value: float) -> None:
    if not value >= 0:
        raise AlitError(f"recipe: {name} must be 0 or more, got {value}")


def _choice(name: str, value, choices) -> None:
    if value not in choices:
        raise AlitError(f"recipe: {name} must be one of {', '.join(choices)}, got {value!r}")


def _check_schedule(gan: GanRecipe) -> None:
    for start, weight in gan.schedule:
        parse_duration(start, None, "gan.schedule start", check_only=True)
        if weight < 0:
            raise AlitError(f"recipe: gan.schedule weights must be >= 0, got {weight}")


def _plain(x):
    if isinstance(x, tuple):
        return [_plain(v) for v in x]
    if isinstance(x, list):
        return [_plain(v) for v in x]
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    return x
