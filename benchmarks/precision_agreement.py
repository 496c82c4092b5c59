"""How far a lower precision moves the tokens: each precision against fp32, on the 48 held-out demo
photos with the bundled model (or --checkpoint), and the cost of encoding by the model's own rule.

    python benchmarks/precision_agreement.py                        # bf16, fp16 against fp32, CPU
    python benchmarks/precision_agreement.py --precisions bf16 --fp32 factorize pixels --no-timing
    python benchmarks/precision_agreement.py --precisions bf16 --no-timing --floor   # fp32 against itself

For each precision: the share of photos whose length under the model's rule equals fp32's, the
share of equal ids at the longest length, and the mean L1 (8-bit reconstruction, as `alit demo`
scores) at every length against fp32's. Then the time of `encode` by the model's rule against a
fixed-length encode at the longest length (fp32, --batch images a call, best of --repeats).

--fp32 PART patches the model for an experiment (what else should stay float32 under autocast);
without it, the library as it is. The script runs on older alit too (`dtype=` spelling). On a CPU
without native float16, fp16 autocast is very slow: measure bf16 there.
"""
from __future__ import annotations

import argparse
import json
import time

import torch

import alit
from alit.eval.inputs import batches, protocol
from alit.images import find_images
from alit.model import layers
from alit.model.layers import MLP, Attention

try:
    from alit.demo import PHOTOS
except ImportError:  # pragma: no cover
    PHOTOS = None

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "tf32": None}


def photos(tok, batch: int) -> list[torch.Tensor]:
    paths, _ = find_images([PHOTOS])
    proto = protocol("resize-crop")
    return [b.images for b in batches(paths, tok.config.image_size, proto, batch)]


def in_precision(fn, precision: str | None, **kwargs):
    """fn(..., precision=) on this alit, or fn(..., dtype=) on one before the switch."""
    try:
        return fn(precision=precision, **kwargs)
    except TypeError:
        return fn(dtype=DTYPES.get(precision), **kwargs)


def measure(tok, groups, precision: str | None) -> dict:
    lengths, ids, l1 = [], [], []
    longest = tok.config.lengths[-1]
    for images in groups:
        lengths.append(in_precision(lambda **k: tok.encode(images, **k), precision).lengths)
        ids.append(in_precision(lambda **k: tok.encode(images, num_tokens=longest, **k), precision).ids)
        with torch.no_grad():
            roll = in_precision(lambda **k: tok.rollout(images, **k), precision)
        l1.append(torch.stack([((r.float().clamp(0, 1) * 255).round() / 255 - images).abs().flatten(1).mean(1)
                               for r in roll.reconstructions]))  # [T, b]
    return {"lengths": torch.cat(lengths), "ids": torch.cat(ids), "l1": torch.cat(l1, 1).double().mean(1)}


def compare(ref: dict, other: dict) -> dict:
    return {"equal_lengths": float((ref["lengths"] == other["lengths"]).double().mean()),
            "equal_ids_longest": float((ref["ids"] == other["ids"]).double().mean()),
            "l1_relative_change": [float(v) for v in (other["l1"] / ref["l1"] - 1)],
            "worst_l1_change": float((other["l1"] / ref["l1"] - 1).abs().max())}


def timing(tok, groups, repeats: int) -> dict:
    longest = tok.config.lengths[-1]

    def run(fn) -> float:
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            for images in groups:
                fn(images)
            best = min(best, time.perf_counter() - start)
        return best

    rule = run(lambda x: tok.encode(x))
    fixed = run(lambda x: tok.encode(x, num_tokens=longest))
    return {"rule_s": rule, "fixed_longest_s": fixed, "ratio": rule / fixed}


def in_float32(fn):
    """fn computed in float32 whatever the autocast around it (an experiment's patch)."""
    def run(*args, **kwargs):
        args = [a.float() if isinstance(a, torch.Tensor) and a.is_floating_point() else a for a in args]
        with torch.autocast("cpu", enabled=False), torch.autocast("cuda", enabled=False):
            return fn(*args, **kwargs)
    return run


