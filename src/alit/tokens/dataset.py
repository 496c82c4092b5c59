"""`alit.TokenDataset(DIR)`: the tokens `alit tokenize` wrote, as a torch Dataset for training.

    ds = alit.TokenDataset("tokens/")
    key, ids = ds[0]                       # ids: LongTensor [num_tokens] (latents [L, d] if continuous)
    loader = DataLoader(ds, batch_size=64, shuffle=True, collate_fn=ds.collate)
    keys, ids, lengths = next(iter(loader))  # ids [B, Lmax] padded with -1, lengths [B]
    images = tok.decode(ds.encoding([0, 1], tok))

Every part is read into memory once (with pyarrow), as flat arrays and offsets: a million images
of 128 tokens take about 256 MB. Folders of the older layout (index.json beside the parts) read too.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ..encoding import Encoding
from ..errors import AlitError
from .layout import layout


class TokenDataset(torch.utils.data.Dataset):
    """(key, ids) or (key, latents) per image of a token folder, in the order of its parts."""

    def __init__(self, root: str | Path):
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.root = Path(root)
        files = layout(self.root)
        path = files.index
        if not path.is_file():
            hint = " (the run has not finished: run the same `alit tokenize` command again)" \
                if files.state.is_dir() else ""
            raise AlitError(f"{self.root}: not a token folder of `alit tokenize` (no {path.name}){hint}")
        try:
            self.index = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise AlitError(f"{path}: unreadable ({e})") from None
        self.fingerprint: str = self.index["model"]["fingerprint"]
        config = self.index["model"]["config"]
        self.quantized: bool = bool(config["quantize"])
        self.codebook_size: int | None = config["codebook_size"] if self.quantized else None
        column = "ids" if self.quantized else "latents"
        keys, lengths, values = [], [], []
        for name in self.index["parts"]:
            try:
                table = pq.read_table(self.root / name, columns=["key", "num_tokens", column])
            except (OSError, pa.ArrowException) as e:
                raise AlitError(f"{self.root / name}: unreadable Parquet part ({e})") from None
            keys += table.column("key").to_pylist()
            lengths.append(table.column("num_tokens").to_numpy().astype(np.int64))
            flat = pa.chunked_array(table.column(column)).combine_chunks().flatten()  # tokens of every row
            if not self.quantized:
                flat = flat.flatten()  # each token's d floats
            values.append(flat.to_numpy(zero_copy_only=False))
        if len(keys) != self.index["images_written"]:
            raise AlitError(f"{self.root}: {len(keys)} rows in the parts, {path.name} says "
                            f"{self.index['images_written']}")
        self.keys: list[str] = keys
        self.lengths = np.concatenate(lengths) if lengths else np.zeros(0, np.int64)  # [n]
        self.offsets = np.zeros(len(keys) + 1, dtype=np.int64)
        self.offsets[1:] = np.cumsum(self.lengths)
        flat = np.concatenate(values) if values else np.zeros(0)
        self._values = flat.reshape(int(self.offsets[-1]), -1) if not self.quantized else flat
        self._where = None

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, i: int) -> tuple[str, torch.Tensor]:
        """(key, ids LongTensor [L]) for a quantised model, (key, latents float [L, d]) otherwise."""
        a, b = int(self.offsets[i]), int(self.offsets[i + 1])
        x = torch.from_numpy(np.array(self._values[a:b]))
        return self.keys[i], x.long() if self.quantized else x.float()

    def find(self, key: str) -> int:
        """The row of `key` (KeyError when absent)."""
        if self._where is None:
            self._where = {k: i for i, k in enumerate(self.keys)}
        return self._where[key]

    @staticmethod
    def collate(items: list[tuple[str, torch.Tensor]]):
        """[(key, tokens)] -> (keys, tokens padded to the longest: ids [B, Lmax] with -1, latents
        [B, Lmax, d] with 0, lengths LongTensor [B])."""
        keys = [k for k, _ in items]
        lengths = torch.tensor([x.shape[0] for _, x in items], dtype=torch.long)
        first = items[0][1]
        pad = -1 if not first.is_floating_point() else 0
        out = first.new_full((len(items), int(lengths.max()), *first.shape[1:]), pad)
        for j, (_, x) in enumerate(items):
            out[j, :x.shape[0]] = x
        return keys, out, lengths

    def check_model(self, model) -> None:
        """AlitError unless `model` is the one that made these tokens (same fingerprint)."""
        mine = model.fingerprint()
        if mine != self.fingerprint:
            raise AlitError(f"{self.root}: tokens made by model {self.fingerprint} "
                            f"({self.index['model']['checkpoint']}); this model is {mine}")

    def encoding(self, rows: list[int], model) -> Encoding:
        """An `alit.Encoding` of some rows, for `model.decode`."""
        self.check_model(model)
        _, tokens, lengths = self.collate([self[i] for i in rows])
        if self.quantized:
            return Encoding.from_ids(tokens, lengths, model=model)
        return Encoding.from_latents(tokens, lengths, model=model)
