"""`alit tokenize`: a data set into Parquet token files, on one process or many, resumable.

DIR/part-NNNNNN.parquet holds one row per image of part NNNNNN (`key`, `num_tokens`, and `ids` in
the smallest unsigned type that holds the codebook, or `latents` for a continuous model). Beside
them, once every part is written, DIR/index.json (the model, how lengths were chosen, counts, the
histogram of lengths, bits per pixel, speed) and DIR/skipped.jsonl (images that could not be read).

Work is coordinated through DIR alone: part p belongs to rank p mod world; a part is written to a
temporary file and renamed into place, then its record (rows, skipped images, token counts) is
written to DIR/.alit-tokenize/ the same way. A part with a record is done, so running the same
command again after a kill finishes the job, with the same rows as an uninterrupted run (the same
parts, read in the same batches). Rank 0 waits for every record, then writes the index.
With `--mean-tokens` a first pass records each image's error at every length, every rank reads all
of them and computes the same allocation (`budget.py`), and a second pass writes the tokens.
"""
from __future__ import annotations

import json
import math
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import AlitError
from ..files import atomic_write
from ..images import ImageReadError
from .sources import Source, open_source

FORMAT = "alit-tokens"
VERSION = 1
STATE = ".alit-tokenize"   # the folder of run options and per-part records inside DIR
POLL_SECONDS = 0.5         # how often rank 0 looks for the records of other ranks


@dataclass
class Options:
    data: str
    out: str
    mode: str                       # "num_tokens", "criterion" or "mean_tokens"
    value: float | int | str        # the budget, the criterion spec, or the mean
    checkpoint: str = "default"
    batch_size: int = 32
    dtype: str = "fp32"
    part_size: int = 256
    workers: int = 4
    progress: bool = True


def tokenize(tok, opts: Options, *, rank: int = 0, world: int = 1, log=print) -> dict | None:
    """Write the parts of this rank; rank 0 also writes the index once all are done and returns it."""
    from ..tokenizer import as_dtype

    start = time.time()
    out = Path(opts.out)
    source = open_source(opts.data, opts.part_size)
    state = out / STATE
    identity = _identity(tok, opts, source)
    _claim(out, identity)
    if rank == 0 and (out / "index.json").is_file():
        log(f"{out}: already complete ({out / 'index.json'})")
        return json.loads((out / "index.json").read_text())
    done_before = set(_records(state, "part"))
    criterion = None
    if opts.mode == "criterion":
        criterion = _criterion(opts.value, tok)
    dtype = None if opts.dtype == "fp32" else as_dtype(opts.dtype)
    mine = [p for p in range(source.num_parts) if p % world == rank]
    size = tok.config.image_size

    allocation = None
    if opts.mode == "mean_tokens":
        todo = [p for p in mine if p not in _records(state, "curves")]
        with _Progress(source, todo, rank, world, opts.progress, "errors at every length") as bar:
            for p in todo:
                _write_curves(tok, source, p, size, opts, dtype, state, bar)
        curves = _wait(state, "curves", source.num_parts, rank == 0 and opts.progress)
        allocation, comparison = _allocate(curves, tok.config.lengths, float(opts.value))
        if rank == 0:
            _atomic_json(state / "allocation.json", comparison)

    todo = [p for p in mine if p not in _records(state, "part")]
    with _Progress(source, todo, rank, world, opts.progress, "tokens") as bar:
        for p in todo:
            budgets = None if allocation is None else allocation[p]
            _write_part(tok, source, p, size, opts, criterion, budgets, dtype, out, bar)
    if rank != 0:
        return None
    records = _wait(state, "part", source.num_parts, opts.progress)
    index = _index(tok, opts, source, records, world, time.time() - start, done_before)
    if allocation is not None:
        index["mean_tokens_comparison"] = json.loads((state / "allocation.json").read_text())
    skipped = [s for p in sorted(records) for s in records[p]["skipped"]]
    _atomic_write(out / "skipped.jsonl", "".join(json.dumps(s) + "\n" for s in skipped))
    _atomic_json(out / "index.json", index)
    return index


