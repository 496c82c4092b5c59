"""`alit eval generator --generator RUN --data HELDOUT_TOKENS`: how good a generator is
(alit/generator/evaluate.py). Its parser is named "eval generator": `cli.main` reads the two words
`eval generator` as this one command."""
from __future__ import annotations

import os
from pathlib import Path

from ..errors import AlitError
from ..eval.inputs import default_device
from ..generator import GeneratorData, load_generator
from ..generator.evaluate import evaluate_generator
from .options import add_batch_size_arg, add_device_arg, add_out_arg, at_least

NAME = "eval generator"


def run(args) -> int:
    if args.offline:
        os.environ["ALIT_OFFLINE"] = "1"
    for flag, value in (("--num", args.num), ("--per-length", args.per_length), ("--batch-size", args.batch_size)):
        at_least(value, 1, flag)
    device = default_device(args.device)
    gen = load_generator(args.generator).to(device)
    train_dir = args.train or gen.training_data
    if not train_dir:
        raise AlitError("give --train TOKENS_DIR (the generator's training tokens, for the unigram baseline, the "
                        "length histogram and the memorisation check); this generator does not record them")
    tok = gen.load_tokenizer(args.checkpoint, device)
    classes = gen.config.classes or False
    heldout, train = GeneratorData(args.data, classes), GeneratorData(train_dir, classes)
    r = evaluate_generator(gen, tok, heldout, train, args.out, num_samples=args.num, per_length=args.per_length,
                           seed=args.seed, batch_size=args.batch_size, fid_weights=args.fid_weights)
    for L, v in r["bits"]["per_length"].items():
        print(f"{L:>4} tokens: {v['bits_per_token']:.3f} bits per token (unigram {v['unigram_bits_per_token']:.3f}), "
              f"{v['sequences']} held-out sequences")
    b, h, m, fd = r["bits"]["all"], r["lengths"], r["memorisation"], r["fd"]
    print(f"all: {b['bits_per_token']:.3f} bits per token (unigram {b['unigram_bits_per_token']:.3f}); "
          f"length histogram TV {h['total_variation']:.3f} over {h['num_samples']} auto samples; "
          f"{m['exact_copies']} exact copies of a training sequence")
    print(f"FD: {fd['value']:.2f}" if fd["value"] is not None else f"FD: not computed: {fd['reason']}")
    print(f"{Path(args.out) / 'results.json'}, {Path(args.out) / 'index.html'}")
    return 0


def add_parser(sub) -> None:
    s = sub.add_parser(NAME, help="a generator's held-out bits per token, lengths, memorisation, FD and samples",
                       description="Held-out bits per token at every length against a unigram baseline (fitted on "
                       "the training tokens of each length); --num samples under num_tokens=auto, their length "
                       "histogram against the training data's (total variation) and their nearest training "
                       "sequences (Hamming distance on the ids; exact copies); the FD of Inception features (the "
                       "rFID network of `alit eval`) of decoded samples against the decoded held-out tokens, null "
                       "with the reason when its weights cannot be had; samples at every length. Writes "
                       "OUT/results.json, OUT/samples/*.png and OUT/index.html.")
    s.add_argument("--generator", required=True, metavar="RUN", help="generator folder or training run folder")
    s.add_argument("--data", required=True, metavar="HELDOUT_TOKENS", help="held-out token folder of `alit tokenize`")
    s.add_argument("--train", default=None, metavar="TOKENS_DIR",
                   help="the training token folder (default: the one the generator records)")
    add_out_arg(s, "eval-generator")
    s.add_argument("--num", type=int, default=256, metavar="N", help="samples under auto (default 256)")
    s.add_argument("--per-length", type=int, default=8, metavar="N", help="samples shown at each length (default 8)")
    s.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    add_batch_size_arg(s, 64)  # images (samples) per forward pass
    s.add_argument("--checkpoint", default=None, metavar="CKPT",
                   help="the tokenizer to decode with (default: the one the generator records)")
    s.add_argument("--fid-weights", default=None, metavar="PATH",
                   help="pytorch-fid's pt_inception-2015-12-05-6726825d.pth (default: the torch hub cache)")
    s.add_argument("--offline", action="store_true", help="download nothing: FD is null without local weights")
    add_device_arg(s)
    s.set_defaults(func=run)
