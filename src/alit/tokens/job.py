"""`alit tokenize`: a data set into Parquet token files, on one process or many, resumable.

DIR/part-NNNNNN.parquet holds one row per image of part NNNNNN (`key`, `num_tokens`, and `ids` in
the smallest unsigned type that holds the codebook, or `latents` for a continuous model). Beside
them, once every part is written, DIR/_index.json (the model, how lengths were chosen, counts, the
histogram of lengths, bits per pixel, speed) and DIR/_skipped.jsonl (images that could not be read):
names that dataset readers skip (`layout.py`), so `pd.read_parquet(DIR)` reads the parts alone.

Work is coordinated through DIR alone: part p belongs to rank p mod world; a part is written to a
temporary file and renamed into place, then its record (rows, skipped images, token counts) is
written to DIR/_state/ the same way. A part with a record is done, so running the same command
again after a kill finishes the job (saying how much was done), with the same rows as an
uninterrupted run (the same parts, read in the same batches). Rank 0 waits for every record, then
writes the index.
With `--mean-tokens` a first pass records each image's error at every length, every rank reads all
of them and computes the same allocation (`budget.py`), and a second pass writes the tokens.

The model is fed as a training loop feeds it: DataLoader worker processes decode the images of all
this rank's parts ahead of it (`readers.read_parts`), and one background thread writes each
finished part (`writer.Writer`), so the model waits for neither.
"""
from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..criteria import EightBit, parse_criterion
from ..errors import AlitError
from ..files import atomic_write
from ..scoring import l1_error, to_8bit
from .budget import allocate, compare
from .layout import Layout, layout, part_name
from .readers import Chunk, Source, open_source, read_parts
from .report import Notes, progress, resuming, say, warn
from .table import FORMAT, VERSION, TableSpec, ids_type, part_table
from .writer import Writer, write_json, write_text

POLL_SECONDS = 0.5         # how often rank 0 looks for the records of other ranks


@dataclass
class Options:
    data: str
    out: str
    mode: str                       # "num_tokens", "criterion" or "mean_tokens"
    value: float | int | str        # the budget, the criterion spec, or the mean
    checkpoint: str = "default"
    batch_size: int = 32
    precision: str = "fp32"         # "fp32", "tf32", "bf16" or "fp16" (alit.precision)
    part_size: int = 256
    workers: int | None = None      # processes decoding images; 0: the main one; None: default_workers
    progress: bool = True
    views: int = 0                  # K random views of each image, keyed KEY#k (`views.py`); 0: none