# --- the run's identity: a DIR holds one job ---------------------------------------------------------
def _identity(tok, opts: Options, source: Source) -> dict:
    return {"format": FORMAT, "version": VERSION, "model": tok.fingerprint(),
            "tokens": {"mode": opts.mode, "value": opts.value}, "dtype": opts.dtype,
            "data": {"kind": source.kind, "identity": source.identity, "parts": source.num_parts},
            "part_size": opts.part_size if source.kind == "folder" else None}


def _claim(out: Path, identity: dict) -> None:
    """Start or continue the job in `out`; AlitError if it holds another job or other files."""
    path = out / STATE / "options.json"
    if path.is_file():
        try:
            theirs = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise AlitError(f"{out}: unreadable run options ({path}: {e})") from None
        diff = [k for k in identity if theirs.get(k) != identity[k]]
        if diff:
            what = {"model": "another model", "tokens": "other length options", "dtype": "another --dtype",
                    "data": "other data (or the data changed)", "part_size": "another --part-size"}
            named = ", ".join(what.get(k, k) for k in diff)
            raise AlitError(f"{out}: holds tokens made with {named}; use a new --out folder, or the "
                            f"same options to finish that run")
        return
    # another rank may have made STATE already, and be writing options.json into it
    if out.exists() and (not out.is_dir() or any(e.name != STATE for e in out.iterdir())):
        raise AlitError(f"{out}: exists and is not an empty folder nor a token folder of `alit tokenize`; "
                        f"choose a new --out")
    try:
        (out / STATE).mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise AlitError(f"{out}: cannot create the output folder ({e.strerror or e})") from None
    _atomic_json(path, identity)  # every rank writes the same text: whichever lands is right


def _criterion(spec: str, tok):
    """A pixel criterion judged on 8-bit reconstructions, as every command judges it."""
    from ..criteria import EightBit, parse_criterion

    return EightBit.of(parse_criterion(spec, tok))


# --- one part ------------------------------------------------------------------------------------------
def _batches(source: Source, part: int, size: int, opts: Options, bar):
    """(keys, images [b, 3, S, S]) of a part in batches of --batch-size readable images, and the
    skipped images, [{"key", "reason"}]; files are read by a thread pool, one batch ahead."""
    skipped: list[dict] = []

    def read(item):
        key, reader = item
        try:
            return key, reader(), None
        except ImageReadError as e:
            return key, None, str(e)

    def batches():
        items = source.items(part, size)
        with ThreadPoolExecutor(max(1, opts.workers)) as pool:
            pending = [pool.submit(read, it) for it in _take(items, opts.batch_size)]
            while pending:
                following = [pool.submit(read, it) for it in _take(items, opts.batch_size)]
                keys, images = [], []
                for f in pending:
                    key, image, reason = f.result()
                    if image is None:
                        skipped.append({"key": key, "reason": reason, "part": part})
                        bar.update(1)
                    else:
                        keys.append(key)
                        images.append(image)
                if keys:
                    yield keys, torch.stack(images)
                pending = following
    return batches(), skipped


def _take(items, n: int) -> list:
    out = []
    for item in items:
        out.append(item)
        if len(out) == n:
            break
    return out


def _write_part(tok, source, part, size, opts, criterion, budgets, dtype, out: Path, bar) -> None:
    import pyarrow.parquet as pq

    t0 = time.time()
    device = next(tok.parameters()).device
    keys, lengths, values = [], [], []
    batches, skipped = _batches(source, part, size, opts, bar)
    for batch_keys, images in batches:
        images = images.to(device)
        if budgets is not None:
            chosen = budgets["lengths"][len(keys):len(keys) + len(batch_keys)]
            if budgets["keys"][len(keys):len(keys) + len(batch_keys)] != batch_keys:
                raise AlitError(f"part {part}: the images read now differ from those of the first pass "
                                f"(was the data changed during the run?)")
            enc = tok.encode(images, num_tokens=torch.tensor(chosen, device=device), dtype=dtype)
        elif opts.mode == "num_tokens":
            enc = tok.encode(images, num_tokens=int(opts.value), dtype=dtype)
        else:
            enc = tok.encode(images, criterion=criterion, dtype=dtype)
        n = enc.lengths.cpu()
        rows = enc.ids if enc.ids is not None else enc.latents.float()
        rows = rows.cpu()
        for j, key in enumerate(batch_keys):
            keys.append(key)
            lengths.append(int(n[j]))
            values.append(rows[j, :int(n[j])].numpy())
        bar.update(len(batch_keys))
    if budgets is not None and keys != budgets["keys"]:
        raise AlitError(f"part {part}: the images read now differ from those of the first pass "
                        f"(was the data changed during the run?)")
    name = None
    if keys:
        table = _table(tok, keys, lengths, values)
        name = f"part-{part:06d}.parquet"
        atomic_write(out / name, lambda tmp: pq.write_table(table, tmp))
    K = tok.config.codebook_size if tok.quantizer is not None else None
    hist: dict[str, int] = {}
    for L in lengths:
        hist[str(L)] = hist.get(str(L), 0) + 1
    _atomic_json(out / STATE / f"part-{part:06d}.json", {
        "part": part, "file": name, "rows": len(keys), "tokens": int(sum(lengths)), "histogram": hist,
        "skipped": skipped, "seconds": time.time() - t0, "codebook_size": K})


