"""`alit analyze`: how many tokens images get, against their complexity and their familiarity.

Tokens per image come from one rollout per batch and each rule given, judged as every command
judges it (`alit.criteria.EightBit`): the shortest length whose reconstruction, clamped and made
8-bit as the protocol makes it, passes the rule against the 8-bit input, the longest when none
does (`first_accepted`; the same choice as `tok.encode(images, criterion=EightBit(rule))`). A rule
is a number t, the paper's L1 < t (keyed "t" in the results), or a criterion `NAME:VALUE` such as
`ssim:0.47` (keyed by that text).

complexity: each image as the model was given it (see `inputs` for the protocol) is also scored by
  complexity proxies (no human ratings of these photos exist offline; SAVOIAS-style ratings can be
  given as a CSV):
    png_bpp       bits per pixel of the 8-bit image saved as PNG (Pillow, compression level 6)
    jpeg_bpp      bits per pixel as JPEG (Pillow, quality 75, 4:2:0)
    edge_density  fraction of pixels that scikit-image's Canny detector (sigma 1, default
                  thresholds) marks as edges, on the luma of the image
    rating        the user's score from --ratings (columns file,rating; matched by relative path,
                  file name or stem)
  and Spearman's rho and Kendall's tau-b (scipy, two-sided p-values) between tokens and each proxy.
familiarity: token counts of an in-distribution folder against another one; a two-sided
  Mann-Whitney U test (and a two-sample Kolmogorov-Smirnov test) of the difference.
"""
from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image

from ..criteria import EightBit, L1Below, first_accepted, parse_criterion
from ..errors import AlitError
from ..images import save_png
from ..progress import progress_bar
from .inputs import batches, image_names, image_paths, protocol
from .report import Page, grid_of_axes, save_figure

PROXIES = ("png_bpp", "jpeg_bpp", "edge_density")


def _stats():
    try:
        from scipy import stats
    except ImportError:
        raise AlitError("alit analyze needs scipy: pip install 'alit[eval]' (or scipy)") from None
    return stats


class Rule(NamedTuple):
    key: str        # in the results: "0.07" for the L1 threshold 0.07, else the criterion's text
    label: str      # in tables and titles: "L1 < 0.07", "ssim:0.47"
    criterion: object


def rule(item: float | str) -> Rule:
    """One entry of `rules`: a number t is the paper's L1 < t, a string NAME:VALUE any criterion."""
    if isinstance(item, str):
        return Rule(item, item, parse_criterion(item))
    return Rule(f"{item:g}", f"L1 < {item:g}", L1Below(item))


@torch.no_grad()
def token_counts(tok, images: torch.Tensor, rules: list[float | str], truncate: bool = False) -> torch.Tensor:
    """Tokens per image [B, len(rules)] under each rule (a number t: L1 < t; or `NAME:VALUE`) on 8-bit
    reconstructions (truncated instead of rounded with `truncate`, as the center-crop protocol makes
    them)."""
    roll = tok.rollout(images)  # every length, raw reconstructions
    lengths = torch.tensor(tok.config.lengths)
    return torch.stack([lengths[first_accepted(EightBit.of(rule(r).criterion, truncate), images, roll).cpu()]
                        for r in rules], 1)


