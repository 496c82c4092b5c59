"""Sampling time of the generator at the shortest and the longest length, with and without the KV cache.

A generator of random weights (the time does not depend on what the weights are) over the bundled
tokenizer's ids (its codebook and lengths), for each preset: seconds per sample at each length, the
same batch throughout, the median of `--repeats` runs with the cache and one without. Two figures:
longest / shortest with the cache (the cost follows the length; the goal is at least 4x for 8x the
tokens) and no cache / cache at each length (what the cache saves).

    python benchmarks/generator_speed.py --out benchmarks/results/generator_speed.md
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

import torch

from alit.config import ModelConfig
from alit.generator import Generator, generator_config, load_generator
from alit.weights import DEFAULT_MODEL, read_meta


def seconds_per_sample(gen: Generator, L: int, batch: int, use_cache: bool, repeats: int) -> float:
    gen.generate(batch, num_tokens=L, seed=0, batch_size=batch, use_cache=use_cache)  # warm-up
    times = []
    for r in range(repeats):
        start = time.perf_counter()
        gen.generate(batch, num_tokens=L, seed=r, batch_size=batch, use_cache=use_cache)
        times.append((time.perf_counter() - start) / batch)
    return statistics.median(times)


def measure(preset: str, batch: int, repeats: int, device: str) -> dict:
    if preset == "default":  # the bundled generator, trained
        gen = load_generator("default").to(device)
    else:
        tok = ModelConfig.from_dict(read_meta(DEFAULT_MODEL)["config"])
        torch.manual_seed(0)
        config = generator_config(preset, vocab_size=tok.codebook_size, lengths=tok.lengths, tokenizer="benchmark")
        gen = Generator(config).to(device).eval()
    config = gen.config
    short, long = config.lengths[0], config.lengths[-1]
    t = {(L, cache): seconds_per_sample(gen, L, batch, cache, repeats if cache else 1)
         for L in (short, long) for cache in (True, False)}
    return {"preset": preset, "parameters": sum(p.numel() for p in gen.parameters()), "batch": batch,
            "short": short, "long": long, "t": t}


def table(rows: list[dict]) -> str:
    lines = ["| preset | parameters | batch | ms/sample at L={s} (cache) | at L={l} (cache) | longest / shortest | "
             "ms/sample at L={s} (no cache) | at L={l} (no cache) | cache speed-up at L={s} | at L={l} |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        t, s, lo = r["t"], r["short"], r["long"]
        lines[0] = lines[0].format(s=s, l=lo)
        lines.append(f"| {r['preset']} | {r['parameters']:,} | {r['batch']} | {1e3 * t[s, True]:.2f} | "
                     f"{1e3 * t[lo, True]:.2f} | {t[lo, True] / t[s, True]:.2f}x | {1e3 * t[s, False]:.2f} | "
                     f"{1e3 * t[lo, False]:.2f} | {t[s, False] / t[s, True]:.2f}x | {t[lo, False] / t[lo, True]:.2f}x |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--presets", default="tiny,small", help="comma-separated generator presets, or default (the bundled generator; default tiny,small)")
    p.add_argument("--batch-sizes", default="16,4", help="one batch size per preset (default 16,4)")
    p.add_argument("--repeats", type=int, default=3, help="timed runs with the cache (median; default 3)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1: on a shared CPU, more threads "
                   "than free cores spin against other work and time the machine's load, not the model)")
    p.add_argument("--out", default=None, help="also write the table and the set-up to this Markdown file")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    start = time.time()
    rows = [measure(preset, int(b), args.repeats, args.device)
            for preset, b in zip(args.presets.split(","), args.batch_sizes.split(","))]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    setup = (f"{args.device}, {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
             f"{torch.get_num_threads()} torch threads, torch {torch.__version__}, load average {load:.1f}; "
             f"{time.time() - start:.0f} s in all")
    text = f"{table(rows)}\n\n{setup}\n"
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write("# Generator sampling speed (benchmarks/generator_speed.py)\n\n"
                    "Seconds per sample at the tokenizer's shortest and longest length (the bundled tokenizer: "
                    "16 .. 128 tokens, 4096 codes), the same batch at both, random weights.\n\n"
                    f"    python benchmarks/generator_speed.py {' '.join(sys.argv[1:])}\n\n" + text)


if __name__ == "__main__":
    main()