def _table(tok, keys: list[str], lengths: list[int], values: list[np.ndarray]):
    """The Parquet table of a part: key, num_tokens, ids (or latents); the model in its metadata."""
    import pyarrow as pa

    offsets = np.zeros(len(keys) + 1, dtype=np.int32)
    offsets[1:] = np.cumsum(lengths)
    if tok.quantizer is not None:
        kind = ids_type(tok.config.codebook_size)
        flat = pa.array(np.concatenate(values).astype(kind.to_pandas_dtype()), type=kind)
        column, name = pa.ListArray.from_arrays(pa.array(offsets), flat), "ids"
    else:
        d = tok.config.latent_dim
        flat = pa.array(np.concatenate(values).astype(np.float32).reshape(-1))
        inner = pa.FixedSizeListArray.from_arrays(flat, d)  # one token: d floats
        column, name = pa.ListArray.from_arrays(pa.array(offsets), inner), "latents"
    meta = {"alit": json.dumps({"format": FORMAT, "version": VERSION, "model": tok.fingerprint(),
                                "config": tok.config.to_dict()})}
    schema = pa.schema([("key", pa.string()), ("num_tokens", pa.int16()), (name, column.type)], metadata=meta)
    return pa.table([pa.array(keys, pa.string()), pa.array(lengths, pa.int16()), column], schema=schema)


def ids_type(codebook_size: int):
    """The smallest unsigned Arrow integer type that holds every id of the codebook."""
    import pyarrow as pa

    for bits, kind in ((8, pa.uint8()), (16, pa.uint16()), (32, pa.uint32())):
        if codebook_size <= 2 ** bits:
            return kind
    return pa.uint64()


def _write_curves(tok, source, part, size, opts, dtype, state: Path, bar) -> None:
    """First pass of --mean-tokens: each image's L1 at every length, scored as the commands score
    (the reconstruction clamped and rounded to 8 bits, against the model's input)."""
    from ..criteria import l1_error
    from ..eval.inputs import to_8bit

    device = next(tok.parameters()).device
    keys, errors = [], []
    batches, skipped = _batches(source, part, size, opts, bar)
    for batch_keys, images in batches:
        images = images.to(device)
        with torch.no_grad():
            recons = tok.rollout(images, dtype=dtype).reconstructions  # per length: [b, 3, S, S]
        errors += torch.stack([l1_error(images, to_8bit(r.float())) for r in recons], 1).tolist()  # [b, T]
        keys += batch_keys
        bar.update(len(batch_keys))
    _atomic_json(state / f"curves-{part:06d}.json", {"part": part, "keys": keys, "l1": errors,
                                                      "skipped": skipped})


def _allocate(curves: dict[int, dict], lengths: list[int], mean_tokens: float):
    """Every rank computes the same allocation from all parts' errors: {part: {keys, lengths}}."""
    from .budget import allocate, compare

    parts = sorted(curves)
    errors = np.array([e for p in parts for e in curves[p]["l1"]], dtype=np.float64).reshape(-1, len(lengths))
    if len(errors) == 0:
        raise AlitError("no readable images: nothing to allocate tokens to")
    choice = allocate(errors, lengths, mean_tokens)
    out, i = {}, 0
    for p in parts:
        n = len(curves[p]["keys"])
        out[p] = {"keys": curves[p]["keys"], "lengths": [lengths[k] for k in choice[i:i + n]]}
        i += n
    comparison = compare(errors, lengths, mean_tokens)
    comparison["l1"] = ("mean absolute error of the reconstruction clamped and rounded to 8 bits, "
                        "against the model's input (as every alit command scores it)")
    return out, comparison