def complexity_proxies(image: torch.Tensor) -> dict[str, float | None]:
    """PNG and JPEG bits per pixel and Canny edge density of one image [3, S, S] on the 8-bit grid."""
    pixels = (image.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()  # [S, S, 3]
    n = pixels.shape[0] * pixels.shape[1]
    pil = Image.fromarray(pixels)
    out = {}
    for name, kwargs in (("png_bpp", dict(format="PNG", compress_level=6)),
                         ("jpeg_bpp", dict(format="JPEG", quality=75, subsampling="4:2:0"))):
        buffer = io.BytesIO()
        pil.save(buffer, **kwargs)
        out[name] = 8 * len(buffer.getvalue()) / n
    try:
        from skimage.feature import canny
    except ImportError:
        out["edge_density"] = None
    else:
        luma = np.asarray(pil.convert("L"), dtype=np.float64) / 255.0
        out["edge_density"] = float(canny(luma, sigma=1.0).mean())
    return out


def correlation(x: list[float], y: list[float]) -> dict:
    """Spearman and Kendall (tau-b) between x and y, with two-sided p-values; reason when undefined."""
    stats = _stats()
    pairs = [(a, b) for a, b in zip(x, y) if a is not None and b is not None]
    result = {"n": len(pairs), "spearman": None, "spearman_p": None, "kendall": None, "kendall_p": None}
    if len(pairs) < 3:
        result["reason"] = f"needs at least 3 images with both values, got {len(pairs)}"
        return result
    a, b = (np.array(v, dtype=np.float64) for v in zip(*pairs))
    for why, values in (("every image got the same number of tokens", a), ("the proxy is constant", b)):
        if np.ptp(values) == 0:
            result["reason"] = f"{why}: no rank correlation"
            return result
    rho = stats.spearmanr(a, b)
    tau = stats.kendalltau(a, b)
    result.update(spearman=float(rho.statistic), spearman_p=float(rho.pvalue),
                  kendall=float(tau.statistic), kendall_p=float(tau.pvalue))
    return result


def read_ratings(path: str | Path) -> dict[str, float]:
    """A CSV of human ratings: a header naming a file column (file/image/name/path, else the first)
    and a rating column (rating/score/complexity, else the second) -> {file: rating}."""
    path = Path(path)
    try:
        with open(path, newline="") as f:
            rows = list(csv.reader(f))
    except OSError as e:
        raise AlitError(f"{path}: cannot read the ratings ({e.strerror or e})") from None
    if len(rows) < 2 or len(rows[0]) < 2:
        raise AlitError(f"{path}: expected a header and rows of at least two columns (file,rating)")
    header = [h.strip().lower() for h in rows[0]]
    fcol = next((i for i, h in enumerate(header) if h in ("file", "image", "name", "path", "filename")), 0)
    rcol = next((i for i, h in enumerate(header) if h in ("rating", "score", "complexity", "mean")),
                1 if fcol == 0 else 0)
    ratings = {}
    for line, row in enumerate(rows[1:], start=2):
        if not any(c.strip() for c in row):
            continue
        try:
            ratings[row[fcol].strip()] = float(row[rcol])
        except (ValueError, IndexError):
            raise AlitError(f"{path}:{line}: expected a file name and a number, got {row}") from None
    return ratings


def _match_rating(name: str, ratings: dict[str, float]) -> float | None:
    p = Path(name)
    for key in (name, p.name, p.stem):
        if key in ratings:
            return ratings[key]
    return None


def analyze_complexity(tok, data: str | Path, thresholds: list[float | str], out: str | Path,
                       ratings: str | Path | None = None, protocol_name: str = "resize-crop",
                       batch_size: int = 8, limit: int | None = None, log=None, progress: bool = True) -> dict:
    """Tokens per image under each rule (`thresholds`: numbers t for L1 < t, or `NAME:VALUE`
    criteria) against complexity proxies; writes complexity.json, complexity.csv, figures and
    index.html to `out`. Returns the results dict. progress: a bar on stderr when it is a terminal."""
    rules = [rule(t) for t in thresholds]
    log = log or (lambda line: print(line, file=sys.stderr))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _stats()  # fail early without scipy
    proto = protocol(protocol_name)
    paths = image_paths([data], "alit analyze", limit, log)
    rated = read_ratings(ratings) if ratings else None
    records, thumbs, failed = [], {}, []
    with progress_bar(len(paths), "alit analyze complexity", progress) as bar:
        for batch in batches(paths, tok.config.image_size, proto, batch_size, on_error=failed.append, bar=bar):
            images = batch.images.to(next(tok.parameters()).device)
            tokens = token_counts(tok, images, thresholds, proto.truncate).tolist()
            for name, image, counts in zip(image_names(batch.paths, Path(data)), batch.images, tokens):
                record = {"file": name, "tokens": {r.key: n for r, n in zip(rules, counts)}}
                record.update(complexity_proxies(image))
                if rated is not None:
                    record["rating"] = _match_rating(name, rated)
                records.append(record)
                thumbs[name] = image
    for line in failed:
        log(f"alit analyze: skipped: {line}")
    if not records:
        raise AlitError(f"{data}: none of the {len(paths)} image file(s) could be read")
    proxies = list(PROXIES) + (["rating"] if rated is not None else [])
    table = {}
    for one in rules:
        ys = [r["tokens"][one.key] for r in records]
        table[one.key] = {p: correlation(ys, [r.get(p) for r in records]) for p in proxies}
    notes = []
    if any(r["edge_density"] is None for r in records):
        notes.append("edge_density not computed: needs scikit-image (pip install 'alit[eval]')")
    if rated is not None:
        unmatched = sum(r["rating"] is None for r in records)
        notes.append(f"ratings: {len(records) - unmatched} of {len(records)} images matched a row of {ratings}")
    results = {
        "data": {"path": str(data), "images": len(records), "unreadable": len(failed)},
        "protocol": proto.name, "image_size": tok.config.image_size, "thresholds": thresholds,
        "lengths": tok.config.lengths, "model": {"fingerprint": tok.fingerprint()},
        "mean_tokens": {one.key: float(np.mean([r["tokens"][one.key] for r in records])) for one in rules},
        "labels": {one.key: one.label for one in rules},
        "correlations": table, "notes": notes, "images": records,
    }
    (out / "complexity.json").write_text(json.dumps(results, indent=1) + "\n")
    with open(out / "complexity.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file"] + [f"tokens@{one.key}" for one in rules] + proxies)
        for r in records:
            w.writerow([r["file"]] + [r["tokens"][one.key] for one in rules]
                       + ["" if r.get(p) is None else f"{r[p]:.6g}" for p in proxies])
    _scatter(records, rules, proxies, table, tok.config.lengths, out / "scatter.png")
    _complexity_page(results, proxies, thumbs, out).write(out / "index.html")
    return results


