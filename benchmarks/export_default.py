"""Export a trained ALIT run as the bundled default model, its length rule calibrated on training photos.

    python benchmarks/export_default.py RUN --data PHOTOS/train --out src/alit/assets/default

RUN is a `alit train finetune` (or distill) run folder; its EMA weights are taken. A model with
latent_norm gets its running statistics recomputed over the training photos first: stage 2 trains
iteration t on one step in T while the encoder moves, so the averages of the late iterations lag
behind it (measured: held-out L1 rising from 0.106 at 32 tokens to 0.156 at 128 without this). The length rule is
`l1:T`, scored as `alit demo` scores (resize-crop, reconstructions rounded to 8 bits), where T is
the threshold under which the training photos (never the held-out ones) spread their lengths most
evenly (`spread_threshold`; `--length-index I` takes the median L1 at length I instead). Prints the
per-length mean L1 on those photos and the histogram of lengths the rule chooses there.
"""
from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from alit.eval.inputs import batches, protocol
from alit.eval.metrics import pixel_metrics
from alit.images import find_images
from alit.tokenizer import load
from alit.tokens.budget import threshold_choice
from alit.weights import save


@torch.no_grad()
def recalibrate_latent_norm(tok, data: str, batch_size: int = 32) -> int:
    """The latent standardiser's running averages recomputed over the training photos (as batch-norm
    statistics are recalibrated after training): a plain mean of the batch statistics of every
    iteration. Returns the number of photos seen."""
    proto = protocol("resize-crop")
    paths, _ = find_images([data])
    tok.latent_norm.reset_statistics()
    tok.latent_norm.train()
    seen = 0
    try:
        for batch in batches(paths, tok.config.image_size, proto, batch_size):
            if len(batch.paths) > 1:
                tok.rollout(batch.images, pixels=False)
                seen += len(batch.paths)
    finally:
        tok.latent_norm.eval()
    return seen


@torch.no_grad()
def training_errors(tok, data: str, batch_size: int = 32) -> np.ndarray:
    """8-bit L1 of every training photo at every length: [images, lengths]."""
    proto = protocol("resize-crop")
    paths, _ = find_images([data])
    rows = []
    for batch in batches(paths, tok.config.image_size, proto, batch_size):
        roll = tok.rollout(batch.images)
        inputs = batch.images.double()
        rows.append(torch.stack([pixel_metrics(inputs, proto.finish(r).double())["l1"]
                                 for r in roll.reconstructions], 1))
    return torch.cat(rows).numpy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run")
    ap.add_argument("--data", required=True, help="the training photos (never the held-out ones)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--length-index", type=int, default=None,
                    help="the median L1 at this length sets the threshold (default: the most even spread)")
    args = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    tok = load(args.run).eval()
    if tok.latent_norm is not None:
        print(f"latent_norm statistics recomputed over {recalibrate_latent_norm(tok, args.data)} training photos")
    lengths = tok.config.lengths
    errors = training_errors(tok, args.data)
    if args.length_index is None:
        threshold = spread_threshold(errors)
        index = None
    else:
        index = args.length_index
        threshold = float(np.round(np.median(errors[:, index]), 4))
    chosen = [lengths[i] for i in threshold_choice(errors, threshold)]
    config = tok.config.replace(criterion=f"l1:{threshold}")
    save(tok.state_dict(), config, args.out,
         source=f"alit train (bundled default; criterion {config.criterion} calibrated on the "
                f"{len(errors)} training photos)")
    report = {"threshold": threshold, "calibration_length": None if index is None else lengths[index],
              "photos": len(errors),
              "mean_l1": {str(L): float(errors[:, i].mean()) for i, L in enumerate(lengths)},
              "chosen_histogram": {str(L): chosen.count(L) for L in lengths}}
    print(json.dumps(report, indent=1))


def spread_threshold(errors: np.ndarray) -> float:
    """The L1 threshold under which the training photos' chosen lengths are spread most evenly: the
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


if __name__ == "__main__":
    main()