# --- records and the index --------------------------------------------------------------------------------
def _records(state: Path, kind: str) -> dict[int, dict]:
    out = {}
    if state.is_dir():
        for f in state.glob(f"{kind}-*.json"):
            try:
                out[int(f.stem.split("-")[1])] = json.loads(f.read_text())
            except (ValueError, json.JSONDecodeError, OSError):
                continue  # a record is renamed into place whole; anything else is not one
    return out


def _wait(state: Path, kind: str, parts: int, show: bool) -> dict[int, dict]:
    """The records of every part, once all ranks have written theirs."""
    said = False
    while True:
        records = _records(state, kind)
        if len(records) >= parts:
            return records
        if show and not said:
            print(f"waiting for the other processes ({parts - len(records)} part(s) to go)", file=sys.stderr)
            said = True
        time.sleep(POLL_SECONDS)


def _index(tok, opts: Options, source: Source, records: dict, world: int, seconds: float,
           done_before: set) -> dict:
    config = tok.config
    written = sum(r["rows"] for r in records.values())
    tokens = sum(r["tokens"] for r in records.values())
    hist: dict[str, int] = {}
    for r in records.values():
        for L, c in r["histogram"].items():
            hist[L] = hist.get(L, 0) + c
    K = config.codebook_size if tok.quantizer is not None else None
    bits = math.log2(K) if K else None
    mean = tokens / written if written else 0.0
    this_run = sum(r["rows"] + len(r["skipped"]) for p, r in records.items() if p not in done_before)
    how = {"mode": opts.mode}
    if opts.mode == "criterion":
        how["criterion"] = repr(_criterion(opts.value, tok))
        how["spec"] = opts.value
    else:
        how[opts.mode] = opts.value
    return {
        "format": FORMAT, "version": VERSION,
        "model": {"fingerprint": tok.fingerprint(), "checkpoint": opts.checkpoint, "config": config.to_dict()},
        "tokens": how, "dtype": opts.dtype,
        "data": {"source": str(opts.data), "kind": source.kind, "parts": source.num_parts},
        "columns": {"key": "path relative to the data folder, or the WebDataset key", "num_tokens": "int16",
                    ("ids" if K else "latents"): (f"list of {ids_type(K)} (codebook of {K})" if K else
                                                  f"list of {config.latent_dim} float32 per token")},
        "parts": sorted(r["file"] for r in records.values() if r["file"]),
        "images_written": written, "images_skipped": sum(len(r["skipped"]) for r in records.values()),
        "total_tokens": tokens, "mean_tokens": mean,
        "length_histogram": {L: hist[L] for L in sorted(hist, key=int)},
        "bits_per_token": bits,
        "mean_bits_per_pixel": None if bits is None else mean * bits / config.image_size ** 2,
        "processes": world, "wall_time_s": seconds, "images_this_run": this_run,
        "images_per_second": this_run / seconds if seconds > 0 else None,
        "resumed": bool(done_before),
    }


# --- files written whole ----------------------------------------------------------------------------------
def _atomic_write(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text))


def _atomic_json(path: Path, obj) -> None:
    _atomic_write(path, json.dumps(obj, indent=1) + "\n")


class _Progress:
    """A tqdm bar with images/s and ETA on rank 0 (its own share of the parts); nothing elsewhere."""

    def __init__(self, source: Source, todo: list[int], rank: int, world: int, show: bool, what: str):
        self.bar = None
        if rank == 0 and show and todo:
            from tqdm import tqdm

            sizes = [source.part_images(p) for p in todo]
            total = None if None in sizes else sum(sizes)
            desc = what if world == 1 else f"{what} (rank 0 of {world})"
            self.bar = tqdm(total=total, unit="image", desc=desc, file=sys.stderr, dynamic_ncols=True)

    def update(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.close()