def _scatter(records, rules, proxies, table, lengths, path: Path) -> None:
    labels = {"png_bpp": "PNG bits per pixel", "jpeg_bpp": "JPEG bits per pixel (q75)",
              "edge_density": "Canny edge density", "rating": "human rating"}
    fig, axes = grid_of_axes(len(rules) * len(proxies), columns=len(proxies), size=(4.0, 3.2))
    rng = np.random.default_rng(0)
    for i, one in enumerate(rules):
        key = one.key
        for j, p in enumerate(proxies):
            ax = axes[i * len(proxies) + j]
            pts = [(r[p], r["tokens"][key]) for r in records if r.get(p) is not None]
            if pts:
                x, y = map(np.array, zip(*pts))
                ax.scatter(x, y + rng.uniform(-0.8, 0.8, len(y)), s=14, alpha=0.7)  # jitter: tokens are discrete
            c = table[key][p]
            stat = (f"rho={c['spearman']:.2f}  tau={c['kendall']:.2f}" if c["spearman"] is not None
                    else "n/a")
            ax.set_title(f"{one.label}: {stat}", fontsize=9)
            ax.set_xlabel(labels[p], fontsize=9)
            ax.set_ylabel("tokens", fontsize=9)
            ax.set_yticks(lengths if len(lengths) <= 10 else lengths[::2])
            step = lengths[0]
            ax.set_ylim(lengths[0] - step / 2, lengths[-1] + step / 2)
            ax.grid(alpha=0.3)
    save_figure(fig, path)


