"""Where a stage's starting weights come from: a base tokenizer for `distill`, the distilled
model for `finetune`. Each may be a model folder, a checkpoint folder or a whole run folder
(its newest checkpoint's EMA weights)."""
from __future__ import annotations

from torch import nn

from ..errors import AlitError
from ..weights import load_module
from .checkpoint import model_dir


def load_base(path: str, image_size: int) -> tuple[nn.Module, str]:
    """(base tokenizer module, description): from a base checkpoint, or an ALIT checkpoint's base."""
    folder = model_dir(path)
    module = load_module(folder)
    if hasattr(module, "base") and hasattr(module, "config"):  # an ALIT model: take its base
        if module.config.image_size != image_size:
            raise AlitError(f"{path}: a {module.config.image_size}px model; this recipe trains at {image_size}px")
        return module.base, f"the base of the ALIT model {folder}"
    if getattr(module, "image_size", image_size) != image_size:
        raise AlitError(f"{path}: a base tokenizer built for {module.image_size}px images; this recipe trains "
                        f"at {image_size}px (train the base at that size, or set model_overrides.image_size)")
    return module, str(folder)


def load_init(path: str) -> tuple[nn.Module, str]:
    """(ALIT model, description) to fine-tune: the EMA weights of a distill run or checkpoint."""
    folder = model_dir(path)
    return load_module(folder, expect="alit"), str(folder)
