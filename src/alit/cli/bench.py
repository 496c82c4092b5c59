"""`alit bench`: images/s and ms per image of what users run (alit/bench.py), as one table."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from ..bench import bench, format_iterations, format_table, profile_iterations
from ..errors import AlitError
from ..eval.inputs import check_not_an_image, default_device
from ..precision import PRECISIONS
from ..tokenizer import build, load
from .options import PRECISION_HELP, add_device_arg, at_least


def run(args) -> int:
    _check(args)
    device = default_device(args.device)  # a device this machine lacks fails before the model loads
    if args.preset is not None:
        torch.manual_seed(0)
        try:
            tok = build(args.preset)
        except ValueError as e:
            raise AlitError(str(e)) from None
        name = f"preset {args.preset} (random weights)"
    else:
        check_not_an_image(args.checkpoint)
        tok, name = load(args.checkpoint), str(args.checkpoint)
    tok = tok.to(device).eval()
    log = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    result = bench(tok, batch=args.batch_size, precision=args.precision, repeats=args.repeats, name=name, log=log)
    print(format_table(result))
    if args.per_iteration:
        for precision in args.precision:
            profile = profile_iterations(tok, batch=args.batch_size, precision=precision, repeats=args.repeats,
                                         name=name, log=log)
            print("\n" + format_iterations(profile))
            result.setdefault("per_iteration", []).append(profile)
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
        print(f"wrote {args.out}")
    return 0


def _check(args) -> None:
    """Argument errors as one line, before anything loads."""
    if args.checkpoint is not None and args.preset is not None:
        raise AlitError("give exactly one of --checkpoint CKPT and --preset NAME (e.g. --preset small)")
    if args.preset is None and args.checkpoint is None:
        args.checkpoint = "default"
    at_least(args.batch_size, 1, "--batch-size")
    at_least(args.repeats, 1, "--repeats")
    if args.out and Path(args.out).is_dir():
        raise AlitError(f"--out {args.out}: is a folder; --out names the JSON file to write")
    if args.out and not Path(args.out).parent.is_dir():  # said now, not after the whole benchmark
        raise AlitError(f"{args.out}: No such file or directory")
    if args.dtype is not None:
        args.precision = args.precision or [args.dtype]
    args.precision = list(dict.fromkeys(args.precision or ["fp32"]))


def add_parser(sub) -> None:
    s = sub.add_parser(
        "bench", help="images/s, ms per image, peak memory and host syncs of encode, decode and rollout",
        description="Time what users run, on random images on this device: encode at the shortest and "
        "the longest length and by the model's own length rule (images leave the batch once they have a "
        "length), decode of the longest encoding, and the full rollout (every length with its "
        "reconstruction). Each runs once untimed (a warm-up, in which host syncs are counted: CUDA's sync "
        "debug mode on a GPU; on a CPU the operations that would sync a GPU), then --repeats times, "
        "synchronised only at the two ends of each timed run; the best run is kept. One markdown table: "
        "a row per precision and operation, with images/s, ms per image, peak memory (CUDA allocator "
        "peak, reset per row; the process's peak resident set on a CPU) and host syncs per iteration. "
        "--out also writes it all as JSON.")
    s.add_argument("--checkpoint", metavar="CKPT", default=None,
                   help="model folder (model.safetensors + config.json), or 'default' for the bundled model "
                   "(the default when no --preset is given)")
    s.add_argument("--preset", metavar="NAME", default=None,
                   help="a preset with random weights instead (tiny, small, base, semilarge)")
    s.add_argument("--batch-size", "--batch", type=int, default=8, metavar="N",
                   help="images per call (default 8), as --batch-size of every other command")
    s.add_argument("--precision", nargs="+", choices=PRECISIONS, default=None, metavar="P",
                   help="one or more of fp32, tf32, bf16, fp16, a row each per operation; " + PRECISION_HELP)
    # the older spelling of --precision, kept for scripts (it cast the weights; now it is autocast too)
    s.add_argument("--dtype", choices=("fp32", "bf16", "fp16"), default=None, help=argparse.SUPPRESS)
    s.add_argument("--repeats", type=int, default=3, metavar="N",
                   help="timed runs of each row after the warm-up, the best is kept (default 3)")
    s.add_argument("--per-iteration", action="store_true",
                   help="also the older per-iteration profile of a rollout (encoder, latent decoder, pixel "
                   "decode of each length); its hooks synchronise inside the rollout, so it runs apart")
    s.add_argument("--out", default=None, metavar="FILE", help="also write the results as JSON")
    add_device_arg(s)
    s.set_defaults(func=run)

