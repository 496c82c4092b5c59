"""The base tokenizer's own reconstructions on the held-out photos: the ceiling of every ALIT length.

    python benchmarks/base_quality.py runs/default/base [--data DIR]

Scores as `alit demo` does (resize-crop to the base's size, 8-bit input, reconstruction rounded to 8
bits): mean L1 and PSNR over the bundled held-out photos (or --data). VQGAN: decoding its
quantised code; KL-VAE: decoding the posterior mean.
"""
from __future__ import annotations

import argparse
import json

import torch

from alit.demo import PHOTOS
from alit.eval.inputs import batches, protocol
from alit.images import find_images
from alit.losses.autoencoder import vector_quantize
from alit.scoring import pixel_metrics
from alit.train.sources import load_base


@torch.no_grad()
def base_quality(base, size: int, data) -> dict:
    proto = protocol("resize-crop")
    paths, _ = find_images([data])
    l1, psnr = [], []
    for batch in batches(paths, size, proto, 32):
        x = batch.images
        if base.cfg.kind == "vqgan":
            recon = base.decode(vector_quantize(base.encode(x), base.codebook).codes)
        else:
            recon = base.decode(base.moments(x)[0])
        m = pixel_metrics(x.double(), proto.finish(recon).double())
        l1 += m["l1"].tolist()
        psnr += m["psnr"].tolist()
    return {"photos": len(l1), "l1": sum(l1) / len(l1), "psnr": sum(psnr) / len(psnr)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("base")
    ap.add_argument("--data", default=str(PHOTOS))
    ap.add_argument("--size", type=int, default=64)
    args = ap.parse_args()
    base, where = load_base(args.base, args.size)
    print(json.dumps({"base": where, **base_quality(base.eval(), args.size, args.data)}))


if __name__ == "__main__":
    main()