# parts of the model that an experiment keeps in float32 under autocast (--fp32 PART ...)
PARTS = {
    "factorize": lambda tok: setattr(tok.encoder, "latents", in_float32(tok.encoder.latents)),
    "targets": lambda tok: setattr(tok, "targets", in_float32(tok.targets)),
    "pixels": lambda tok: setattr(tok, "codes_to_images", in_float32(tok.codes_to_images)),
    "decoder": lambda tok: setattr(tok.decoder, "forward", in_float32(tok.decoder.forward)),
    "patches": lambda tok: setattr(tok.encoder, "image_tokens", in_float32(tok.encoder.image_tokens)),
    "attention": lambda tok: _each(tok.encoder, Attention, "forward"),
    "mlp": lambda tok: _each(tok.encoder, MLP, "forward"),
    "sdpa": lambda tok: setattr(layers.F, "scaled_dot_product_attention",
                                in_float32(torch.nn.functional.scaled_dot_product_attention)),
}


def _each(module: torch.nn.Module, kind: type, attr: str) -> None:
    """Every `kind` submodule's `attr` (a method or a child module) computed in float32."""
    for m in module.modules():
        if isinstance(m, kind):
            setattr(m, attr, in_float32(getattr(m, attr)))


def noise_floor(tok, groups, ref: dict) -> dict:
    """How stable fp32's own lengths are: one image a call, and inputs moved by N(0, 1e-6)."""
    ones = [x[i:i + 1] for x in groups for i in range(x.shape[0])]
    noisy = [x + torch.randn(x.shape, generator=torch.Generator().manual_seed(0)) * 1e-6 for x in groups]
    rows = {"fp32 batch 1": compare(ref, measure(tok, ones, "fp32")),
            "fp32 inputs + N(0, 1e-6)": compare(ref, measure(tok, noisy, "fp32"))}
    for name, row in rows.items():
        print(f"{name}: equal lengths {row['equal_lengths']:.1%}, equal ids {row['equal_ids_longest']:.2%}")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", default="default")
    ap.add_argument("--precisions", nargs="+", default=["bf16", "fp16"])
    ap.add_argument("--fp32", nargs="*", default=[], choices=sorted(PARTS),
                    help="an experiment: parts kept in float32 under autocast (patched here, not the library)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-timing", action="store_true")
    ap.add_argument("--json", default=None, help="also write the figures to this file")
    ap.add_argument("--floor", action="store_true", help="also: fp32 against itself (batch 1, inputs + 1e-6 noise)")
    args = ap.parse_args()
    torch.manual_seed(0)
    tok = alit.load(args.checkpoint)
    for part in args.fp32:
        PARTS[part](tok)
    groups = photos(tok, args.batch)
    ref = measure(tok, groups, "fp32")
    out = {"checkpoint": args.checkpoint, "fp32_parts": args.fp32, "images": int(ref["lengths"].numel()),
           "fp32_mean_l1": [float(v) for v in ref["l1"]], "precisions": {}}
    for p in args.precisions:
        out["precisions"][p] = row = compare(ref, measure(tok, groups, p))
        print(f"{p}: equal lengths {row['equal_lengths']:.1%}, equal ids at {tok.config.lengths[-1]} "
              f"{row['equal_ids_longest']:.1%}, worst mean-L1 change {row['worst_l1_change']:.2%}", flush=True)
    if args.floor:
        out["floor"] = noise_floor(tok, groups, ref)
    if not args.no_timing:
        out["timing_fp32"] = t = timing(tok, groups, args.repeats)
        print(f"fp32 encode by the model's rule {t['rule_s']:.2f} s, fixed at the longest length "
              f"{t['fixed_longest_s']:.2f} s: {t['ratio']:.2f}x ({out['images']} photos, batch {args.batch})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
