"""`Encoding`: the variable-length tokens of a batch of images, and the identity of the model that
made them (DESIGN 2.1).

Each image has its own length (a multiple of the model's tokens per iteration). The batch is
stored padded to the longest: `ids` hold -1 and `latents` hold zeros past each image's length.

An Encoding comes from `tok.encode(images, ...)`, from a file (`Encoding.load(path)`), or from
tokens alone: `Encoding.from_ids(ids, lengths, model=tok)` (quantised models) or
`Encoding.from_latents(latents, lengths, model=tok)`. Decoding it with a model other than the one
that made it (`tok.decode(enc)`) raises ValueError.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .errors import AlitError

FORMAT = "alit-encoding"
VERSION = "1"


def model_fingerprint(model: nn.Module) -> str:
    """A short hash of the model's config and a sample of every weight tensor: the identity an
    Encoding records. Any retrained or converted-differently model gets another fingerprint."""
    h = hashlib.sha256(json.dumps(model.config.to_dict(), sort_keys=True).encode())
    samples = []
    for name, t in sorted(model.state_dict().items()):
        h.update(f"{name}{tuple(t.shape)}{t.dtype}".encode())
        flat = t.detach().reshape(-1)
        samples.append(flat[:: max(1, flat.numel() // 64)][:64].double())  # up to 64 values each
    if samples:
        h.update(torch.cat(samples).cpu().numpy().tobytes())
    return h.hexdigest()[:16]


@dataclass(repr=False)
class Encoding:
    """Per-image token lengths plus padded ids / latents. See the module docstring."""

    lengths: torch.Tensor          # LongTensor [B]: tokens of each image
    ids: torch.Tensor | None       # LongTensor [B, Lmax], -1 past each length; None: continuous latents
    latents: torch.Tensor          # [B, Lmax, d] what the decoder consumes, zero past each length
    iterations: int                # rollout iterations run to make it (the most any image needed)
    model: str                     # fingerprint of the model that made it (`model_fingerprint`)

    def __post_init__(self):
        if not isinstance(self.lengths, torch.Tensor) or self.lengths.ndim != 1 or \
                self.lengths.dtype != torch.long or self.lengths.numel() == 0:
            raise ValueError(f"Encoding.lengths must be a non-empty LongTensor [B], "
                             f"got {_describe(self.lengths)}")
        B, Lmax = self.lengths.numel(), int(self.lengths.max())
        if int(self.lengths.min()) < 1:
            raise ValueError(f"Encoding.lengths must be positive, got {self.lengths.tolist()}")
        if not isinstance(self.latents, torch.Tensor) or self.latents.ndim != 3 or \
                tuple(self.latents.shape[:2]) != (B, Lmax) or not self.latents.is_floating_point():
            raise ValueError(f"Encoding.latents must be a float tensor [{B}, {Lmax}, d] (batch, longest "
                             f"length, latent width), got {_describe(self.latents)}")
        if self.ids is not None and (not isinstance(self.ids, torch.Tensor) or self.ids.dtype != torch.long
                                     or tuple(self.ids.shape) != (B, Lmax)):
            raise ValueError(f"Encoding.ids must be a LongTensor [{B}, {Lmax}] or None, "
                             f"got {_describe(self.ids)}")

    # --- building one from tokens alone -----------------------------------------------------------
    @classmethod
    def from_ids(cls, ids: torch.Tensor, lengths: torch.Tensor | list[int], model: nn.Module) -> "Encoding":
        """Rebuild from token ids [B, L] (anything past each length is ignored) and lengths [B],
        for the quantised `model` that made them; latents are looked up in its codebook."""
        if getattr(model, "quantizer", None) is None:
            raise ValueError("this model has continuous latents: rebuild with Encoding.from_latents")
        lengths = _lengths(lengths, model)
        if not isinstance(ids, torch.Tensor) or ids.ndim != 2 or ids.is_floating_point() or \
                ids.shape[0] != lengths.numel() or ids.shape[1] < int(lengths.max()):
            raise ValueError(f"ids must be an integer tensor [{lengths.numel()}, >= {int(lengths.max())}] "
                             f"(one row per length), got {_describe(ids)}")
        device = model.quantizer.codebook.weight.device
        ids = ids[:, :int(lengths.max())].to(device, torch.long)
        lengths = lengths.to(device)
        valid = _valid(lengths, ids.shape[1])  # [B, Lmax]
        K = model.config.codebook_size
        if ((ids[valid] < 0) | (ids[valid] >= K)).any():
            raise ValueError(f"token ids must lie in [0, {K}) within each length")
        ids = ids.masked_fill(~valid, -1)
        with torch.no_grad():
            latents = model.latents_from_ids(ids.clamp(min=0)) * valid[..., None]  # [B, Lmax, d]
        return cls(lengths, ids, latents, _iterations(lengths, model), model_fingerprint(model))

    @classmethod
    def from_latents(cls, latents: torch.Tensor, lengths: torch.Tensor | list[int],
                     model: nn.Module) -> "Encoding":
        """Rebuild from latents [B, L, d] (anything past each length is ignored) and lengths [B],
        for the `model` that made them. A quantised model snaps them to its nearest codes (ids)."""
        lengths = _lengths(lengths, model)
        d = model.config.latent_dim
        if not isinstance(latents, torch.Tensor) or latents.ndim != 3 or not latents.is_floating_point() \
                or latents.shape[0] != lengths.numel() or latents.shape[1] < int(lengths.max()) \
                or latents.shape[2] != d:
            raise ValueError(f"latents must be a float tensor [{lengths.numel()}, >= {int(lengths.max())}, "
                             f"{d}], got {_describe(latents)}")
        param = next(model.parameters())
        latents = latents[:, :int(lengths.max())].to(param.device, param.dtype)
        lengths = lengths.to(param.device)
        valid = _valid(lengths, latents.shape[1])
        latents = latents * valid[..., None]
        ids = None
        if model.quantizer is not None:
            with torch.no_grad():
                ids = model.quantizer(latents).ids.masked_fill(~valid, -1)
        return cls(lengths, ids, latents, _iterations(lengths, model), model_fingerprint(model))

    # --- a batch -----------------------------------------------------------------------------------
    def __len__(self) -> int:
        return self.lengths.numel()

    def __getitem__(self, index) -> "Encoding":
        """The images at `index` (an int, a slice, indices or a bool mask), trimmed to their longest."""
        if isinstance(index, int):
            index = slice(index, index + 1 if index != -1 else None)
        lengths = self.lengths[index]
        if lengths.numel() == 0:
            raise IndexError("an Encoding needs at least one image")
        L = int(lengths.max())
        ids = None if self.ids is None else self.ids[index][:, :L]
        return Encoding(lengths, ids, self.latents[index][:, :L], self.iterations, self.model)

    def to(self, device: torch.device | str) -> "Encoding":
        ids = None if self.ids is None else self.ids.to(device)
        return Encoding(self.lengths.to(device), ids, self.latents.to(device), self.iterations, self.model)

    def __repr__(self) -> str:
        kind = "ids" if self.ids is not None else "continuous latents"
        return (f"Encoding({len(self)} images, lengths={self.lengths.tolist()}, {kind}, "
                f"iterations={self.iterations}, model={self.model})")

    # --- files -------------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write a safetensors file: plain tensors plus JSON-free string metadata (no pickling)."""
        from safetensors.torch import save_file

        path = Path(path)
        tensors = {"lengths": self.lengths, "latents": self.latents}
        if self.ids is not None:
            tensors["ids"] = self.ids
        tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
        save_file(tensors, str(path), metadata={"format": FORMAT, "version": VERSION, "model": self.model,
                                               "iterations": str(self.iterations)})
        return path

    @classmethod
    def load(cls, path: str | Path) -> "Encoding":
        """Read a file written by `save` (on the CPU). Raises AlitError if it is not one."""
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                tensors = {k: f.get_tensor(k) for k in f.keys()}
        except FileNotFoundError:
            raise AlitError(f"{path}: no such file") from None
        except (SafetensorError, OSError) as e:
            raise AlitError(f"{path}: not a safetensors file ({e})") from None
        if meta.get("format") != FORMAT or "lengths" not in tensors or "latents" not in tensors:
            raise AlitError(f"{path}: not an alit Encoding (written by Encoding.save)")
        if meta.get("version") != VERSION:
            raise AlitError(f"{path}: Encoding format version {meta.get('version')!r}; "
                            f"this alit reads {VERSION}")
        try:
            return cls(tensors["lengths"], tensors.get("ids"), tensors["latents"], int(meta["iterations"]),
                       meta["model"])
        except (KeyError, ValueError) as e:
            raise AlitError(f"{path}: malformed Encoding ({e})") from None

    # --- checks before decoding ----------------------------------------------------------------------
    def check_model(self, model: nn.Module) -> None:
        """Raise ValueError unless `model` made this Encoding (same fingerprint)."""
        mine = model_fingerprint(model)
        if self.model != mine:
            raise ValueError(f"this Encoding was made by another model (fingerprint {self.model}); this "
                             f"model's fingerprint is {mine}. Decode it with the model that encoded it")
        _lengths(self.lengths, model)
        if self.latents.shape[2] != model.config.latent_dim:
            raise ValueError(f"Encoding latents have width {self.latents.shape[2]}, the model's latent_dim "
                             f"is {model.config.latent_dim}")
        if (self.ids is None) != (getattr(model, "quantizer", None) is None):
            raise ValueError("Encoding ids do not match the model: a quantised model needs ids, a "
                             "continuous one has none")


