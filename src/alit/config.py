"""Frozen configuration dataclasses: one for the base 2D tokenizer, one for the whole model.

A config is the complete description of an architecture: `config.json` beside every checkpoint is
`ModelConfig.to_dict()`, and `ModelConfig.from_dict` reads it back (unknown keys are an error).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

BASE_KINDS = ("vqgan", "vae")
HALTING_MODES = ("off", "threshold", "paper")


@dataclass(frozen=True)
class BaseConfig:
    """The frozen 2D tokenizer: a MAGE-style VQGAN or an LDM KL-VAE (docs/design.md 1.1)."""

    kind: str = "vqgan"                      # "vqgan" or "vae"
    channels: int = 128                      # width of the first conv level (`ch`)
    channel_mult: tuple[int, ...] = (1, 1, 2, 2, 4)  # per level; len - 1 downsamplings
    num_res_blocks: int = 2                  # residual blocks per encoder level
    latent_channels: int = 256               # VQGAN z_channels (= code size); VAE embed_dim
    codebook_size: int = 1024                # VQGAN only: number of base codes
    attn_resolutions: tuple[int, ...] = ()   # VAE encoder only: resolutions with self-attention
    decoder_channels: int | None = None      # VAE only: decoder `ch` when it differs (None = same)
    decoder_num_res_blocks: int | None = None  # VAE only: decoder blocks per level (+1) (None = same)
    scale_factor: float = 0.2325             # VAE only: latents are posterior * scale_factor
    sample_posterior: bool = False           # VAE only: sample instead of the posterior mean

    def __post_init__(self):
        object.__setattr__(self, "channel_mult", tuple(self.channel_mult))
        object.__setattr__(self, "attn_resolutions", tuple(self.attn_resolutions))
        if self.kind not in BASE_KINDS:
            raise ValueError(f"base kind must be one of {BASE_KINDS}, got {self.kind!r}")
        if len(self.channel_mult) < 1:
            raise ValueError("channel_mult needs at least one level")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["channel_mult"], d["attn_resolutions"] = list(self.channel_mult), list(self.attn_resolutions)
        return d

    @property
    def downsample(self) -> int:
        """Spatial downsampling factor f of the encoder."""
        return 2 ** (len(self.channel_mult) - 1)


@dataclass(frozen=True)
class ModelConfig:
    """The adaptive-length tokenizer: recurrent encoder, latent bottleneck, decoder, base (docs/design.md 1.2)."""

    image_size: int = 256            # input side in pixels (square)
    patch_size: int = 16             # patch-embedding stride; must equal the base downsampling
    encoder_width: int = 1024
    encoder_depth: int = 8
    encoder_heads: int = 8
    decoder_width: int = 1024
    decoder_depth: int = 8
    decoder_heads: int = 8
    tokens_per_iter: int = 32        # L0: latent tokens added per rollout iteration
    num_iters: int = 8               # T: rollout iterations (max length = L0 * T)
    latent_dim: int = 12             # d: factorised latent width
    factorize: bool = True           # project latents width -> d (always on when quantised)
    quantize: bool = True            # vector-quantise the latents (ids are our tokens)
    codebook_size: int = 4096        # K: latent codebook entries
    commitment: float = 0.25         # quantiser commitment weight
    max_latent_positions: int = 256  # rows of the decoder's latent position table
    halting: str = "off"             # default halting mode: "off", "threshold" or "paper"
    halting_threshold: float = 0.55  # VQGAN: p(gt id) >= t halts; VAE: mean |code err| < t halts
    # the length rule that commands use when given none (NAME:VALUE, see alit.criteria); the paper's
    # L1 threshold suits its 256 px models, a small model may ship a threshold calibrated for it
    criterion: str = "l1:0.07"
    # ours, off in the paper's models: standardise the factorised latents over the batch (running
    # statistics at inference) so that what every image shares cannot drown what differs (model/latent_norm.py)
    latent_norm: bool = False
    # ours, off in the paper's models: after every iteration but the last, the latent decoder's code
    # error (its prediction minus the base's code) is added to the encoder's image tokens through a
    # learned projection that starts at zero, so the next latents can encode what is still missing
    # (model/encoder.py, `RecurrentEncoder.feed`); encoding then runs the latent decoder every iteration
    error_feedback: bool = False
    unscale_vae_code: bool = True    # VAE: divide the predicted code by scale_factor before
                                     # decoding (the paper's code does not: False for its weights)
    base: BaseConfig = field(default_factory=BaseConfig)

    def __post_init__(self):
        if isinstance(self.base, dict):
            object.__setattr__(self, "base", BaseConfig(**checked_fields(BaseConfig, self.base)))
        if self.halting not in HALTING_MODES:
            raise ValueError(f"halting must be one of {HALTING_MODES}, got {self.halting!r}")
        if self.quantize and not self.factorize:
            raise ValueError("a quantised model must factorise its latents (factorize=True)")
        if self.patch_size != self.base.downsample:
            raise ValueError(f"patch_size {self.patch_size} must equal the base downsampling "
                             f"{self.base.downsample} (len(channel_mult) - 1 halvings)")
        if self.image_size % self.patch_size:
            raise ValueError(f"image_size {self.image_size} is not a multiple of patch_size {self.patch_size}")
        for name in ("encoder", "decoder"):
            width, heads = getattr(self, f"{name}_width"), getattr(self, f"{name}_heads")
            if width % heads:
                raise ValueError(f"{name}_width {width} is not divisible by {name}_heads {heads}")
        if self.encoder_width <= self.base.latent_channels:
            raise ValueError(f"encoder_width {self.encoder_width} must exceed the base latent "
                             f"channels {self.base.latent_channels} (they share the image tokens)")
        if self.max_tokens > self.max_latent_positions:
            raise ValueError(f"{self.max_tokens} tokens exceed max_latent_positions {self.max_latent_positions}")
        if not self.factorize and self.decoder_width != self.encoder_width:
            raise ValueError("unfactorised latents need decoder_width == encoder_width "
                             f"(got {self.decoder_width} and {self.encoder_width})")
        if not self.factorize and self.latent_dim != self.encoder_width:
            object.__setattr__(self, "latent_dim", self.encoder_width)

    @property
    def grid_size(self) -> int:
        """G: side of the base token grid."""
        return self.image_size // self.patch_size

    @property
    def num_image_tokens(self) -> int:
        """N = G * G."""
        return self.grid_size ** 2

    @property
    def max_tokens(self) -> int:
        return self.tokens_per_iter * self.num_iters

    @property
    def lengths(self) -> list[int]:
        """Token counts available, one per iteration: [L0, 2 L0, ..., T L0]."""
        return [self.tokens_per_iter * (i + 1) for i in range(self.num_iters)]

    def replace(self, **changes) -> "ModelConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["base"] = self.base.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        d = dict(checked_fields(cls, d))
        d["base"] = BaseConfig(**checked_fields(BaseConfig, d.get("base", {})))
        return cls(**d)


def checked_fields(cls, d: dict) -> dict:
    """d itself, or a ValueError naming the fields the dataclass `cls` does not have."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} field(s) {unknown}; known: {sorted(known)}")
    return d
