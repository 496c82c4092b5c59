"""`alit demo`: a model on the held-out photos bundled with the package, in one folder.

The photos (assets/demo_photos: the 48 held-out photos of `alit data photos`, 128 px on the shorter
side, made by benchmarks/make_demo_photos.py) are prepared as `alit eval` prepares them under
resize-crop: shorter side to the model's size S, centre crop, 8-bit. One rollout per batch gives
every length; each reconstruction is clamped and rounded to 8 bits and scored against the input in
float64, as `alit eval` scores it (L1, PSNR, SSIM). The criterion judges those same 8-bit reconstructions,
so `chosen_tokens` is the shortest length whose written l1 / psnr / ssim passes it (the longest when none
does); `alit reconstruct` and `encode` judge the raw reconstruction instead, which can differ only
for an image within a rounding of the threshold. Complexity is the PNG bits per pixel of the image
the model was given (`analysis.complexity_proxies`).

Writes to OUT:
  summary.json  {"model", "criterion", "protocol", "mean_l1", "mean_psnr", "mean_ssim", "base": {"l1", "psnr", "ssim"} (the
                model's base decoder on its own encoder's code of each photo, scored alike), "mean_chosen_tokens",
                "spearman_chosen_vs_png_bpp": {"rho", "p", "n"}, "images": [{"file", "chosen_tokens",
                "l1": {"8": ..}, "psnr": {"8": ..}, "ssim": {"8": ..}, "base_l1", "base_psnr", "base_ssim", "png_bpp"},
                ...]}; l1 / psnr / ssim keyed by length
  index.html    every photo at every length (the chosen one framed), L1 and SSIM against tokens, and
                chosen tokens against PNG bits per pixel
  images/<stem>/input.png, len008.png, ..., base.png   the PNGs the page shows; l1.png, ssim.png, scatter.png

The base is no ceiling inside a model whose stage 2 trained everything (`alit train finetune`, the
bundled model): stage 2 retrains the base decoder for the codes ALIT predicts, whose per-channel
means differ from its encoder's, so on its encoder's own code it now draws darker, redder pictures
(the bundled model: mean RGB 0.44 / 0.38 / 0.37 against 0.51 / 0.50 / 0.45 for the photos) that
score below every length. The page says so, with what the base scored before stage 2 where that
is known (BEFORE_STAGE_2, by the model's fingerprint).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from .criteria import L1Below, SSIMAbove, first_accepted, needs_pixels, parse_criterion
from .errors import AlitError
from .eval.analysis import complexity_proxies, correlation
from .eval.inputs import batches, image_paths, protocol
from .eval.report import Img, Page, pyplot, save_figure
from .images import save_png
from .progress import progress_bar
from .scoring import pixel_metrics, ssim, table_dtype

PHOTOS = Path(__file__).parent / "assets" / "demo_photos"
# the base as it was trained, before stage 2 retrained its decoder, on these photos (L1, PSNR):
# the bundled model's, from `benchmarks/base_quality.py` on its base run (default_model_log.md, section 22)
BEFORE_STAGE_2 = {"d0845fb820deb8da": (0.0633, 21.49)}
# the gallery fits a 1280-px window: the page's 1248 px, less the photo column, over the image columns
GALLERY_PX, LABEL_PX, CELL_PX = 1248, 170, 20


def run_demo(tok, out: str | Path, criterion: str | None = None, batch_size: int = 16,
             checkpoint: str = "default", progress: bool = True) -> dict:
    """Score `tok` on the bundled photos and write OUT/summary.json, OUT/index.html and their images.
    `criterion` (NAME:VALUE) defaults to the model's own. `checkpoint` names the model in the summary.
    progress: a bar on stderr when it is a terminal (`alit.progress`). Returns the summary (the
    content of summary.json)."""
    criterion = criterion or tok.config.criterion
    rule = parse_criterion(criterion)
    try:
        paths = image_paths([PHOTOS], "alit demo", log=lambda line: None)  # its SOURCES.txt is no photo
    except AlitError as e:
        raise AlitError(f"the demo photos are missing from this install ({e}); reinstall alit") from None
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    proto = protocol("resize-crop")
    records = []
    with progress_bar(len(paths), "alit demo", progress) as bar:
        for batch in batches(paths, tok.config.image_size, proto, batch_size, bar=bar):
            records += _score(tok, rule, proto, batch, out)

    lengths = [str(L) for L in tok.config.lengths]
    chosen = [r["chosen_tokens"] for r in records]
    rank = correlation(chosen, [r["png_bpp"] for r in records])
    spearman = {"rho": rank["spearman"], "p": rank["spearman_p"], "n": rank["n"]}
    if "reason" in rank:
        spearman["reason"] = rank["reason"]
    summary = {
        "model": {"checkpoint": str(checkpoint), "fingerprint": tok.fingerprint(),
                  "image_size": tok.config.image_size, "lengths": tok.config.lengths},
        "criterion": criterion,
        "protocol": proto.description,
        "mean_l1": {L: float(np.mean([r["l1"][L] for r in records])) for L in lengths},
        "mean_psnr": {L: float(np.mean([r["psnr"][L] for r in records])) for L in lengths},
        "mean_ssim": {L: float(np.mean([r["ssim"][L] for r in records])) for L in lengths},
        "base": {m: float(np.mean([r[f"base_{m}"] for r in records])) for m in ("l1", "psnr", "ssim")},
        "mean_chosen_tokens": float(np.mean(chosen)),
        "spearman_chosen_vs_png_bpp": spearman,
        "images": records,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    base_rule = getattr(rule, "rule", rule)  # a Stalled rule's threshold is its rule's
    _error_plot(summary, out / "l1.png", "l1", base_rule.threshold if isinstance(base_rule, L1Below) else None)
    _error_plot(summary, out / "ssim.png", "ssim", base_rule.s if isinstance(base_rule, SSIMAbove) else None)
    _complexity_plot(summary, out / "scatter.png")
    _page(summary).write(out / "index.html")
    return summary


@torch.no_grad()
def _score(tok, rule, proto, batch, out: Path) -> list[dict]:
    """One record per photo of the batch; writes its input and reconstructions under out/images."""
    lengths = tok.config.lengths
    images = batch.images.to(next(tok.parameters()).device)  # [b, 3, S, S] on the 8-bit grid
    roll = tok.rollout(images)
    # float64, as `alit eval` scores: the rule then sees exactly the numbers written to summary.json
    wide = table_dtype(images.device)  # float64; MPS has none: float32 there
    inputs = images.to(wide)
    recons = [proto.finish(r).to(wide) for r in roll.reconstructions]  # per length: [b, 3, S, S], 8-bit
    chosen = first_accepted(rule, inputs, recons if needs_pixels(rule) else roll).tolist()  # [b] length index
    scores = [{**pixel_metrics(inputs, r), "ssim": ssim(inputs, r)} for r in recons]  # per length: {"l1": [b], ...}
    # the base decoder on its encoder's own code of the photo (what stage 1 learns to predict)
    base_recons = proto.finish(tok.codes_to_images(roll.targets.codes)).to(wide)  # [b, 3, S, S], 8-bit
    base = {**pixel_metrics(inputs, base_recons), "ssim": ssim(inputs, base_recons)}
    records = []
    for j, path in enumerate(batch.paths):
        folder = out / "images" / path.stem
        folder.mkdir(exist_ok=True)
        save_png(batch.images[j], folder / "input.png")
        for i, L in enumerate(lengths):
            save_png(recons[i][j], folder / f"len{L:03d}.png")
        save_png(base_recons[j], folder / "base.png")
        records.append({"file": path.name, "chosen_tokens": lengths[chosen[j]],
                        **{m: {str(L): float(s[m][j]) for L, s in zip(lengths, scores)} for m in ("l1", "psnr", "ssim")},
                        **{f"base_{m}": float(base[m][j]) for m in ("l1", "psnr", "ssim")},
                        "png_bpp": complexity_proxies(batch.images[j])["png_bpp"]})
    return records


def _error_plot(summary: dict, path: Path, metric: str, threshold: float | None) -> None:
    """Each photo's `metric` (l1 or ssim) against tokens (thin) and the mean (bold); the rule's
    threshold, when the rule judges that metric (dashed)."""
    lengths = summary["model"]["lengths"]
    fig, ax = pyplot().subplots(figsize=(5.6, 3.8))
    for r in summary["images"]:
        ax.plot(lengths, list(r[metric].values()), color="0.75", lw=0.8)
    ax.plot(lengths, list(summary[f"mean_{metric}"].values()), "o-", color="C0", lw=2.2, label="mean over photos")
    ax.axhline(summary["base"][metric], color="0.3", ls=":", lw=1.2,
               label=f"base decoder on its own code ({summary['base'][metric]:.3f})")
    if threshold is not None:
        ax.axhline(threshold, color="C3", ls="--", lw=1, label=f"criterion {summary['criterion']}")
    ax.set_xticks(lengths)
    ax.set_xlabel("tokens")
    ax.set_ylabel(f"{'L1' if metric == 'l1' else 'SSIM'} (8-bit reconstruction)")
    ax.set_title(f"{'Reconstruction error' if metric == 'l1' else 'Structural similarity'} of "
                 f"{len(summary['images'])} held-out photos")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(fig, path)


def _complexity_plot(summary: dict, path: Path) -> None:
    """Chosen tokens against PNG bits per pixel, with Spearman's rho in the title."""
    lengths = summary["model"]["lengths"]
    x = np.array([r["png_bpp"] for r in summary["images"]])
    y = np.array([r["chosen_tokens"] for r in summary["images"]], dtype=float)
    jitter = np.random.default_rng(0).uniform(-0.12, 0.12, len(y)) * lengths[0]  # tokens are discrete
    fig, ax = pyplot().subplots(figsize=(5.6, 3.8))
    ax.scatter(x, y + jitter, s=18, alpha=0.75)
    rank = summary["spearman_chosen_vs_png_bpp"]
    stat = f"rho = {rank['rho']:.2f} (p = {rank['p']:.2g})" if rank["rho"] is not None else "rho n/a"
    ax.set_title(f"Chosen tokens against complexity: Spearman {stat}", fontsize=10)
    ax.set_xlabel("PNG bits per pixel of the model's input")
    ax.set_ylabel(f"chosen tokens ({summary['criterion']})")
    ax.set_yticks(lengths if len(lengths) <= 10 else lengths[::2])
    ax.set_ylim(lengths[0] - lengths[0] / 2, lengths[-1] + lengths[0] / 2)
    ax.grid(alpha=0.3)
    save_figure(fig, path)


