"""The user-facing tokenizer: the ALIT model plus building and loading by name."""
from __future__ import annotations

from pathlib import Path

from .config import ModelConfig
from .model.alit import ALIT
from .presets import preset


class AdaptiveTokenizer(ALIT):
    """An ALIT model with the public API of DESIGN 2.1 (`rollout`; `encode` / `decode`)."""


def build(preset_or_config: str | ModelConfig = "tiny", **overrides) -> AdaptiveTokenizer:
    """A tokenizer with random weights, from a preset name or a ModelConfig (eval mode)."""
    if isinstance(preset_or_config, ModelConfig):
        config = preset_or_config.replace(**overrides) if overrides else preset_or_config
    else:
        config = preset(preset_or_config, **overrides)
    return AdaptiveTokenizer(config).eval()


def load(path_or_name: str | Path) -> AdaptiveTokenizer:
    """A tokenizer from a checkpoint folder or file (ours; `alit convert` makes one), eval mode."""
    from .weights import load_module

    return load_module(path_or_name, expect="alit")
