"""`Encoding`: the variable-length tokens of a batch of images, and the identity of the model that
made them (docs/design.md 2.1).

Each image has its own length (a multiple of the model's tokens per iteration). The batch is
stored padded to the longest: `ids` hold -1 and `latents` hold zeros past each image's length.

An Encoding comes from `tok.encode(images, ...)`, from a file (`Encoding.load(path)`), or from
tokens alone: `Encoding.from_ids(ids, lengths, model=tok)` (quantised models) or
`Encoding.from_latents(latents, lengths, model=tok)`. Decoding it with a model other than the one
that made it (`tok.decode(enc)`) raises ValueError.

Files (`enc.save(path)`, safetensors, no pickling) are small: only the tokens within each length
are stored, ragged, ids in the smallest integer type that holds the codebook (uint8 up to 256
codes, int16 up to 32768), and no latents for a quantised model (its codebook gives them back).
`Encoding.load` checks every id against the codebook size recorded in the file.
"""
from __future__ import annotations

import hashlib
import json
import math
import weakref
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from .errors import AlitError

FORMAT = "alit-encoding"
VERSION = "2"  # 1: padded int64 ids and latents (no longer read)


# Config fields that say how a model chooses or computes tokens, not what its weights are: tokens
# made under another length rule or halting setting decode with the same weights all the same.
ENCODE_ONLY_FIELDS = ("criterion", "halting", "halting_threshold")
ENCODE_ONLY_BASE_FIELDS = ("sample_posterior",)


def model_fingerprint(model: nn.Module) -> str:
    """A short hash of the model's architecture and a sample of every weight tensor: the identity an
    Encoding records. Any retrained or converted-differently model gets another fingerprint; the
    same weights cast to bfloat16 / float16, or given another default length rule
    (`ENCODE_ONLY_FIELDS`), keep theirs. Computed once per model, and again only after a weight or
    buffer was replaced or changed in place (their version counters say so)."""
    key = _weights_version(model)
    cached = _FINGERPRINTS.get(model)
    if cached is None or cached[0] != key:
        cached = _FINGERPRINTS[model] = (key, _fingerprint(model))
    return cached[1]


# model -> (its weights' version, its fingerprint); a model that is garbage-collected leaves it
_FINGERPRINTS: "weakref.WeakKeyDictionary[nn.Module, tuple]" = weakref.WeakKeyDictionary()


def _weights_version(model: nn.Module) -> tuple:
    """Changes whenever a tensor of the state dict is replaced, cast, moved or written in place."""
    tensors = [*model.parameters(), *model.buffers()]
    try:
        return tuple((t.data_ptr(), t._version) for t in tensors) + (model.config,)
    except RuntimeError:  # tensors made under torch.inference_mode() keep no version: never cache
        return (object(),)


