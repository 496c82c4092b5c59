"""The page of `alit eval generator`: OUT/index.html with the figures of OUT/results.json, the
samples at every length and under "auto", and two plots (bits per token by length, the
histogram of lengths)."""
from __future__ import annotations

from pathlib import Path

from ..eval.report import Img, Page, pyplot, save_figure


def write_page(r: dict, out: Path) -> Path:
    c = r["generator"]["config"]
    bits, lengths, mem, fd = r["bits"], r["lengths"], r["memorisation"], r["fd"]
    page = Page("Generator evaluation")
    page.definitions([
        ("generator", f"{c['n_layer']} layers, {c['n_head']} heads, width {c['n_embd']}, "
                      f"{r['generator']['parameters']:,} parameters, classes: {len(c['classes']) or 'none'}"),
        ("tokenizer", f"fingerprint {r['tokenizer']}, {c['vocab_size']} codes, lengths {c['lengths']}"),
        ("held-out tokens", f"{r['heldout']['path']} ({r['heldout']['sequences']} sequences)"),
        ("training tokens", f"{r['train']['path']} ({r['train']['sequences']} sequences)"),
        ("seed", str(r["seed"]))])
    fd_text = f"{fd['value']:.2f}" if fd["value"] is not None else f"n/a: {fd['reason']}"
    page.heading("Summary").table(["measure", "value"], [
        ["held-out bits per token (all lengths)", bits["all"]["bits_per_token"]],
        ["unigram baseline, bits per token", bits["all"]["unigram_bits_per_token"]],
        ["held-out bits of the length token", bits["all"]["length_bits"]],
        [f"total variation, lengths of {lengths['num_samples']} auto samples vs the data", lengths["total_variation"]],
        ["exact copies of a training sequence", f"{mem['exact_copies']} of {mem['samples']}"],
        ["mean Hamming share to the nearest training sequence", mem["mean_nearest_hamming"]],
        [f"FD vs {fd['reference']}", fd_text]], text=(1,))
    every = r["samples"]["every_length"]
    rows = [[L, v["sequences"], v["bits_per_token"], v["unigram_bits_per_token"],
             v["unigram_bits_per_token"] - v["bits_per_token"], v["length_bits"]]
            for L, v in bits["per_length"].items()]
    page.heading("Held-out bits per token").table(
        ["tokens", "sequences", "generator", "unigram", "gain", "length token bits"], rows)
    page.figure(_bits_plot(bits, out), "bits per id at each length: the generator against the unigram baseline")
    page.figure(_lengths_plot(lengths, out), "lengths drawn under auto against the training data's")
    page.heading("Samples at every length")
    page.table(["tokens", "seconds per sample"] + [""] * len(next(iter(every.values()))["files"]),
               [[L, v["seconds_per_sample"]] + [Img(f, width=96) for f in v["files"]] for L, v in every.items()])
    auto = r["samples"]["auto"]
    page.heading("Samples under auto (the length drawn from p(L))")
    page.table([""] * len(auto["files"]), [[Img(f, f"{n} tokens", width=96) for f, n in zip(auto["files"],
                                                                                          auto["lengths"])]])
    return page.write(out / "index.html")


def _bits_plot(bits: dict, out: Path) -> str:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.4))
    Ls = list(bits["per_length"])
    ax.plot(Ls, [v["bits_per_token"] for v in bits["per_length"].values()], "o-", label="generator")
    ax.plot(Ls, [v["unigram_bits_per_token"] for v in bits["per_length"].values()], "s--", label="unigram")
    ax.set_xlabel("tokens")
    ax.set_ylabel("held-out bits per id")
    ax.legend()
    save_figure(fig, out / "bits.png")
    return "bits.png"


def _lengths_plot(lengths: dict, out: Path) -> str:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.4))
    Ls = [int(L) for L in lengths["data"]]
    total_data, total = sum(lengths["data"].values()), lengths["num_samples"]
    width = (Ls[1] - Ls[0]) * 0.4 if len(Ls) > 1 else 0.4
    ax.bar([L - width / 2 for L in Ls], [v / total_data for v in lengths["data"].values()], width, label="data")
    ax.bar([L + width / 2 for L in Ls], [v / total for v in lengths["sampled"].values()], width, label="auto samples")
    ax.set_xlabel("tokens")
    ax.set_ylabel("share")
    ax.set_title(f"total variation {lengths['total_variation']:.3f}")
    ax.legend()
    save_figure(fig, out / "lengths.png")
    return "lengths.png"