def _lengths(lengths, model: nn.Module) -> torch.Tensor:
    """Lengths as a LongTensor [B], each one of the model's lengths, or ValueError."""
    allowed = model.config.lengths
    if isinstance(lengths, (list, tuple)):
        lengths = torch.tensor(lengths)
    if not isinstance(lengths, torch.Tensor) or lengths.ndim != 1 or lengths.numel() == 0 or \
            lengths.is_floating_point() or lengths.dtype == torch.bool:
        raise ValueError(f"lengths must be an integer tensor [B], got {_describe(lengths)}")
    bad = sorted({int(v) for v in lengths.tolist()} - set(allowed))
    if bad:
        raise ValueError(f"lengths {bad} are not lengths of this model; each must be one of {allowed}")
    return lengths.long()


def _valid(lengths: torch.Tensor, L: int) -> torch.Tensor:
    """[B, L] bool: True where a position is within its image's length."""
    return torch.arange(L, device=lengths.device)[None] < lengths[:, None]


def _iterations(lengths: torch.Tensor, model: nn.Module) -> int:
    return math.ceil(int(lengths.max()) / model.config.tokens_per_iter)


def _describe(x) -> str:
    if isinstance(x, torch.Tensor):
        return f"{x.dtype} tensor of shape {list(x.shape)}"
    return type(x).__name__