def _page(summary: dict) -> Page:
    model, records, rank = summary["model"], summary["images"], summary["spearman_chosen_vs_png_bpp"]
    lengths, base = model["lengths"], summary["base"]
    page = Page("alit demo")
    page.paragraph("alit encodes an image into a sequence of 1D tokens whose length adapts to the image (more "
                   "tokens for a more complex one) and decodes them back. This page runs one model on photos "
                   "it never trained on: how the error falls as tokens are added, the length its rule chooses "
                   "for each photo, and every photo reconstructed at every length.")
    page.definitions([
        ("model", f"{model['checkpoint']} (fingerprint {model['fingerprint']}), {model['image_size']} px, "
                  f"lengths {', '.join(map(str, lengths))}"),
        ("photos", f"{len(records)} held-out photos bundled with alit (never trained on)"),
        ("preprocessing", summary["protocol"]),
        ("length rule", f"{summary['criterion']}: the shortest length whose 8-bit reconstruction passes it"
                        + (" or whose block of tokens gained less than the gain" if "+gain:" in summary["criterion"] else "")
                        + ", the longest when none does"),
        ("base decoder (inside the model, retrained in stage 2)",
         f"L1 {base['l1']:.4f}, PSNR {base['psnr']:.2f} dB, SSIM {base['ssim']:.3f}: "
         + base_note(model["fingerprint"])),
        ("mean chosen tokens", f"{summary['mean_chosen_tokens']:.1f}"),
        ("Spearman rho, chosen tokens vs PNG bits per pixel",
         f"{rank['rho']:.3f} (p = {rank['p']:.2g}, n = {rank['n']})" if rank["rho"] is not None
         else f"n/a: {rank['reason']}")])
    page.heading("Error against tokens")
    counts = [sum(r["chosen_tokens"] == L for r in records) for L in lengths]
    page.table(["tokens", "mean L1", "mean PSNR (dB)", "mean SSIM", "photos choosing it"],
               [[L, summary["mean_l1"][str(L)], summary["mean_psnr"][str(L)], summary["mean_ssim"][str(L)], n]
                for L, n in zip(lengths, counts)]
               + [["base decoder", base["l1"], base["psnr"], base["ssim"], "-"]])
    page.figure("l1.png", "L1 of each photo (grey) and the mean (blue) at every length")
    page.figure("ssim.png", "SSIM of each photo (grey) and the mean (blue) at every length")
    page.figure("scatter.png", "Chosen tokens (jittered) against PNG bits per pixel of the image the model was given")
    _gallery(page, summary)
    return page