def default_workers(world: int = 1) -> int:
    """Decoding processes per rank: up to 4, no more than this rank's share of the CPUs."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(4, cpus // world))


def tokenize(tok, opts: Options, *, rank: int = 0, world: int = 1, log=print, warn=warn) -> dict | None:
    """Write the parts of this rank; rank 0 also writes the index once all are done and returns it.
    `log` takes the line on a finished DIR, `warn` those about files and images (rank 0 the folder's,
    each rank its own images'); the resuming line and the progress bar go to stderr."""
    start = time.time()
    source = open_source(opts.data, opts.part_size, opts.views)  # a missing reader fails before DIR is made
    files = layout(opts.out)
    state = files.state
    _claim(files, _identity(tok, opts, source))
    if rank == 0 and files.index.is_file():
        log(f"{files.root}: already complete ({files.index})")
        return json.loads(files.index.read_text())
    done_before = _records(state, "part")
    if rank == 0:
        for line in source.warnings:
            warn(line)
        measured = 0 if done_before else len(list(state.glob("curves-*.json")))  # counted, not parsed: read later
        line = resuming(done_before, measured, source.num_parts)
        if line:
            say(line)
    reading = _Reading(source, tok, opts, world)
    mine = [p for p in range(source.num_parts) if p % world == rank]
    allocation = None
    if opts.mode == "mean_tokens":
        allocation = _mean_tokens_pass(tok, reading, mine, opts, rank, world, state)
    todo = [p for p in mine if p not in _records(state, "part")]
    notes = Notes(tok.config.image_size, warn)
    with progress(source, todo, rank, world, opts.progress, "tokens") as bar:
        _write_parts(tok, reading, todo, opts, allocation, files, bar, notes)
    notes.close()
    if rank != 0:
        return None
    records = _wait(state, "part", source.num_parts, opts.progress)
    index = _index(tok, opts, source, records, world, time.time() - start, set(done_before))
    if allocation is not None:
        index["mean_tokens_comparison"] = json.loads((state / "allocation.json").read_text())
    skipped = [s for p in sorted(records) for s in records[p]["skipped"]]
    write_text(files.skipped, "".join(json.dumps(s) + "\n" for s in skipped))
    write_json(files.index, index)
    return index


# --- the run's identity: a DIR holds one job ---------------------------------------------------------
def _identity(tok, opts: Options, source: Source) -> dict:
    views = {"views": opts.views} if opts.views else {}  # absent without views: older folders stay this job's
    return {**views, "format": FORMAT, "version": VERSION, "model": tok.fingerprint(),
            "tokens": {"mode": opts.mode, "value": opts.value}, "precision": opts.precision,
            "data": {"kind": source.kind, "identity": source.identity, "parts": source.num_parts},
            "part_size": opts.part_size if source.kind == "folder" else None}


def _claim(files: Layout, identity: dict) -> None:
    """Start or continue the job in `files.root`; AlitError if it holds another job or other files."""
    out = files.root
    path = files.state / "options.json"
    if path.is_file():
        try:
            theirs = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise AlitError(f"{out}: unreadable run options ({path}: {e})") from None
        if "dtype" in theirs and "precision" not in theirs:
            theirs["precision"] = theirs.pop("dtype")  # a DIR from before --precision: --dtype, same names
        diff = [k for k in dict.fromkeys([*identity, "views"]) if theirs.get(k) != identity.get(k)]
        if diff:
            what = {"model": "another model", "tokens": "other length options", "precision": "another --precision",
                    "views": "another --views", "data": "other data (or the data changed)", "part_size": "another --part-size"}
            named = ", ".join(what.get(k, k) for k in diff)
            raise AlitError(f"{out}: holds tokens made with {named}; use a new --out folder, or the "
                            f"same options to finish that run")
        return
    # another rank may have made the state folder already, and be writing options.json into it
    if out.exists() and (not out.is_dir() or any(e.name != files.state.name for e in out.iterdir())):
        raise AlitError(f"{out}: exists and is not an empty folder nor a token folder of `alit tokenize`; "
                        f"choose a new --out")
    try:
        files.state.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise AlitError(f"{out}: cannot create the output folder ({e.strerror or e})") from None
    write_json(path, identity)  # every rank writes the same text: whichever lands is right


def _criterion(spec: str, tok):
    """A pixel criterion judged on 8-bit reconstructions, as every command judges it."""
    return EightBit.of(parse_criterion(spec, tok))


# --- reading: chunks of images on the model's device ----------------------------------------------------
class _Reading:
    """How this rank reads its parts: `chunks(parts)` gives them on the model's device."""

    def __init__(self, source: Source, tok, opts: Options, world: int):
        self.source, self.opts = source, opts
        self.size = tok.config.image_size
        self.device = next(tok.parameters()).device
        self.workers = default_workers(world) if opts.workers is None else opts.workers

    def chunks(self, parts: list[int]) -> Iterator[Chunk]:
        """The batches of `parts`, each part's in order, `last` on a part's last one."""
        return read_parts(self.source, parts, self.size, self.opts.batch_size, self.workers, self.device)


@dataclass
class _Part:
    """What a part has given so far: rows of the images read, the images skipped."""
    part: int
    keys: list[str] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    values: list[np.ndarray] = field(default_factory=list)  # per image: ids [L] or latents [L, d]
    skipped: list[dict] = field(default_factory=list)
    notes: list[dict] = field(default_factory=list)  # images enlarged or animated (readers.Chunk.notes)
    started: float = field(default_factory=time.time)


# --- the tokens ------------------------------------------------------------------------------------------
def _write_parts(tok, reading: _Reading, todo: list[int], opts: Options, allocation, files: Layout, bar,
                 notes: Notes) -> None:
    """Encode the parts in `todo`; a background thread writes each one's Parquet file and record."""
    criterion = _criterion(opts.value, tok) if opts.mode == "criterion" else None
    spec = TableSpec.of(tok)
    parts: dict[int, _Part] = {}
    with Writer() as writer:
        for chunk in reading.chunks(todo):
            part = parts.setdefault(chunk.part, _Part(chunk.part))
            budgets = None if allocation is None else allocation[chunk.part]
            if chunk.keys:
                _encode_chunk(tok, chunk, part, opts, criterion, budgets)
            part.skipped += chunk.skipped
            part.notes += chunk.notes
            notes.add(chunk.notes)
            bar.update(len(chunk.keys) + len(chunk.skipped))
            if chunk.last:
                del parts[chunk.part]
                if budgets is not None and part.keys != budgets["keys"]:
                    raise _data_changed(chunk.part)
                record = _part_record(part, spec)
                writer.put(files.part(part.part), _save_part, spec, part, record, files)


def _encode_chunk(tok, chunk: Chunk, part: _Part, opts: Options, criterion, budgets) -> None:
    """The rows of a chunk's images, added to its part's."""
    device = chunk.images.device
    if budgets is not None:
        at = slice(len(part.keys), len(part.keys) + len(chunk.keys))
        if budgets["keys"][at] != chunk.keys:
            raise _data_changed(chunk.part)
        enc = tok.encode(chunk.images, num_tokens=torch.tensor(budgets["lengths"][at], device=device),
                         precision=opts.precision)
    elif opts.mode == "num_tokens":
        enc = tok.encode(chunk.images, num_tokens=int(opts.value), precision=opts.precision)
    else:
        enc = tok.encode(chunk.images, criterion=criterion, precision=opts.precision)
    n = enc.lengths.cpu()
    rows = (enc.ids if enc.ids is not None else enc.latents.float()).cpu()  # [b, Lmax(, d)]
    for j, key in enumerate(chunk.keys):
        part.keys.append(key)
        part.lengths.append(int(n[j]))
        part.values.append(rows[j, :int(n[j])].numpy())


def _data_changed(part: int) -> AlitError:
    return AlitError(f"part {part}: the images read now differ from those of the first pass "
                     f"(was the data changed during the run?)")


def _part_record(part: _Part, spec: TableSpec) -> dict:
    """The record that marks a part done: its rows, tokens, histogram of lengths, skipped images."""
    hist: dict[str, int] = {}
    for L in part.lengths:
        hist[str(L)] = hist.get(str(L), 0) + 1
    kinds = [n["kind"] for n in part.notes]
    return {"part": part.part, "file": part_name(part.part) if part.keys else None,
            "rows": len(part.keys), "tokens": int(sum(part.lengths)), "histogram": hist,
            "skipped": part.skipped, "enlarged": kinds.count("enlarged"), "animated": kinds.count("animated"),
            "seconds": time.time() - part.started, "codebook_size": spec.codebook_size}


def _save_part(spec: TableSpec, part: _Part, record: dict, files: Layout) -> None:
    """The part's Parquet file, then its record (on the writer thread): a record means a whole file."""
    import pyarrow.parquet as pq

    if record["file"]:
        table = part_table(spec, part.keys, part.lengths, part.values)
        atomic_write(files.root / record["file"], lambda tmp: pq.write_table(table, tmp))
    write_json(files.state / f"part-{part.part:06d}.json", record)


# --- --mean-tokens: errors at every length, then one allocation for all ----------------------------------
def _mean_tokens_pass(tok, reading: _Reading, mine: list[int], opts: Options, rank: int, world: int,
                      state: Path) -> dict[int, dict]:
    """Record this rank's errors, wait for every rank's, and compute the allocation all ranks share."""
    todo = [p for p in mine if p not in _records(state, "curves")]
    with progress(reading.source, todo, rank, world, opts.progress, "errors at every length") as bar:
        _write_curves(tok, reading, todo, opts, state, bar)
    curves = _wait(state, "curves", reading.source.num_parts, rank == 0 and opts.progress)
    allocation, comparison = _allocate(curves, tok.config.lengths, float(opts.value))
    if rank == 0:
        write_json(state / "allocation.json", comparison)
    return allocation


def _write_curves(tok, reading: _Reading, todo: list[int], opts: Options, state: Path, bar) -> None:
    """First pass of --mean-tokens: each image's L1 at every length, scored as the commands score
    (the reconstruction clamped and rounded to 8 bits, against the model's input)."""
    parts: dict[int, _Part] = {}
    errors: dict[int, list] = {}
    with Writer() as writer:
        for chunk in reading.chunks(todo):
            part = parts.setdefault(chunk.part, _Part(chunk.part))
            if chunk.keys:
                with torch.no_grad():
                    recons = tok.rollout(chunk.images, precision=opts.precision).reconstructions  # [b, 3, S, S] each
                l1 = torch.stack([l1_error(chunk.images, to_8bit(r.float())) for r in recons], 1)  # [b, T]
                errors.setdefault(chunk.part, []).extend(l1.tolist())
                part.keys += chunk.keys
            part.skipped += chunk.skipped
            bar.update(len(chunk.keys) + len(chunk.skipped))
            if chunk.last:
                del parts[chunk.part]
                record = {"part": part.part, "keys": part.keys, "l1": errors.pop(part.part, []),
                          "skipped": part.skipped}
                writer.put(state / f"curves-{part.part:06d}.json", write_json,
                           state / f"curves-{part.part:06d}.json", record)


def _allocate(curves: dict[int, dict], lengths: list[int], mean_tokens: float):
    """Every rank computes the same allocation from all parts' errors: {part: {keys, lengths}}."""
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
            say(f"waiting for the other processes ({parts - len(records)} part(s) to go)")
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
        "tokens": how, "precision": opts.precision,
        "data": {"source": str(opts.data), "kind": source.kind, "parts": source.num_parts,
                 **({"views": opts.views} if opts.views else {})},
        "columns": {"key": "path relative to the data folder, or the WebDataset key", "num_tokens": "int16",
                    ("ids" if K else "latents"): (f"list of {ids_type(K)} (codebook of {K})" if K else
                                                  f"list of {config.latent_dim} float32 per token")},
        "parts": sorted(r["file"] for r in records.values() if r["file"]),
        "images_written": written, "images_skipped": sum(len(r["skipped"]) for r in records.values()),
        # read, with a warning: smaller than the model's size, or animated (the first frame)
        "images_enlarged": sum(r.get("enlarged", 0) for r in records.values()),
        "images_animated": sum(r.get("animated", 0) for r in records.values()),
        "total_tokens": tokens, "mean_tokens": mean,
        "length_histogram": {L: hist[L] for L in sorted(hist, key=int)},
        "bits_per_token": bits,
        "mean_bits_per_pixel": None if bits is None else mean * bits / config.image_size ** 2,
        "processes": world, "wall_time_s": seconds, "images_this_run": this_run,
        "images_per_second": this_run / seconds if seconds > 0 else None,
        "resumed": bool(done_before),
    }