def _fingerprint(model: nn.Module) -> str:
    config = model.config.to_dict()
    for key in ENCODE_ONLY_FIELDS:
        config.pop(key, None)
    for key in ENCODE_ONLY_BASE_FIELDS:
        config["base"].pop(key, None)
    h = hashlib.sha256(json.dumps(config, sort_keys=True).encode())
    samples = []
    for name, t in sorted(model.state_dict().items()):
        h.update(f"{name}{tuple(t.shape)}".encode())  # not the dtype: a bf16 copy is the same model
        flat = t.detach().reshape(-1)
        sample = flat[:: max(1, flat.numel() // 64)][:64]  # up to 64 values each
        if sample.is_floating_point():
            sample = sample.to(torch.bfloat16)  # the values a bf16 copy of the weights also has
        samples.append(sample.cpu())
    if samples:
        h.update(torch.cat([x.double() for x in samples]).numpy().tobytes())  # on the CPU: MPS has no float64
    return h.hexdigest()[:16]


def id_dtype(codebook_size: int) -> torch.dtype:
    """The smallest integer type that holds every id of a codebook of `codebook_size` entries."""
    if codebook_size <= 256:
        return torch.uint8
    if codebook_size <= 2 ** 15:
        return torch.int16
    return torch.int32


@dataclass(repr=False)
class Encoding:
    """Per-image token lengths plus padded ids / latents. See the module docstring."""

    lengths: torch.Tensor          # LongTensor [B]: tokens of each image
    ids: torch.Tensor | None       # LongTensor [B, Lmax], -1 past each length; None: continuous latents
    latents: torch.Tensor | None   # [B, Lmax, d] what the decoder consumes, zero past each length; None
                                   # only beside ids, for a file loaded without its model (decode reads ids)
    iterations: int                # rollout iterations run to make it (the most any image needed)
    model: str                     # fingerprint of the model that made it (`model_fingerprint`)
    codebook_size: int | None = None  # K of the model's latent codebook (quantised), when known

    def __post_init__(self):
        if not isinstance(self.lengths, torch.Tensor) or self.lengths.ndim != 1 or \
                self.lengths.dtype != torch.long or self.lengths.numel() == 0:
            raise ValueError(f"Encoding.lengths must be a non-empty LongTensor [B], "
                             f"got {_describe(self.lengths)}")
        shortest, Lmax = torch.stack(torch.aminmax(self.lengths)).tolist()  # one read from the device
        B = self.lengths.numel()
        if shortest < 1:
            raise ValueError(f"Encoding.lengths must be positive, got {self.lengths.tolist()}")
        if self.latents is None and self.ids is None:
            raise ValueError("an Encoding needs ids (quantised models) or latents (continuous ones)")
        if self.latents is not None and (not isinstance(self.latents, torch.Tensor) or self.latents.ndim != 3 or
                                         tuple(self.latents.shape[:2]) != (B, Lmax) or
                                         not self.latents.is_floating_point()):
            raise ValueError(f"Encoding.latents must be a float tensor [{B}, {Lmax}, d] (batch, longest "
                             f"length, latent width), got {_describe(self.latents)}")
        if self.ids is not None:
            if not isinstance(self.ids, torch.Tensor) or self.ids.dtype != torch.long or \
                    tuple(self.ids.shape) != (B, Lmax):
                raise ValueError(f"Encoding.ids must be a LongTensor [{B}, {Lmax}] or None, "
                                 f"got {_describe(self.ids)}")
            _check_ids(self.ids, self.lengths, self.codebook_size)

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
        return cls(lengths, ids, latents, _iterations(lengths, model), model_fingerprint(model), K)

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
        ids, K = None, None
        if model.quantizer is not None:
            K = model.config.codebook_size
            with torch.no_grad():
                ids = model.quantizer(latents).ids.masked_fill(~valid, -1)
        return cls(lengths, ids, latents, _iterations(lengths, model), model_fingerprint(model), K)

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
        latents = None if self.latents is None else self.latents[index][:, :L]
        return Encoding(lengths, ids, latents, self.iterations, self.model, self.codebook_size)

    @classmethod
    def cat(cls, encodings: list["Encoding"]) -> "Encoding":
        """One Encoding of the images of several, in order (all made by the same model)."""
        encodings = list(encodings)
        if not encodings or not all(isinstance(e, Encoding) for e in encodings):
            raise ValueError("Encoding.cat needs a non-empty list of Encodings")
        first = encodings[0]
        for e in encodings[1:]:
            if e.model != first.model:
                raise ValueError(f"Encoding.cat: encodings of different models ({first.model}, {e.model})")
            if (e.ids is None) != (first.ids is None):
                raise ValueError("Encoding.cat: ids and continuous latents cannot be mixed")
        Lmax = max(int(e.lengths.max()) for e in encodings)
        device = first.lengths.device

        def pad(x: torch.Tensor, value) -> torch.Tensor:  # [b, L, ...] -> [b, Lmax, ...]
            extra = x.new_full((x.shape[0], Lmax - x.shape[1], *x.shape[2:]), value)
            return torch.cat([x, extra], 1).to(device)

        ids = None if first.ids is None else torch.cat([pad(e.ids, -1) for e in encodings])
        latents = None
        if all(e.latents is not None for e in encodings):
            latents = torch.cat([pad(e.latents, 0) for e in encodings])
        K = next((e.codebook_size for e in encodings if e.codebook_size is not None), None)
        return cls(torch.cat([e.lengths.to(device) for e in encodings]), ids, latents,
                   max(e.iterations for e in encodings), first.model, K)

    def to(self, device: torch.device | str) -> "Encoding":
        ids = None if self.ids is None else self.ids.to(device)
        latents = None if self.latents is None else self.latents.to(device)
        return Encoding(self.lengths.to(device), ids, latents, self.iterations, self.model, self.codebook_size)

    def __repr__(self) -> str:
        kind = "ids" if self.ids is not None else "continuous latents"
        return (f"Encoding({len(self)} images, lengths={self.lengths.tolist()}, {kind}, "
                f"iterations={self.iterations}, model={self.model})")

    # --- files -------------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write a safetensors file (no pickling): lengths, and the tokens within each length only,
        ragged (`ids` [sum of lengths] in the smallest integer type that holds the codebook, or
        `latents` [sum of lengths, d] for a continuous model), plus string metadata."""
        path = Path(path)
        valid = _valid(self.lengths, int(self.lengths.max()))  # [B, Lmax]
        meta = {"format": FORMAT, "version": VERSION, "model": self.model, "iterations": str(self.iterations)}
        tensors = {"lengths": self.lengths.to(torch.int32)}
        if self.ids is not None:
            K = self.codebook_size if self.codebook_size is not None else int(self.ids.max()) + 1
            tensors["ids"] = self.ids[valid].to(id_dtype(K))  # [sum L]
            if self.codebook_size is not None:
                meta["codebook_size"] = str(self.codebook_size)
        else:
            tensors["latents"] = self.latents[valid]  # [sum L, d]
        tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
        try:
            save_file(tensors, str(path), metadata=meta)
        except (SafetensorError, OSError) as e:
            reason = "no such folder" if not path.parent.is_dir() else str(e).strip().splitlines()[0]
            raise AlitError(f"{path}: cannot write the Encoding ({reason})") from None
        return path

    @classmethod
    def load(cls, path: str | Path, model: nn.Module | None = None) -> "Encoding":
        """Read a file written by `save` (on the CPU, or on `model`'s device). Raises AlitError if
        it is not one, or if any id lies outside the codebook. A quantised Encoding loaded without
        `model` has `latents` None (decode reads the ids); with `model`, the file must be its own
        (same fingerprint) and the latents are looked up in its codebook."""
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                tensors = {k: f.get_tensor(k) for k in f.keys()}
        except FileNotFoundError:
            raise AlitError(f"{path}: no such file") from None
        except (SafetensorError, OSError) as e:
            raise AlitError(f"{path}: not a safetensors file ({e})") from None
        if meta.get("format") != FORMAT or "lengths" not in tensors or not ({"ids", "latents"} & set(tensors)):
            raise AlitError(f"{path}: not an alit Encoding (written by Encoding.save)")
        if meta.get("version") != VERSION:
            raise AlitError(f"{path}: Encoding format version {meta.get('version')!r}; this alit reads "
                            f"{VERSION} (encode the images again)")
        try:
            enc = cls._unpack(tensors, meta)
        except (KeyError, ValueError, RuntimeError) as e:
            raise AlitError(f"{path}: malformed Encoding ({e})") from None
        if model is not None:
            try:
                enc.check_model(model)
            except ValueError as e:
                raise AlitError(f"{path}: {e}") from None
            enc = enc.to(next(model.parameters()).device)
            if enc.ids is not None:
                with torch.no_grad():
                    valid = _valid(enc.lengths, enc.ids.shape[1])
                    enc.latents = model.latents_from_ids(enc.ids.clamp(min=0)) * valid[..., None]
        return enc

    @classmethod
    def _unpack(cls, tensors: dict, meta: dict) -> "Encoding":
        lengths = tensors["lengths"]
        if lengths.ndim != 1 or lengths.is_floating_point() or lengths.numel() == 0 or int(lengths.min()) < 1:
            raise ValueError(f"lengths must be positive integers [B], got {_describe(lengths)}")
        lengths = lengths.long()
        valid = _valid(lengths, int(lengths.max()))  # [B, Lmax]
        total = int(lengths.sum())
        K = int(meta["codebook_size"]) if "codebook_size" in meta else None
        ids = latents = None
        if "ids" in tensors:
            flat = tensors["ids"]
            if flat.shape != (total,) or flat.is_floating_point():
                raise ValueError(f"ids must be integers [{total}] (the sum of the lengths), got {_describe(flat)}")
            flat = flat.long()
            if K is not None and flat.numel() and not bool(((flat >= 0) & (flat < K)).all()):
                bad = flat[(flat < 0) | (flat >= K)][0].item()
                raise ValueError(f"token id {bad} is not in the codebook [0, {K})")
            ids = torch.full(valid.shape, -1, dtype=torch.long)
            ids[valid] = flat
        else:
            flat = tensors["latents"]
            if flat.ndim != 2 or flat.shape[0] != total or not flat.is_floating_point():
                raise ValueError(f"latents must be floats [{total}, d], got {_describe(flat)}")
            latents = flat.new_zeros(*valid.shape, flat.shape[1])
            latents[valid] = flat
        return cls(lengths, ids, latents, int(meta["iterations"]), meta["model"], K)

    # --- checks before decoding ----------------------------------------------------------------------
    def check_model(self, model: nn.Module) -> None:
        """Raise ValueError unless `model` made this Encoding (same fingerprint) and can decode it."""
        mine = model_fingerprint(model)
        if self.model != mine:
            raise ValueError(f"this Encoding was made by another model (fingerprint {self.model}); this "
                             f"model's fingerprint is {mine}. Decode it with the model that encoded it")
        _lengths(self.lengths, model)
        if self.latents is not None and self.latents.shape[2] != model.config.latent_dim:
            raise ValueError(f"Encoding latents have width {self.latents.shape[2]}, the model's latent_dim "
                             f"is {model.config.latent_dim}")
        if (self.ids is None) != (getattr(model, "quantizer", None) is None):
            raise ValueError("Encoding ids do not match the model: a quantised model needs ids, a "
                             "continuous one has none")
        if self.ids is not None:
            _check_ids(self.ids, self.lengths, model.config.codebook_size)


def _check_ids(ids: torch.Tensor, lengths: torch.Tensor, codebook_size: int | None) -> None:
    """ValueError unless ids [B, Lmax] are codebook entries within each length and -1 past it."""
    valid = _valid(lengths.to(ids.device), ids.shape[1])
    top = codebook_size if codebook_size is not None else None
    outside = (ids < 0) if top is None else (ids < 0) | (ids >= top)  # [B, Lmax]
    if not bool(torch.where(valid, outside, ids != -1).any()):  # the one value read back when all is well
        return
    inside = ids[valid]
    bad = outside[valid]
    if bool(bad.any()):
        value = int(inside[bad][0])
        where = "-1 (padding)" if value == -1 else f"id {value}"
        limit = f" [0, {top})" if top is not None else ""
        raise ValueError(f"Encoding.ids: {where} within an image's length; every token there must be a "
                         f"codebook entry{limit}")
    if bool((ids[~valid] != -1).any()):
        raise ValueError("Encoding.ids must be -1 past each image's length")


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
