"""The sequences a generator learns from: the Parquet parts of `alit tokenize`, as (length, ids,
class) per image, padded to the longest length of each batch.

    data = GeneratorData("tokens/", classes=True)   # class = first folder of each key
    batch = data.batch([0, 1, 2])                   # Batch: ids [3, Lmax] (-1 past each length), ...
    for batch in data.batches(64, seed=0): ...      # shuffled epochs, forever

The token folder knows its tokenizer (fingerprint, codebook size, lengths): a generator built for
it (`GeneratorConfig`) must agree, which `check_config` checks.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import torch

from ..config import ModelConfig
from ..errors import AlitError
from ..tokens import TokenDataset
from .model import GeneratorConfig


@dataclass
class Batch:
    ids: torch.Tensor           # LongTensor [B, Lmax]: ids, -1 past each sequence's length
    length_index: torch.Tensor  # LongTensor [B]: each length's position in config.lengths
    classes: torch.Tensor       # LongTensor [B]: class ids; the null class where there is none

    def to(self, device) -> "Batch":
        return Batch(self.ids.to(device), self.length_index.to(device), self.classes.to(device))


class GeneratorData:
    """Every sequence of a token folder in memory, ids padded to the tokenizer's longest length."""

    def __init__(self, tokens: str | Path | TokenDataset, classes: bool | tuple[str, ...] | list[str] = False):
        """classes: False (none), True (the sorted first folders of the keys), or the names to use
        (e.g. a generator's, for held-out data: a key of another class is refused)."""
        ds = tokens if isinstance(tokens, TokenDataset) else TokenDataset(tokens)
        if not ds.quantized:
            raise AlitError(f"{ds.root}: continuous latents; a generator models ids (tokens of a quantised tokenizer)")
        model = ds.index["model"]
        self.root = ds.root
        self.fingerprint: str = model["fingerprint"]
        self.checkpoint: str | None = model.get("checkpoint")
        self.vocab_size: int = ds.codebook_size
        self.lengths: tuple[int, ...] = tuple(ModelConfig.from_dict(model["config"]).lengths)
        self.keys: list[str] = ds.keys
        if not self.keys:
            raise AlitError(f"{ds.root}: no sequences")
        where = {L: i for i, L in enumerate(self.lengths)}
        self.num_tokens = torch.from_numpy(ds.lengths.copy())  # LongTensor [n]
        self.length_index = torch.tensor([where[int(L)] for L in ds.lengths], dtype=torch.long)  # [n]
        small = torch.int16 if self.vocab_size <= 2 ** 15 else torch.int32
        self.ids = torch.full((len(ds), self.lengths[-1]), -1, dtype=small)  # [n, max_len]
        for i in range(len(ds)):
            self.ids[i, :int(self.num_tokens[i])] = ds[i][1]
        self.classes, self.class_ids = _classes(self.keys, classes, ds.root)

    def __len__(self) -> int:
        return len(self.keys)

    def batch(self, rows) -> Batch:
        rows = torch.as_tensor(rows, dtype=torch.long)
        Lmax = int(self.num_tokens[rows].max())
        return Batch(self.ids[rows, :Lmax].long(), self.length_index[rows], self.class_ids[rows])

    def batches(self, batch_size: int, seed: int = 0) -> Iterator[Batch]:
        """Random batches, each sequence once per epoch, epochs without end; the order depends on
        `seed` only."""
        g = torch.Generator().manual_seed(seed)
        while True:
            order = torch.randperm(len(self), generator=g)
            stop = max(len(order) - batch_size, 0) + 1  # whole batches only (one, if fewer sequences)
            for start in range(0, stop, batch_size):
                yield self.batch(order[start:start + batch_size])

    def rows_of_length(self, length: int) -> torch.Tensor:
        """The rows whose sequences have `length` ids, ascending."""
        return torch.nonzero(self.num_tokens == length).flatten()

    def length_histogram(self) -> dict[int, int]:
        """Sequences per length, for every length of the tokenizer."""
        return {L: int((self.num_tokens == L).sum()) for L in self.lengths}

    def check_config(self, config: GeneratorConfig) -> None:
        """AlitError unless a generator of `config` models these tokens."""
        if config.tokenizer != self.fingerprint:
            raise AlitError(f"{self.root}: tokens of tokenizer {self.fingerprint}; the generator models the tokens "
                            f"of tokenizer {config.tokenizer}")
        if (config.vocab_size, config.lengths) != (self.vocab_size, self.lengths):
            raise AlitError(f"{self.root}: {self.vocab_size} codes and lengths {list(self.lengths)}; the generator has "
                            f"{config.vocab_size} and {list(config.lengths)}")
        if config.classes != self.classes:
            raise AlitError(f"{self.root}: classes {_names(self.classes)}; the generator's are {_names(config.classes)}")


def _classes(keys: list[str], classes, root) -> tuple[tuple[str, ...], torch.Tensor]:
    """(class names, class id of each key [n]); without classes every key has the null class 0."""
    if classes is False or classes == ():
        return (), torch.zeros(len(keys), dtype=torch.long)
    first = [_first_folder(k) for k in keys]
    flat = [k for k, f in zip(keys, first) if f is None]
    if flat:
        raise AlitError(f"{root}: {len(flat)} key(s) outside any folder (e.g. {flat[0]!r}); classes come from the "
                        f"first folder of each key (an ImageFolder layout: CLASS/image.jpg)")
    names = tuple(sorted(set(first))) if classes is True else tuple(classes)
    where = {c: i for i, c in enumerate(names)}
    unknown = sorted(set(first) - set(where))
    if unknown:
        raise AlitError(f"{root}: class(es) {_names(tuple(unknown))} that the generator does not know "
                        f"(it knows {_names(names)})")
    return names, torch.tensor([where[f] for f in first], dtype=torch.long)


def _first_folder(key: str) -> str | None:
    parts = PurePosixPath(key).parts
    return parts[0] if len(parts) > 1 else None


def _names(classes: tuple[str, ...]) -> str:
    shown = ", ".join(classes[:5]) + (f" and {len(classes) - 5} more" if len(classes) > 5 else "")
    return shown or "none"
