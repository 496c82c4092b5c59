"""Training curves of the default model's runs, from their log.jsonl, as one PNG.

    python benchmarks/plot_training.py runs/default --out benchmarks/results/default_model_curves.png

Panels: the base's L1; stage 1's code MSE at the first and last iteration (smoothed) and latent
reliance at the preview steps (the stage-1 loss with another image's latents minus with the
image's own: about 0 on the saddle); stage 2's pixel L1, that of its first and last iteration, and its
latent reliance. A run folder that is absent is left out, and so are its panels. The low-lr leg after stage 2
(`leg/`) is drawn in stage 2's panels, after its last step (a dotted line where it starts).
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
    base, distill, finetune, leg = (records(work / name) for name in ("base", "distill", "finetune", "leg"))
    leg_start = finetune[-1]["step"] if finetune and leg else None
    if leg_start is not None:
        finetune = finetune + [dict(r, step=r["step"] + leg_start) for r in leg]
    panels = []  # (title, draw(ax)) for the runs that are there

    def curve(ax, recs, key, color, label=None):
        steps, values = series(recs, key)
        if values:
            ax.plot(steps[19:] if len(steps) >= 20 else steps, smooth(values), color=color, label=label)

    def reliance(ax, recs):
        for name, color in (("first", "C1"), ("last", "C2")):
            steps, rel = series(recs, f"latent_reliance/{name}")
            ax.plot(steps, rel, "o-", color=color, ms=3, label=f"{name} length")
        ax.axhline(0, color="0.5", lw=0.8)
        ax.legend(fontsize=8)

    if base:
        panels.append(("base KL-VAE: training L1 (20-step mean)", lambda ax: curve(ax, base, "l1", "C0")))
    if distill:
        last = max((int(k.split("/")[1]) for r in distill[:1] for k in r if k.startswith("code/")), default=0)

        def codes(ax):
            for t, color in ((0, "C1"), (last, "C2")):
                curve(ax, distill, f"code/{t}", color, f"iteration {t}")
            ax.legend(fontsize=8)
        panels.append(("stage 1: code MSE (20-step mean)", codes))
        panels.append(("stage 1: latent reliance (preview photos)", lambda ax: reliance(ax, distill)))
    if finetune:
        key = "l1" if any("l1" in r for r in finetune) else "loss"
        panels.append(("stage 2: pixel L1 (20-step mean, cycling iterations)",
                       lambda ax: curve(ax, finetune, key, "C3")))
        its = sorted({int(r["iteration"]) for r in finetune if "iteration" in r and key in r})
        if its:
            def per_iteration(ax):
                for t, color in ((its[0], "C1"), (its[-1], "C2")):
                    curve(ax, [r for r in finetune if r.get("iteration") == t], key, color, f"iteration {t}")
                ax.legend(fontsize=8)
            panels.append((f"stage 2: pixel L1 of iterations {its[0]} and {its[-1]} (20-step mean)", per_iteration))
        if any("latent_reliance/first" in r for r in finetune):
            panels.append(("stage 2: latent reliance (preview photos)", lambda ax: reliance(ax, finetune)))
    if not panels:
        raise SystemExit(f"{work}: no base/, distill/ or finetune/ log.jsonl to plot")
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.8), squeeze=False)
    for ax, (title, draw) in zip(axes[0], panels):
        draw(ax)
        if leg_start is not None and title.startswith("stage 2"):
            ax.axvline(leg_start, color="0.4", ls=":", lw=1)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(args.out)


if __name__ == "__main__":
    main()