def base_note(fingerprint: str) -> str:
    """What the base column is, and what it scored before stage 2 where that is known."""
    text = ("the model's base decoder on its own encoder's code of each photo, scored as every length is. "
            "No ceiling here: stage 2 (alit train finetune) retrains this decoder for the codes ALIT "
            "predicts, so on its encoder's own code it draws darker, redder pictures and scores worse than "
            "it did as trained (a model without stage 2 keeps its base as trained)")
    if fingerprint in BEFORE_STAGE_2:
        l1, psnr = BEFORE_STAGE_2[fingerprint]
        text += (f". Before stage 2 this model's base scored L1 {l1:.4f}, PSNR {psnr:.2f} dB on these photos "
                 "(measured when it was trained; see the README)")
    return text


def _gallery(page: Page, summary: dict) -> None:
    """Every photo at every length and the base decoder's, in a table that fits a 1280-px window."""
    records, lengths = summary["images"], summary["model"]["lengths"]
    page.heading("Every photo at every length")
    shown = "ssim" if summary["criterion"].lower().startswith("ssim") else "l1"  # the rule's own metric
    page.paragraph(f"Framed: the chosen length. Under each reconstruction: its {shown.upper()}. Fewest tokens "
                   "first; click an image for its PNG. The last column is the base decoder (see above).", cls="muted")
    columns = len(lengths) + 2  # the input, every length, the base
    width = max(40, min(2 * summary["model"]["image_size"], 96, (GALLERY_PX - LABEL_PX) // columns - CELL_PX))
    rows = []
    for r in sorted(records, key=lambda r: (r["chosen_tokens"], r["png_bpp"])):
        stem = Path(r["file"]).stem
        row = [f"{r['file']}: {r['chosen_tokens']} tokens, PNG {r['png_bpp']:.2f} bpp",
               Img(f"images/{stem}/input.png", width=width)]
        row += [Img(f"images/{stem}/len{L:03d}.png", f"{r[shown][str(L)]:.3f}", width, r["chosen_tokens"] == L)
                for L in lengths]
        row.append(Img(f"images/{stem}/base.png", f"{r[f'base_{shown}']:.3f}", width, False))
        rows.append(row)
    page.table(["photo", "input"] + [f"{L} tokens" for L in lengths] + ["base decoder"], rows, cls="gallery")
