"""Export a trained ALIT run as the bundled default model, its length rule calibrated on training photos.

    python benchmarks/export_default.py RUN --data PHOTOS/train --out src/alit/assets/default

RUN is a `alit train finetune` (or distill) run folder; its EMA weights are taken. The length rule is
`l1:T`, where T is the median 8-bit L1 over the training photos (never the held-out ones) at the
middle length: scored as `alit demo` scores (resize-crop, reconstructions rounded to 8 bits), so
about half of photos like the training ones choose a length at or below the middle one. Prints the
per-length mean L1 on those photos and the histogram of lengths the rule chooses there.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from alit.eval.inputs import batches, protocol
from alit.eval.metrics import pixel_metrics
from alit.images import find_images
from alit.tokenizer import load
from alit.weights import save


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
                    help="which length's median sets the threshold (default: the middle one)")
    args = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    tok = load(args.run).eval()
    lengths = tok.config.lengths
    errors = training_errors(tok, args.data)
    index = len(lengths) // 2 - 1 if args.length_index is None else args.length_index
    threshold = float(np.round(np.median(errors[:, index]), 4))
    accepted = torch.from_numpy(errors < threshold)  # [images, lengths]
    chosen = [lengths[i] for i in first_accepted_rows(accepted)]
    config = tok.config.replace(criterion=f"l1:{threshold}")
    save(tok.state_dict(), config, args.out,
         source=f"alit train (bundled default; criterion: median 8-bit L1 at {lengths[index]} tokens "
                f"over the {len(errors)} training photos)")
    report = {"threshold": threshold, "calibration_length": lengths[index], "photos": len(errors),
              "mean_l1": {str(L): float(errors[:, i].mean()) for i, L in enumerate(lengths)},
              "chosen_histogram": {str(L): chosen.count(L) for L in lengths}}
    print(json.dumps(report, indent=1))


def first_accepted_rows(accepted: torch.Tensor) -> list[int]:
    """Per row: the first True column, else the last column."""
    any_ok = accepted.any(1)
    first = accepted.float().argmax(1)
    return torch.where(any_ok, first, torch.full_like(first, accepted.shape[1] - 1)).tolist()


if __name__ == "__main__":
    main()
