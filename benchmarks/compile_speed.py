"""Does torch.compile make fixed-length encode and decode faster (issue #33 item 10)? Eager against
compiled, the same model, the same images, one process:

    python benchmarks/compile_speed.py [--checkpoint default] [--device cpu] [--batch 16] [--repeats 3] [--precision P]

`benchmarks/gpu_check.py` runs the same comparison as its `compile` section (one batch).

Compiled: every transformer stack (`layers.Transformer`: the recurrent encoder's and the latent
decoder's) and the base autoencoder's encoder and decoder, each with `nn.Module.compile()` in place
(inductor, default mode), so the model's Python loop, its compaction and its host reads stay eager.
Timed: encode at the shortest and longest length, decode of the longest, over the 48 held-out demo
photos in batches of --batch, best of --repeats after the warm-up that compiles (its time is
printed: that is what a user pays once per shape). The ids and reconstructions of the compiled model
are compared with eager's (compiled kernels round differently).
"""
from __future__ import annotations

import argparse
import time

import torch

import alit
from alit.eval.inputs import batches, protocol
from alit.images import find_images
from alit.model.layers import Transformer

try:
    from alit.demo import PHOTOS
except ImportError:  # pragma: no cover
    PHOTOS = None


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, groups, device, repeats: int) -> tuple[float, float, list]:
    """(first pass s, best later pass s, the first pass's outputs)."""
    sync(device)
    start = time.perf_counter()
    out = [fn(x) for x in groups]
    sync(device)
    first = time.perf_counter() - start
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for x in groups:
            fn(x)
        sync(device)
        best = min(best, time.perf_counter() - start)
    return first, best, out


def compile_parts(tok) -> int:
    parts = [m for m in tok.modules() if isinstance(m, Transformer)]
    base = getattr(tok, "base", None)
    parts += [getattr(base, name) for name in ("encoder", "decoder") if base is not None and hasattr(base, name)]
    for m in parts:
        m.compile()
    return len(parts)


def cases(tok, precision: str = "fp32"):
    short, long = tok.config.lengths[0], tok.config.lengths[-1]
    return {f"encode {short}": lambda x: tok.encode(x, num_tokens=short, precision=precision),
            f"encode {long}": lambda x: tok.encode(x, num_tokens=long, precision=precision),
            f"decode {long}": lambda x: tok.decode(tok.encode(x, num_tokens=long, precision=precision),
                                                   precision=precision)}


def same(name: str, out: list, ref: list) -> str:
    """How the compiled outputs compare with eager's: equal ids (encode), largest difference (decode)."""
    if name.startswith("encode"):
        equal = sum(int((a.ids == b.ids).sum()) for a, b in zip(out, ref)) / sum(a.ids.numel() for a in ref)
        return f"{equal:.2%} equal ids"
    return f"max abs diff {max(float((a.float() - b.float()).abs().max()) for a, b in zip(out, ref)):.2g}"


def compile_rows(tok, images: torch.Tensor, precision: str, repeats: int) -> list[dict]:
    """gpu_check's `compile` section: eager, then compiled in place (tok is changed), one batch."""
    device, run = images.device, cases(tok, precision)
    eager = {name: timed(fn, [images], device, repeats) for name, fn in run.items()}
    compile_parts(tok)
    rows = []
    for name, fn in run.items():
        first, best, out = timed(fn, [images], device, repeats)
        rows.append({"what": f"{name} tokens, torch.compile: {eager[name][1] / best:.2f}x eager "
                             f"({len(images) / eager[name][1]:.3g} images/s), first call {first:.1f} s, "
                             f"{same(name, out, eager[name][2])}",
                     "images_per_s": len(images) / best, "ms_per_image": 1e3 * best / len(images)})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", default="default")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--precision", default="fp32", choices=("fp32", "tf32", "bf16", "fp16"))
    args = ap.parse_args()
    device = torch.device(args.device)
    tok = alit.load(args.checkpoint).to(device).eval()
    paths, _ = find_images([PHOTOS])
    groups = [b.images.to(device) for b in batches(paths, tok.config.image_size, protocol("resize-crop"), args.batch)]
    eager = {name: timed(fn, groups, device, args.repeats) for name, fn in cases(tok, args.precision).items()}
    n = compile_parts(tok)
    print(f"{len(paths)} photos, batch {args.batch}, {device}, {args.precision}; compiled {n} modules in place")
    print("| case | eager s | compiled s (first pass, compiling) | compiled s | speed-up | equal ids / max abs diff |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, fn in cases(tok, args.precision).items():
        first, best, out = timed(fn, groups, device, args.repeats)
        print(f"| {name} | {eager[name][1]:.2f} | {first:.1f} | {best:.2f} | {eager[name][1] / best:.2f}x | "
              f"{same(name, out, eager[name][2])} |", flush=True)


if __name__ == "__main__":
    main()