def _complexity_page(results, proxies, thumbs, out: Path) -> Page:
    page = Page("alit analyze complexity")
    page.definitions([("data", f"{results['data']['path']}: {results['data']['images']} images"),
                      ("protocol", f"{results['protocol']} at {results['image_size']} px"),
                      ("token rule", "the shortest length whose 8-bit reconstruction passes the rule, the "
                                     f"longest when none does (lengths {results['lengths']})")])
    labels = results["labels"]
    page.heading("Correlations of tokens with complexity")
    rows = []
    for key, per in results["correlations"].items():
        for p in proxies:
            c = per[p]
            rows.append([labels[key], p, c["n"], c["spearman"], c["spearman_p"], c["kendall"], c["kendall_p"],
                         c.get("reason", "")])
    page.table(["rule", "proxy", "n", "Spearman rho", "p", "Kendall tau", "p", "note"], rows, left=2, text=(7,))
    page.table(["rule", "mean tokens"], [[labels[k], v] for k, v in results["mean_tokens"].items()])
    page.notes(results["notes"] + ["Proxies are measured on the image as the model was given it. PNG/JPEG bits "
                                   "per pixel and edge density stand in for human complexity ratings, which "
                                   "are not available offline."])
    page.figure("scatter.png", "Tokens (jittered) against each proxy, one row per rule")
    key = next(iter(results["mean_tokens"]))
    ordered = sorted(results["images"], key=lambda r: (r["tokens"][key], r["png_bpp"]))
    (out / "thumbs").mkdir(exist_ok=True)
    k = min(6, len(ordered) // 2) or len(ordered)
    for title, group in (("Fewest tokens", ordered[:k]), ("Most tokens", ordered[::-1][:k])):
        page.heading(f"{title} ({labels[key]})")
        for r in group:
            src = f"thumbs/{_slug(r['file'])}.png"
            save_png(thumbs[r["file"]], out / src)
            page.figure(src, f"{r['file']}: {r['tokens'][key]} tokens, PNG {r['png_bpp']:.2f} bpp", width=128)
    return page


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:120]


def analyze_familiarity(tok, data: str | Path, other: str | Path, thresholds: list[float | str], out: str | Path,
                        protocol_name: str = "resize-crop", batch_size: int = 8, limit: int | None = None,
                        log=None, progress: bool = True) -> dict:
    """Token counts of `data` (in distribution) against `other` under each rule (`thresholds`:
    numbers t for L1 < t, or `NAME:VALUE` criteria), with a test of the difference. progress: a
    bar per folder on stderr when it is a terminal."""
    rules = [rule(t) for t in thresholds]
    log = log or (lambda line: print(line, file=sys.stderr))
    stats = _stats()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    proto = protocol(protocol_name)
    sets = {label: {"path": str(folder), "tokens": _folder_counts(tok, folder, thresholds, proto, batch_size,
                                                                   limit, log, (f"alit analyze familiarity: {label}",
                                                                                progress))}
            for label, folder in (("in_distribution", data), ("other", other))}
    tests = {one.key: _difference([c[i] for c in sets["in_distribution"]["tokens"]],
                                  [c[i] for c in sets["other"]["tokens"]], stats)
             for i, one in enumerate(rules)}
    results = {"thresholds": thresholds, "labels": {one.key: one.label for one in rules},
               "lengths": tok.config.lengths, "protocol": proto.name,
               "model": {"fingerprint": tok.fingerprint()},
               "sets": {k: {"path": v["path"], "images": len(v["tokens"])} for k, v in sets.items()},
               "tests": tests}
    (out / "familiarity.json").write_text(json.dumps(results, indent=1) + "\n")
    _familiarity_plot(results, out / "histograms.png")
    page = Page("alit analyze familiarity")
    page.definitions([("in distribution", f"{data}: {results['sets']['in_distribution']['images']} images"),
                      ("other", f"{other}: {results['sets']['other']['images']} images"),
                      ("protocol", proto.name),
                      ("test", "two-sided Mann-Whitney U of the token counts (other vs in distribution), and a "
                               "two-sample Kolmogorov-Smirnov test")])
    labels = results["labels"]
    page.table(["rule", "mean tokens (in)", "mean tokens (other)", "P(other needs more)", "Mann-Whitney p",
                "KS", "KS p"],
               [[labels[k], e["mean_in_distribution"], e["mean_other"], e.get("prob_other_needs_more"),
                 e["mann_whitney_p"], e["ks"], e["ks_p"]] for k, e in tests.items()])
    page.notes([f"{labels[k]}: {e['reason']}" for k, e in tests.items() if "reason" in e])
    page.figure("histograms.png", "Tokens per image in each set, one panel per rule")
    page.write(out / "index.html")
    return results


