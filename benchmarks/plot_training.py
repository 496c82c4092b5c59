"""Training curves of the default model's runs, from their log.jsonl, as one PNG.

    python benchmarks/plot_training.py runs/default --out benchmarks/results/default_model_curves.png

Panels: the base's L1; stage 1's code MSE at the first and last iteration (smoothed) and latent
reliance at the preview steps (the stage-1 loss with another image's latents minus with the
image's own: about 0 on the saddle); stage 2's pixel L1. A run folder that is absent is left out.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def records(run: Path) -> list[dict]:
    path = run / "log.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def smooth(values: list[float], n: int = 20) -> np.ndarray:
    v = np.asarray(values, dtype=float)
    if len(v) < n:
        return v
    return np.convolve(v, np.ones(n) / n, mode="valid")


def series(recs: list[dict], key: str) -> tuple[list[int], list[float]]:
    pairs = [(r["step"], r[key]) for r in recs if key in r]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("work", help="the WORK_DIR of benchmarks/train_default_cpu.sh (base/, distill/, finetune/)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    work = Path(args.work)
    base, distill, finetune = (records(work / name) for name in ("base", "distill", "finetune"))
    fig, axes = plt.subplots(1, 4, figsize=(18, 3.8))
    steps, l1 = series(base, "l1")
    axes[0].plot(steps[19:] if len(steps) >= 20 else steps, smooth(l1), color="C0")
    axes[0].set_title("base KL-VAE: training L1 (20-step mean)")
    last = max((int(k.split("/")[1]) for r in distill[:1] for k in r if k.startswith("code/")), default=0)
    for t, color in ((0, "C1"), (last, "C2")):
        steps, code = series(distill, f"code/{t}")
        if code:
            axes[1].plot(steps[19:] if len(steps) >= 20 else steps, smooth(code), color=color, label=f"iteration {t}")
    axes[1].set_title("stage 1: code MSE (20-step mean)")
    axes[1].legend(fontsize=8)
    for name, color in (("first", "C1"), ("last", "C2")):
        steps, rel = series(distill, f"latent_reliance/{name}")
        axes[2].plot(steps, rel, "o-", color=color, ms=3, label=f"{name} length")
    axes[2].axhline(0, color="0.5", lw=0.8)
    axes[2].set_title("stage 1: latent reliance (preview photos)")
    axes[2].legend(fontsize=8)
    steps, l1 = series(finetune, "l1")
    if not l1:
        steps, l1 = series(finetune, "loss")
    axes[3].plot(steps[19:] if len(steps) >= 20 else steps, smooth(l1), color="C3")
    axes[3].set_title("stage 2: pixel L1 (20-step mean, cycling iterations)")
    for ax in axes:
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(args.out)


if __name__ == "__main__":
    main()
