"""A generator's files: a folder with model.safetensors and config.json, as a tokenizer's
(`alit.weights`), whose config.json says what it is and whose tokens it models:

    {"format": "alit-generator", "version": 1, "config": {GeneratorConfig},
     "tokenizer": {"fingerprint": ..., "checkpoint": where it was loaded from when the tokens were made},
     "source": how the weights were made, "data": the token folder they were trained on}

A training run folder that publishes its newest checkpoint's model.safetensors and config.json at
its root (as `alit train` does) reads as a generator folder. Files only: no names, no downloads.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from ..errors import AlitError
from ..files import atomic_write
from ..weights import CONFIG_FILE, WEIGHTS_FILE, read_weights
from .model import GeneratorConfig

FORMAT = "alit-generator"
VERSION = 1


def save_generator(state: dict[str, torch.Tensor], config: GeneratorConfig, dst: str | Path, *,
                   tokenizer_checkpoint: str | None = None, source: str | None = None,
                   data: str | None = None) -> Path:
    """Write weights + config.json into the folder dst, each file atomically."""
    dst = Path(dst)
    if dst.exists() and not dst.is_dir():
        raise AlitError(f"{dst}: exists and is not a folder")
    meta = {"format": FORMAT, "version": VERSION, "config": config.to_dict(),
            "tokenizer": {"fingerprint": config.tokenizer, "checkpoint": tokenizer_checkpoint},
            "source": source, "data": data}
    text = json.dumps(meta, indent=1) + "\n"
    tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    try:
        dst.mkdir(parents=True, exist_ok=True)
        atomic_write(dst / WEIGHTS_FILE, lambda tmp: save_file(tensors, str(tmp), metadata={"format": "pt"}))
        atomic_write(dst / CONFIG_FILE, lambda tmp: tmp.write_text(text))
    except OSError as e:
        raise AlitError(f"{dst}: cannot write the generator ({e.strerror or e})") from None
    return dst


def read_meta(path: str | Path) -> tuple[Path, dict]:
    """(folder, checked config.json) of a generator folder, its config.json or its model.safetensors."""
    folder = Path(path)
    if folder.is_file() and folder.name in (CONFIG_FILE, WEIGHTS_FILE):
        folder = folder.parent
    if not (folder / CONFIG_FILE).is_file():
        what = "no such folder" if not folder.exists() else f"no {CONFIG_FILE}"
        raise AlitError(f"{path}: not a generator ({what}); give the folder of a generator run")
    try:
        meta = json.loads((folder / CONFIG_FILE).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise AlitError(f"{folder / CONFIG_FILE}: unreadable ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        kind = "a tokenizer" if isinstance(meta, dict) and meta.get("format") == "alit" else "not a generator"
        raise AlitError(f"{path}: {kind}, not a generator (its config.json lacks \"format\": \"{FORMAT}\")")
    if meta.get("version") != VERSION:
        raise AlitError(f"{path}: generator format version {meta.get('version')!r}; this alit reads {VERSION}")
    return folder, meta


def read_generator(path: str | Path) -> tuple[GeneratorConfig, dict, dict[str, torch.Tensor]]:
    """(config, the config.json, the weights) of a generator (as `read_meta` finds it)."""
    folder, meta = read_meta(path)
    try:
        config = GeneratorConfig.from_dict(meta["config"])
    except (KeyError, TypeError, ValueError) as e:
        raise AlitError(f"{path}: invalid generator config ({e})") from None
    return config, meta, read_weights(folder / WEIGHTS_FILE)
