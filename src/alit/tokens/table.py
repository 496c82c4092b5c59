"""A part of `alit tokenize` as a Parquet table: `key`, `num_tokens`, and `ids` in the smallest
unsigned type that holds the codebook (or `latents`, d float32 per token, for a continuous model);
the model in the table's metadata."""
from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

FORMAT = "alit-tokens"
VERSION = 1


@dataclass(frozen=True)
class TableSpec:
    """What a part's table takes from the model, read once on the main thread."""
    codebook_size: int | None       # None for a continuous model
    latent_dim: int
    metadata: dict[str, str]

    @classmethod
    def of(cls, tok) -> "TableSpec":
        meta = {"alit": json.dumps({"format": FORMAT, "version": VERSION, "model": tok.fingerprint(),
                                    "config": tok.config.to_dict()})}
        K = tok.config.codebook_size if tok.quantizer is not None else None
        return cls(K, tok.config.latent_dim, meta)


def part_table(spec: TableSpec, keys: list[str], lengths: list[int], values: list[np.ndarray]):
    """The Parquet table of a part: key, num_tokens, ids (or latents); the model in its metadata."""
    import pyarrow as pa

    offsets = np.zeros(len(keys) + 1, dtype=np.int32)
    offsets[1:] = np.cumsum(lengths)
    if spec.codebook_size is not None:
        kind = ids_type(spec.codebook_size)
        flat = pa.array(np.concatenate(values).astype(kind.to_pandas_dtype()), type=kind)
        column, name = pa.ListArray.from_arrays(pa.array(offsets), flat), "ids"
    else:
        flat = pa.array(np.concatenate(values).astype(np.float32).reshape(-1))
        inner = pa.FixedSizeListArray.from_arrays(flat, spec.latent_dim)  # one token: d floats
        column, name = pa.ListArray.from_arrays(pa.array(offsets), inner), "latents"
    schema = pa.schema([("key", pa.string()), ("num_tokens", pa.int16()), (name, column.type)],
                       metadata=spec.metadata)
    return pa.table([pa.array(keys, pa.string()), pa.array(lengths, pa.int16()), column], schema=schema)


def ids_type(codebook_size: int):
    """The smallest unsigned Arrow integer type that holds every id of the codebook."""
    import pyarrow as pa

    for bits, kind in ((8, pa.uint8()), (16, pa.uint16()), (32, pa.uint32())):
        if codebook_size <= 2 ** bits:
            return kind
    return pa.uint64()
