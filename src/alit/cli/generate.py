"""`alit generate --generator RUN --num N --out DIR`: new images from a generator (alit/generator/)."""
from __future__ import annotations

from pathlib import Path

from ..errors import AlitError
from ..eval.inputs import default_device
from ..generator import load_generator
from ..generator.files import write_samples
from .options import add_batch_size_arg, add_device_arg, add_out_arg, at_least


def run(args) -> int:
    _check(args)
    device = default_device(args.device)  # a device this machine lacks fails before the model loads
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise AlitError(f"--out {out}: is an existing file, not a folder")
    gen = load_generator(args.generator).to(device)
    tok = gen.load_tokenizer(args.checkpoint, device)
    samples = gen.generate(args.num, args.num_tokens, args.class_, temperature=args.temperature, top_k=args.top_k,
                           top_p=args.top_p, cfg=args.cfg, seed=args.seed, batch_size=args.batch_size,
                           use_cache=not args.no_cache)
    out.mkdir(parents=True, exist_ok=True)
    records = write_samples(samples, tok, out, gen.config.classes, args.batch_size)
    lengths = sorted({r["num_tokens"] for r in records})
    seconds = float(samples.seconds.sum())
    print(f"{len(records)} images ({'/'.join(map(str, lengths))} tokens), seed {samples.seed}, "
          f"{seconds:.2f} s of sampling: {out}/sample-*.png, {out}/samples.json")
    return 0


def _check(args) -> None:
    for flag, value in (("--num", args.num), ("--batch-size", args.batch_size), ("--top-k", args.top_k)):
        at_least(value, 1, flag)


def add_parser(sub) -> None:
    s = sub.add_parser("generate", help="new images from a generator trained on alit's tokens",
                       description="Sample N token sequences from a generator (a length from its learned p(L), "
                       "or --num-tokens, then the ids of that length), decode them with the tokenizer whose tokens "
                       "it models, and write OUT/sample-NNNN.png and OUT/samples.json (per sample: file, num_tokens, "
                       "log_likelihood and length_log_likelihood in nats under the model, seconds of sampling, "
                       "class, seed, index). Sampling time grows with the length.")
    s.add_argument("--generator", default="default", metavar="RUN",
                   help="generator folder or training run folder (default: the bundled default generator, of the "
                   "bundled tokenizer's tokens of 273 small photos)")
    s.add_argument("--num", type=int, required=True, metavar="N", help="number of images")
    add_out_arg(s)
    s.add_argument("--num-tokens", default="auto", metavar="L|auto",
                   help="tokens per image: one of the tokenizer's lengths, or auto (drawn from the generator's "
                   "p(L | class); the default)")
    s.add_argument("--class", dest="class_", default=None, metavar="C",
                   help="class name or id (generators trained with classes; default: unconditional)")
    s.add_argument("--temperature", type=float, default=1.0, metavar="T", help="id logits / T; 0: greedy (default 1)")
    s.add_argument("--top-k", type=int, default=None, metavar="K", help="keep the K likeliest ids at each step")
    s.add_argument("--top-p", type=float, default=None, metavar="P", help="keep the likeliest ids up to probability P")
    s.add_argument("--cfg", type=float, default=1.0, metavar="W",
                   help="classifier-free guidance weight: logits u + W (c - u) (default 1: none)")
    s.add_argument("--seed", type=int, default=None, metavar="S",
                   help="seed (default: a random one, printed and written to samples.json); sample i depends on "
                   "(S, i) only, not on --num or --batch-size")
    add_batch_size_arg(s, 64)  # images (samples) per forward pass
    s.add_argument("--checkpoint", default=None, metavar="CKPT",
                   help="the tokenizer to decode with (default: the one the generator records; it must be the "
                   "tokenizer whose tokens the generator models)")
    add_device_arg(s)
    s.add_argument("--no-cache", action="store_true", help="recompute every prefix at every step (the same images, "
                   "slower; for measuring the KV cache)")
    s.set_defaults(func=run)