def _folder_counts(tok, folder, thresholds: list[float | str], proto, batch_size: int, limit: int | None,
                   log, bar: tuple[str, bool]) -> list[list[int]]:
    """Tokens per image of a folder under each rule, [n, len(thresholds)]; bar: (its text, whether shown)."""
    counts, failed = [], []
    paths = image_paths([folder], "alit analyze", limit, log)
    with progress_bar(len(paths), *bar) as shown:
        for batch in batches(paths, tok.config.image_size, proto, batch_size, on_error=failed.append, bar=shown):
            counts += token_counts(tok, batch.images.to(next(tok.parameters()).device), thresholds,
                                   proto.truncate).tolist()
    for line in failed:
        log(f"alit analyze: skipped: {line}")
    if not counts:
        raise AlitError(f"{folder}: no image could be read")
    return counts


def _difference(a: list[int], b: list[int], stats) -> dict:
    """How the token counts of `b` (other) differ from those of `a` (in distribution), with tests."""
    entry = {"mean_in_distribution": float(np.mean(a)), "mean_other": float(np.mean(b)),
             "median_in_distribution": float(np.median(a)), "median_other": float(np.median(b)),
             "n_in_distribution": len(a), "n_other": len(b),
             "histogram_in_distribution": _hist(a), "histogram_other": _hist(b)}
    if len(set(a) | set(b)) == 1:
        entry.update(mann_whitney_u=None, mann_whitney_p=None, ks=None, ks_p=None,
                     reason="every image of both sets got the same number of tokens")
    else:
        u = stats.mannwhitneyu(b, a, alternative="two-sided")
        ks = stats.ks_2samp(b, a)
        entry.update(mann_whitney_u=float(u.statistic), mann_whitney_p=float(u.pvalue),
                     # P(an image of `other` needs more tokens than one of `data`), ties count half
                     prob_other_needs_more=float(u.statistic) / (len(a) * len(b)),
                     ks=float(ks.statistic), ks_p=float(ks.pvalue))
    return entry


def _hist(values: list[int]) -> dict[str, int]:
    h: dict[str, int] = {}
    for v in sorted(values):
        h[str(v)] = h.get(str(v), 0) + 1
    return h


def _familiarity_plot(results, path: Path) -> None:
    lengths = results["lengths"]
    fig, axes = grid_of_axes(len(results["tests"]), columns=2, size=(5.0, 3.4))
    width = 0.4
    for ax, (key, e) in zip(axes, results["tests"].items()):
        xs = np.arange(len(lengths))
        for k, (label, hist) in enumerate((("in distribution", e["histogram_in_distribution"]),
                                           ("other", e["histogram_other"]))):
            n = sum(hist.values())
            ax.bar(xs + (k - 0.5) * width, [hist.get(str(L), 0) / n for L in lengths], width, label=label)
        ax.set_xticks(xs, [str(L) for L in lengths], fontsize=8)
        p = e["mann_whitney_p"]
        ax.set_title(results["labels"][key] + (f": Mann-Whitney p={p:.2g}" if p is not None else ""), fontsize=10)
        ax.set_xlabel("tokens")
        ax.set_ylabel("fraction of images")
        ax.legend(fontsize=8)
    save_figure(fig, path)
