"""Our checkpoint format, and loading a local checkpoint into a module (docs/design.md 2.3).

A checkpoint is a folder with `model.safetensors` and `config.json`. The same JSON is also stored in
the safetensors header (metadata key "alit"), so a lone `.safetensors` file loads too; beside a
`config.json`, the `config.json` is what counts.

This module knows files only: what a *name* means ("default", "paper/...", "hf:org/name") is
`alit.resolve`'s business, and `alit.load` / `AdaptiveTokenizer.from_pretrained` put the two
together. Its `load_module` is the one loader of a local checkpoint into a module; `alit.load` the
one loader of a name or path into a tokenizer. It imports nothing of alit above the model itself
(no convert, resolve or tokenizer), so every other module can import it.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from .base import build_base
from .config import BaseConfig, ModelConfig
from .errors import AlitError
from .files import atomic_write
from .model.alit import ALIT

FORMAT = "alit"
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
META_KEY = "alit"  # safetensors metadata entry holding the config.json text


# Random initialisers that, on meta tensors, run Python reference code importing torch._dynamo
# (seconds of start-up for every `alit convert` / `alit.load`); meta tensors hold no values, so
# they are skipped. Missing one here costs time, never correctness.
_INPLACE_RANDOM = (torch.Tensor.normal_, torch.Tensor.erfinv_, torch.Tensor.exponential_,
                   torch.nn.init.normal_, torch.nn.init.trunc_normal_)
_RANDOM_FACTORIES = {torch.randn: torch.empty, torch.randn_like: torch.empty_like}


class _SkipMetaRandom(torch.overrides.TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _INPLACE_RANDOM:
            tensor = args[0] if args else kwargs.get("tensor")
            if getattr(tensor, "is_meta", False):
                return tensor
        elif func in _RANDOM_FACTORIES:
            kwargs.pop("generator", None)
            return _RANDOM_FACTORIES[func](*args, **kwargs)  # on the meta device, as asked
        return func(*args, **kwargs)


def on_meta(build):
    """build() with every tensor on the meta device: a model's structure and shapes, no memory."""
    with torch.device("meta"), _SkipMetaRandom():
        return build()


def save(state: dict[str, torch.Tensor], config: ModelConfig | BaseConfig, dst: str | Path,
         source: str | None = None, image_size: int | None = None) -> Path:
    """Write weights + config into the folder dst, each file atomically (write, then rename).

    Contiguous CPU tensors are written straight from their memory (memory-mapped ones included),
    so saving holds no second copy of the weights.
    """
    dst = Path(dst)
    if dst.exists() and not dst.is_dir():
        raise AlitError(f"{dst}: exists and is not a folder; give a folder for --out")
    if isinstance(config, ModelConfig):
        meta = {"format": FORMAT, "type": "alit", "config": config.to_dict()}
    else:
        meta = {"format": FORMAT, "type": "base", "image_size": image_size or 256,
                "config": config.to_dict()}
    if source:
        meta["source"] = source
    text = json.dumps(meta, indent=1) + "\n"
    tensors = _writable(state)
    try:
        dst.mkdir(parents=True, exist_ok=True)
        atomic_write(dst / WEIGHTS_FILE, lambda tmp: save_file(tensors, str(tmp),
                                                          metadata={"format": "pt", META_KEY: text}))
        atomic_write(dst / CONFIG_FILE, lambda tmp: tmp.write_text(text))
    except OSError as e:
        raise AlitError(f"{dst}: cannot write the checkpoint ({e.strerror or e})") from None
    return dst


