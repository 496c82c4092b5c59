"""Downstream task models from files: a saved linear probe, a TorchScript program, or a safetensors
state dict with a builder. They are what `alit.TaskAgrees` asks about a reconstruction.

A probe saved by `alit probe --save PATH` is a safetensors file (metadata `format: alit-probe`) with
the linear head of one length (`weight` [classes, features], `bias` [classes], float64, taking raw
pooled latents: the standardisation is folded in) and what it needs to be used again: how latents
were pooled, the length it was trained on, the class names and the fingerprint of the tokenizer
whose latents it reads. Loaded, it is a `LatentProbe`: latents [B, L, d] in, logits out.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from .errors import AlitError

PROBE_FORMAT = "alit-probe"
PROBE_VERSION = "1"


class LatentProbe(nn.Module):
    """A linear classifier on a tokenizer's latents [B, L, d], pooled as `alit probe` pools them:
    `mean` over tokens (any length) or `concat` (the trained length only)."""

    takes = "latents"  # what `TaskAgrees` feeds it: the bottleneck latents, not pixels

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, pool: str, length: int,
                 classes: list[str], model: str | None = None):
        super().__init__()
        if pool not in ("mean", "concat"):
            raise ValueError(f"a probe pools by mean or concat, got {pool!r}")
        self.linear = nn.Linear(weight.shape[1], weight.shape[0], dtype=weight.dtype)
        with torch.no_grad():
            self.linear.weight.copy_(weight)
            self.linear.bias.copy_(bias)
        self.pool, self.length, self.classes, self.model = pool, int(length), list(classes), model
        self.requires_grad_(False)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        """latents [B, L, d] -> logits [B, classes] (in the head's dtype, float64 as `alit probe` fits it)."""
        if self.pool == "concat" and latents.shape[1] != self.length:
            raise ValueError(f"this probe concatenates the latents of {self.length} tokens; it cannot read "
                             f"{latents.shape[1]} (save a --pool mean probe to judge every length)")
        features = latents.mean(1) if self.pool == "mean" else latents.flatten(1)  # [B, F]
        return self.linear(features.to(self.linear.weight.dtype))

    def __repr__(self) -> str:
        return (f"LatentProbe({len(self.classes)} classes, pool={self.pool}, trained at {self.length} tokens, "
                f"{self.linear.in_features} features)")


def save_probe(layer: nn.Linear, path: str | Path, *, pool: str, length: int, classes: list[str],
               model: str, latent_dim: int) -> Path:
    """Write a probe's head (a Linear on raw pooled features, as `eval.probe.fit_linear` returns it)."""
    from safetensors.torch import save_file

    path = Path(path)
    if path.is_dir():
        raise AlitError(f"--save {path}: is a folder; give the file to write (e.g. probe.safetensors)")
    if not path.parent.is_dir():
        raise AlitError(f"--save {path}: no such folder {path.parent}")
    meta = {"format": PROBE_FORMAT, "version": PROBE_VERSION, "pool": pool, "length": str(length),
            "classes": json.dumps(list(classes)), "model": model, "latent_dim": str(latent_dim)}
    tensors = {"weight": layer.weight.detach().contiguous().cpu(), "bias": layer.bias.detach().contiguous().cpu()}
    save_file(tensors, str(path), metadata=meta)
    return path


def load_probe(path: str | Path) -> LatentProbe:
    """A `LatentProbe` from a file written by `save_probe`; AlitError when it is not one."""
    return _probe(path, *_read_safetensors(path))


def _probe(path, tensors: dict[str, torch.Tensor], meta: dict[str, str]) -> LatentProbe:
    """The probe of a safetensors file already read."""
    if meta.get("format") != PROBE_FORMAT:
        raise AlitError(f"{path}: not a probe saved by `alit probe --save`")
    try:
        weight, bias = tensors["weight"], tensors["bias"]
        if weight.ndim != 2 or bias.shape != (weight.shape[0],):
            raise ValueError(f"weight {list(weight.shape)} and bias {list(bias.shape)} do not make a linear head")
        return LatentProbe(weight, bias, meta["pool"], int(meta["length"]), json.loads(meta["classes"]),
                           meta.get("model"))
    except (KeyError, ValueError) as e:
        raise AlitError(f"{path}: malformed probe ({e})") from None


def load_task_model(path: str | Path, builder: Callable[[], nn.Module] | None = None) -> nn.Module:
    """A task model from a file, in eval mode on the CPU:
    - a probe saved by `alit probe --save` (a `LatentProbe`, which reads latents);
    - a safetensors state dict, loaded into `builder()` (strictly: every key must match);
    - a TorchScript file (`torch.jit.save`) or an exported program (`torch.export.save`, with a
      dynamic batch dimension), which takes images [B, 3, H, W] in [0, 1] and does its own
      preprocessing. Both hold a program: load only files you trust.
    """
    path = Path(path)
    if not path.is_file():
        raise AlitError(f"{path}: no such task model file")
    if _is_safetensors(path):
        tensors, meta = _read_safetensors(path)
        if meta.get("format") == PROBE_FORMAT:
            return _probe(path, tensors, meta).eval()
        if builder is None:
            raise AlitError(f"{path}: a safetensors state dict needs the module to load it into "
                            f"(load_task_model(path, builder=...)); on the command line use a TorchScript file "
                            f"or a probe saved by `alit probe --save`")
        module = builder()
        try:
            module.load_state_dict(tensors)
        except RuntimeError as e:
            raise AlitError(f"{path}: does not fit the built module ({str(e).splitlines()[0]})") from None
        return module.eval()
    try:
        return torch.jit.load(str(path), map_location="cpu").eval()
    except (RuntimeError, ValueError):
        pass
    try:
        return torch.export.load(str(path)).module()  # an exported program: eval() is not supported on it
    except Exception as e:  # noqa: BLE001 (torch.export raises many kinds on a file that is not its own)
        why = str(e).strip().split(".")[0] or type(e).__name__
        raise AlitError(f"{path}: neither TorchScript (torch.jit.save), an exported program (torch.export.save) "
                        f"nor safetensors ({why})") from None


def _is_safetensors(path: Path) -> bool:
    """A safetensors file starts with the 8-byte length of its JSON header, then '{'."""
    with open(path, "rb") as f:
        head = f.read(9)
    return len(head) == 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < path.stat().st_size


def _read_safetensors(path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: f.get_tensor(k) for k in f.keys()}, f.metadata() or {}
    except FileNotFoundError:
        raise AlitError(f"{path}: no such file") from None
    except (SafetensorError, OSError) as e:
        raise AlitError(f"{path}: not a safetensors file ({e})") from None
