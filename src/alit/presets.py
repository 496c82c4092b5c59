"""Named model configurations: the paper's released sizes and our small `tiny` for tests and CPU."""
from __future__ import annotations

from .config import BaseConfig, ModelConfig

# The bases the paper's checkpoints use (docs/design.md 1.1).
MAGE_VQGAN = BaseConfig(kind="vqgan", channels=128, channel_mult=(1, 1, 2, 2, 4), num_res_blocks=2,
                        latent_channels=256, codebook_size=1024)
KL16_VAE = BaseConfig(kind="vae", channels=128, channel_mult=(1, 1, 2, 2, 4), num_res_blocks=2,
                      latent_channels=16, attn_resolutions=(16,))
# Ours: a 64x64 input, 8x8 grid; small enough to train and test on a CPU.
TINY_VQGAN = BaseConfig(kind="vqgan", channels=32, channel_mult=(1, 1, 2, 2), num_res_blocks=1,
                        latent_channels=32, codebook_size=256)
TINY_VAE = BaseConfig(kind="vae", channels=32, channel_mult=(1, 1, 2, 2), num_res_blocks=1,
                      latent_channels=8)


def _paper(width: int, depth: int, heads: int) -> dict:
    return dict(image_size=256, patch_size=16, encoder_width=width, encoder_depth=depth,
                encoder_heads=heads, decoder_width=width, decoder_depth=depth, decoder_heads=heads,
                tokens_per_iter=32, num_iters=8, latent_dim=12, codebook_size=4096)


_SIZES = {
    "small": _paper(1024, 8, 8),
    "base": _paper(768, 12, 12),
    "semilarge": _paper(1024, 16, 16),
    "tiny": dict(image_size=64, patch_size=8, encoder_width=128, encoder_depth=2, encoder_heads=4,
                 decoder_width=128, decoder_depth=2, decoder_heads=4, tokens_per_iter=8,
                 num_iters=8, latent_dim=12, codebook_size=1024, max_latent_positions=64),
}
_BASES = {"vqgan": (MAGE_VQGAN, TINY_VQGAN), "vae": (KL16_VAE, TINY_VAE)}

PRESETS = tuple(_SIZES)


def preset(name: str, base: str = "vqgan", quantize: bool = True, **overrides) -> ModelConfig:
    """The config of a named size. `base` is "vqgan" or "vae"; the VAE halts by code error 0.025.

    Names may also carry the variant, as the paper's checkpoints do: "small-vae-continuous".
    """
    parts = name.replace("_", "-").split("-")
    size = parts[0]
    if size not in _SIZES:
        raise ValueError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}")
    for part in parts[1:]:
        if part in _BASES:
            base = part
        elif part in ("quantized", "quantised", "continuous"):
            quantize = part != "continuous"
        else:
            raise ValueError(f"unknown preset variant {part!r} in {name!r} (use vqgan|vae, "
                             f"quantized|continuous)")
    if base not in _BASES:
        raise ValueError(f"base must be 'vqgan' or 'vae', got {base!r}")
    base_cfg = _BASES[base][size == "tiny"]
    fields = dict(_SIZES[size], base=base_cfg, quantize=quantize,
                  halting_threshold=0.55 if base == "vqgan" else 0.025)
    fields.update(overrides)
    return ModelConfig(**fields)


def heads_for(width: int, depth: int) -> int | None:
    """The head count of the paper's preset with this width and depth, if there is one."""
    for size in ("small", "base", "semilarge"):
        s = _SIZES[size]
        if (s["encoder_width"], s["encoder_depth"]) == (width, depth):
            return s["encoder_heads"]
    return None