def _writable(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Tensors safetensors accepts: detached, contiguous, on the CPU, no two sharing memory."""
    out, seen = {}, set()
    for k, v in state.items():
        v = v.detach().cpu().contiguous()
        storage = v.untyped_storage().data_ptr() if v.numel() else None
        if storage is not None and storage in seen:
            v = v.clone()  # safetensors refuses tensors that share memory; rare, and small
        elif storage is not None:
            seen.add(storage)
        out[k] = v
    return out


def read_meta(folder: Path) -> dict:
    """The checked config.json of a checkpoint folder."""
    path = folder / CONFIG_FILE
    if not path.is_file():
        hint = ""
        if folder.is_dir() and any(p.suffix in (".pth", ".ckpt", ".pt") for p in folder.iterdir()):
            hint = "; to use the paper's .pth / .ckpt files, convert them with `alit convert SRC --out DIR`"
        raise AlitError(f"{folder}: not an alit checkpoint (no {CONFIG_FILE}){hint}")
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise AlitError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise AlitError(f"{path}: unreadable ({e})") from None
    return _checked_meta(meta, path)


def _checked_meta(meta, where) -> dict:
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or \
            meta.get("type") not in ("alit", "base") or not isinstance(meta.get("config"), dict):
        raise AlitError(f"{where}: not an alit config (expected \"format\": \"alit\", a \"type\" "
                        f"of \"alit\" or \"base\" and a \"config\" object)")
    return meta


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file (a folder means its model.safetensors)."""
    if path.is_dir():
        path = path / WEIGHTS_FILE
    if not path.is_file():
        raise AlitError(f"{path.parent}: missing {path.name}")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise AlitError(f"{path}: unreadable safetensors file, truncated or damaged ({e})") from None


def _embedded_meta(path: Path) -> dict | None:
    try:
        with safe_open(str(path), framework="pt") as f:
            text = (f.metadata() or {}).get(META_KEY)
    except (SafetensorError, OSError, ValueError) as e:
        raise AlitError(f"{path}: unreadable safetensors file, truncated or damaged ({e})") from None
    if text is None:
        return None
    try:
        return _checked_meta(json.loads(text), f"{path} (embedded config)")
    except json.JSONDecodeError:
        raise AlitError(f"{path}: its embedded config is not valid JSON") from None


# The bundled default model (`alit.load("default")`), made by the `default` recipes in configs/.
DEFAULT_MODEL = Path(__file__).parent / "assets" / "default"


def locate(path: str | Path) -> tuple[Path, dict]:
    """(weights file, checked config) of a local checkpoint folder, its config.json, or a
    .safetensors file. Names are not paths here: `alit.resolve.resolve` turns them into one."""
    path = Path(path)
    if not path.exists():
        raise AlitError(f"{path}: no such checkpoint")
    if path.is_dir():
        weights = path / WEIGHTS_FILE
        if not (path / CONFIG_FILE).is_file() and weights.is_file():
            meta = _embedded_meta(weights)
            if meta is not None:
                return weights, meta
        return weights, read_meta(path)
    if path.name == CONFIG_FILE:
        return path.parent / WEIGHTS_FILE, read_meta(path.parent)
    if path.suffix == ".safetensors":
        if path.name == WEIGHTS_FILE and (path.parent / CONFIG_FILE).is_file():
            return path, read_meta(path.parent)
        meta = _embedded_meta(path)
        if meta is None:
            raise AlitError(f"{path}: a safetensors file without an alit config (no {CONFIG_FILE} "
                            f"beside it, none in its header)")
        return path, meta
    raise AlitError(f"{path}: not an alit checkpoint (a folder with {CONFIG_FILE} and {WEIGHTS_FILE}); "
                    f"to use the paper's .pth / .ckpt files, convert them with `alit convert {path} --out DIR`")


def check_state(state: dict, expected: dict[str, torch.Size | tuple], show=None) -> None:
    """One-line AlitError naming what is missing, unexpected or mis-shaped.

    show: our key -> the name to print (the paper's, when converting); default the key itself.
    """
    show = show or (lambda key: key)
    missing = [show(k) for k in expected if k not in state]
    unexpected = [show(k) for k in state if k not in expected]
    shapes = [f"{show(k)} {list(state[k].shape)} (expected {list(expected[k])})"
              for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k])]
    problems = [f"{len(items)} {name}: {listing(items)}"
                for name, items in (("missing", missing), ("unexpected", unexpected),
                                    ("mis-shaped", shapes)) if items]
    if problems:
        raise AlitError("weights do not fit the model: " + "; ".join(problems))


def listing(items: list[str], n: int = 3) -> str:
    """The first n items, comma-separated, and how many more."""
    more = f" and {len(items) - n} more" if len(items) > n else ""
    return ", ".join(items[:n]) + more


def load_module(path: str | Path, expect: str | None = None, alit_class=None):
    """Load a local checkpoint (folder or file) as a module in eval mode: an ALIT model or a base
    tokenizer. No names, no downloads: `alit.load` resolves those first.

    alit_class: the class built for an ALIT checkpoint (a subclass of `alit.model.alit.ALIT`; the
    architecture itself when None). `alit.load` gives `AdaptiveTokenizer`, which adds the API.
    The module is built on the meta device and takes the file's tensors as they are (no second
    copy); every key, shape and dtype is checked first.
    """
    weights, meta = locate(path)
    if expect is not None and meta["type"] != expect:
        want = "an ALIT model" if expect == "alit" else "a base tokenizer"
        have = "a base tokenizer" if meta["type"] == "base" else "an ALIT model"
        raise AlitError(f"{path}: holds {have}, but {want} is needed here")
    try:
        if meta["type"] == "alit":
            config = ModelConfig.from_dict(meta["config"])
            module = on_meta(lambda: (alit_class or ALIT)(config))
        else:
            config = BaseConfig(**meta["config"])
            module = on_meta(lambda: build_base(config, meta.get("image_size", 256)))
    except (TypeError, ValueError) as e:
        raise AlitError(f"{path}: invalid config ({e})") from None
    state = read_weights(weights)
    expected = module.state_dict()
    check_state(state, {k: v.shape for k, v in expected.items()})
    wrong = [f"{k} is {v.dtype} (expected {expected[k].dtype})" for k, v in state.items()
             if v.dtype != expected[k].dtype]
    if wrong:
        raise AlitError(f"{weights}: {len(wrong)} tensor(s) of the wrong dtype: {', '.join(wrong[:3])}")
    module.load_state_dict(state, assign=True)
    left = [n for n, t in [*module.named_parameters(), *module.named_buffers()] if t.is_meta]
    if left:  # a non-persistent buffer would stay unmaterialised: build it on a real device instead
        raise RuntimeError(f"tensors not restored from {weights}: {left[:3]}")
    return module.eval()


@dataclass(frozen=True)
class Origin:
    """Where a loaded model came from: what `save_pretrained` records of it in a model card."""

    weights: Path          # its safetensors file (in a run folder, the recipe.yaml is found above it)
    source: str | None     # config.json's "source": what it was converted or trained from


def origin(path: str | Path) -> Origin:
    """The Origin of a local checkpoint (folder or file), as `load_module` reads it."""
    weights, meta = locate(path)
    return Origin(weights, meta.get("source"))
