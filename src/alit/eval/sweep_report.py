"""What `alit eval` writes (see `sweep`): results.json, results.csv, per_image.csv and index.html with
its rate-distortion, timing and token-histogram figures."""
from __future__ import annotations

import csv
import json
from pathlib import Path

from .report import Page, grid_of_axes, pyplot, save_figure

ADAPTIVE = "adaptive"
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
