"""Per-iteration errors of an ALIT model on training and held-out photos, before the pixels are rounded.

    python benchmarks/iteration_errors.py RUN [--train PHOTOS/train] [--heldout PHOTOS/heldout]
                                              [--calibrate PHOTOS/train] [-n 48]

For each of the model's lengths: the MSE of its predicted base code against the base's own code of
the image, and the pixel L1 of its reconstruction (clamped, not rounded) against the image, on the
first n photos of each folder (resized as `alit demo` reads them). A model with latent_norm gets
its running averages recomputed over --calibrate first, as `export_default.py` does: a training run's
own averages lag behind its late iterations, which made stage-1 runs look worse past 80 tokens than
they are (benchmarks/results/default_model_log.md, section 10).
"""
from __future__ import annotations

import argparse
import json

import torch

from alit.eval.recalibrate import recalibrate
from alit.images import find_images, load_image
from alit.tokenizer import load


@torch.no_grad()
def iteration_errors(model, images: torch.Tensor) -> dict:
    """{"code_mse": [per length], "l1": [per length]} for images [B, 3, S, S] in [0, 1]."""
    roll = model.rollout(images, "off", pixels=True)
    return {"code_mse": [((c - roll.targets.codes) ** 2).mean().item() for c in roll.codes],
            "l1": [(r.clamp(0, 1) - images).abs().mean().item() for r in roll.reconstructions]}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run", help="model folder or training run (its EMA weights)")
    p.add_argument("--train", default="data/photos/train", help="training photos")
    p.add_argument("--heldout", default="data/photos/heldout", help="held-out photos")
    p.add_argument("--calibrate", default="data/photos/train",
                   help="photos for latent_norm's averages ('none': keep the run's own)")
    p.add_argument("-n", type=int, default=48, help="photos per folder (the first n by name)")
    args = p.parse_args(argv)
    model = load(args.run)
    if model.latent_norm is not None and args.calibrate != "none":
        recalibrate(model, args.calibrate)
    size = model.config.image_size
    out = {"run": args.run, "lengths": model.config.lengths, "latent_norm_recalibrated_on":
           None if model.latent_norm is None or args.calibrate == "none" else args.calibrate}
    for name, folder in (("train", args.train), ("heldout", args.heldout)):
        paths, _ = find_images([folder])
        images = torch.stack([load_image(f, size) for f in sorted(paths)[:args.n]])
        out[name] = iteration_errors(model, images)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
