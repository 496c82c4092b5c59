"""Our checkpoint format: a folder with `model.safetensors` and `config.json` (DESIGN 2.3)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .config import BaseConfig, ModelConfig
from .errors import AlitError

FORMAT = "alit"
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


def save(state: dict[str, torch.Tensor], config: ModelConfig | BaseConfig, dst: str | Path,
         source: str | None = None, image_size: int | None = None) -> Path:
    """Write weights + config atomically-per-file into the folder dst."""
    dst = Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    if isinstance(config, ModelConfig):
        meta = {"format": FORMAT, "type": "alit", "config": config.to_dict()}
    else:
        meta = {"format": FORMAT, "type": "base", "image_size": image_size or 256,
                "config": config.to_dict()}
    if source:
        meta["source"] = source
    tensors = {k: v.detach().contiguous().cpu() for k, v in state.items()}
    tmp = dst / (WEIGHTS_FILE + ".tmp")
    save_file(tensors, str(tmp), metadata={"format": "pt"})
    os.replace(tmp, dst / WEIGHTS_FILE)
    tmp = dst / (CONFIG_FILE + ".tmp")
    tmp.write_text(json.dumps(meta, indent=1) + "\n")
    os.replace(tmp, dst / CONFIG_FILE)
    return dst


def read_meta(folder: Path) -> dict:
    path = folder / CONFIG_FILE
    if not path.is_file():
        raise AlitError(f"{folder}: not an alit checkpoint (no {CONFIG_FILE}); convert a paper "
                        f"checkpoint with `alit convert SRC --out DIR`")
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise AlitError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
    if meta.get("format") != FORMAT or meta.get("type") not in ("alit", "base"):
        raise AlitError(f"{path}: not an alit config.json (expected \"format\": \"alit\")")
    return meta


def read_weights(folder: Path) -> dict[str, torch.Tensor]:
    path = folder / WEIGHTS_FILE
    if not path.is_file():
        raise AlitError(f"{folder}: missing {WEIGHTS_FILE}")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as e:
        raise AlitError(f"{path}: unreadable safetensors file ({e})") from None


def load_module(path: str | Path, expect: str | None = None):
    """Load our checkpoint folder as a module in eval mode: an ALIT model or a base tokenizer."""
    from .base import build_base
    from .convert import check_state
    from .tokenizer import AdaptiveTokenizer

    folder = Path(path)
    if folder.is_file():
        folder = folder.parent
    if not folder.exists():
        raise AlitError(f"{path}: no such checkpoint")
    meta = read_meta(folder)
    if expect is not None and meta["type"] != expect:
        want = "an ALIT model" if expect == "alit" else "a base tokenizer"
        raise AlitError(f"{folder}: holds {'a base tokenizer' if meta['type'] == 'base' else 'an ALIT model'}, "
                        f"but {want} is needed here")
    try:
        if meta["type"] == "alit":
            config = ModelConfig.from_dict(meta["config"])
            with torch.device("meta"):
                module = AdaptiveTokenizer(config)
        else:
            config = BaseConfig(**meta["config"])
            with torch.device("meta"):
                module = build_base(config, meta.get("image_size", 256))
    except (TypeError, ValueError) as e:
        raise AlitError(f"{folder / CONFIG_FILE}: invalid config ({e})") from None
    state = read_weights(folder)
    check_state(state, {k: v.shape for k, v in module.state_dict().items()})
    module.load_state_dict(state, assign=True)
    return module.eval()
