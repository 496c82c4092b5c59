"""Export a trained ALIT run as the bundled default model, its length rule calibrated on training photos.

    python benchmarks/export_default.py RUN --data PHOTOS/train --out src/alit/assets/default [--rule ssim] [--stall]

RUN is a `alit train finetune` (or distill) run folder; its EMA weights are taken. A model with
latent_norm gets its running statistics recomputed over the training photos first: stage 2 trains
iteration t on one step in T while the encoder moves, so the averages of the late iterations lag
behind it (measured: held-out L1 rising from 0.106 at 32 tokens to 0.156 at 128 without this).

The length rule is `l1:T` (`--rule l1`) or `ssim:S` (`--rule ssim`), scored as `alit demo` scores
(resize-crop, reconstructions rounded to 8 bits). Its threshold is the one under which the training
photos (never the held-out ones) spread their lengths most evenly (`spread_threshold`;
`--length-index I` takes the median error at length I instead). `--stall` adds `+gain:G` (`alit.Stalled`):
a length is also accepted when its last block of tokens lowered the error by less than G, so photos
that never meet the threshold stop where more tokens stop helping them; G is the one (0 to 0.01, in
steps of 0.0005) under which the training photos' lengths spread most evenly given the threshold
(`spread_gain`: the largest entropy of their histogram). Prints, for the training photos,
the per-length mean error, the histogram of lengths the rule chooses, and the Spearman rank
correlation of those lengths with the photos' PNG bits per pixel (what `alit demo` reports on the
held-out ones).
"""
from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import torch

from alit.eval.analysis import complexity_proxies, correlation
from alit.eval.inputs import batches, protocol
from alit.eval.recalibrate import recalibrate
from alit.images import find_images
from alit.scoring import pixel_metrics, ssim
from alit.tokenizer import load
from alit.tokens.budget import threshold_choice
from alit.weights import save


RULES = {"l1": lambda x, r: pixel_metrics(x, r)["l1"],   # error: 8-bit L1
         "ssim": lambda x, r: 1 - ssim(x, r)}               # error: 1 - SSIM; the rule is ssim:1-T


@torch.no_grad()
def training_errors(tok, data: str, rule: str = "l1", batch_size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """(the rule's error of every training photo at every length [images, lengths], PNG bits per
    pixel of every photo [images])."""
    proto = protocol("resize-crop")
    paths, _ = find_images([data])
    rows, bpp = [], []
    for batch in batches(paths, tok.config.image_size, proto, batch_size):
        roll = tok.rollout(batch.images)
        inputs = batch.images.double()
        rows.append(torch.stack([RULES[rule](inputs, proto.finish(r).double()) for r in roll.reconstructions], 1))
        bpp += [complexity_proxies(image)["png_bpp"] for image in batch.images]
    return torch.cat(rows).numpy(), np.array(bpp)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run")
    ap.add_argument("--data", required=True, help="the training photos (never the held-out ones)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--rule", choices=sorted(RULES), default="l1", help="the kind of length rule (default l1)")
    ap.add_argument("--length-index", type=int, default=None,
                    help="the median error at this length sets the threshold (default: the most even spread)")
    ap.add_argument("--stall", action="store_true",
                    help="also stop where the last block of tokens gained less than a gain calibrated on the photos")
    args = ap.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    tok = load(args.run).eval()
    if tok.latent_norm is not None:
        # on stderr: stdout is the JSON report alone, so `> export.json` is a valid file
        print(f"latent_norm statistics recomputed over {recalibrate(tok, args.data)} training photos",
              file=sys.stderr)
    lengths = tok.config.lengths
    errors, bpp = training_errors(tok, args.data, args.rule)
    if args.length_index is None:
        threshold = spread_threshold(errors)
        index = None
    else:
        index = args.length_index
        threshold = float(np.round(np.median(errors[:, index]), 4))
    gain = spread_gain(errors, threshold) if args.stall else None
    chosen = [lengths[i] for i in (threshold_choice(errors, threshold) if gain is None
                                   else stalled_choice(errors, threshold, gain))]
    spec = f"l1:{threshold}" if args.rule == "l1" else f"ssim:{round(1 - threshold, 4)}"
    if gain is not None:
        spec += f"+gain:{gain:g}"
    config = tok.config.replace(criterion=spec)
    save(tok.state_dict(), config, args.out,
         source=f"alit train (bundled default; criterion {config.criterion} calibrated on the "
                f"{len(errors)} training photos)")
    rank = correlation(chosen, bpp.tolist())
    report = {"criterion": spec, "threshold": threshold, "gain": gain, "calibration_length": None if index is None else lengths[index],
              "photos": len(errors),
              f"mean_{'l1' if args.rule == 'l1' else '1-ssim'}": {str(L): float(errors[:, i].mean())
                                                                   for i, L in enumerate(lengths)},
              "chosen_histogram": {str(L): chosen.count(L) for L in lengths},
              "spearman_chosen_vs_png_bpp": {"rho": rank["spearman"], "p": rank["spearman_p"]}}
    print(json.dumps(report, indent=1))


def spread_threshold(errors: np.ndarray) -> float:
    """The error threshold under which the training photos' chosen lengths are spread most evenly: the
    smallest largest share of one length, then the most distinct lengths, over the 5-95% quantiles
    of their errors."""
    best = None
    for q in np.linspace(0.05, 0.95, 91):
        t = float(np.round(np.quantile(errors, q), 4))
        counts = np.bincount(threshold_choice(errors, t), minlength=errors.shape[1])
        key = (counts.max() / len(errors), -(counts > 0).sum())
        if best is None or key < best[0]:
            best = (key, t)
    return best[1]


def stalled_choice(errors: np.ndarray, threshold: float, gain: float) -> np.ndarray:
    """`alit.Stalled`'s choice on errors [images, lengths]: the first length whose error is below
    `threshold` or, after the first, fell by less than `gain` from the length before; the last where none is."""
    errors = np.asarray(errors)
    ok = errors < threshold
    ok[:, 1:] |= errors[:, :-1] - errors[:, 1:] < gain
    ok[:, -1] = True
    return ok.argmax(1)


def spread_gain(errors: np.ndarray, threshold: float) -> float:
    """The gain (0 to 0.01, steps of 0.0005) under which, with `threshold`, the training photos'
    lengths spread most evenly: the largest entropy of their histogram, the smallest gain on a tie."""
    best = None
    for gain in np.round(np.linspace(0, 0.01, 21), 4):
        counts = np.bincount(stalled_choice(errors, threshold, gain), minlength=errors.shape[1])
        p = counts[counts > 0] / len(errors)
        entropy = float(-(p * np.log2(p)).sum())
        if best is None or entropy > best[0] + 1e-12:
            best = (entropy, float(gain))
    return best[1]


if __name__ == "__main__":
    main()
