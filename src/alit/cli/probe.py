"""`alit probe --data LABELLED_DIR`: linear-probe accuracy of the frozen latents at each length (alit/eval/probe.py)."""
from __future__ import annotations

from ..errors import AlitError
from ..eval.inputs import load_model, parse_lengths
from ..eval.probe import chance_line, run_probe
from .options import add_limit_arg, add_model_args, add_out_arg, add_progress_arg, at_least, num, output_folder, \
    print_table


def run(args) -> int:
    at_least(args.batch_size, 1, "--batch-size")
    at_least(args.limit, 1, "--limit")
    if not 0 < args.test_fraction < 1:
        raise AlitError(f"--test-fraction must be between 0 and 1, got {args.test_fraction}")
    if not args.weight_decay >= 0:
        raise AlitError(f"--weight-decay must be 0 or more, got {args.weight_decay}")
    output_folder(args.out)
    tok = load_model(args.checkpoint, args.device, args.precision)
    r = run_probe(tok, args.data, args.out, parse_lengths(args.lengths, tok.config.lengths), pool=args.pool,
                  test_fraction=args.test_fraction, seed=args.seed, weight_decay=args.weight_decay,
                  batch_size=args.batch_size, limit=args.limit, save=args.save,
                  progress=not args.no_progress)
    table = [["tokens", "features", "train acc", "test acc"]]
    table += [[L, str(x["features"]), num(x["train_accuracy"]), num(x["test_accuracy"])]
              for L, x in r["lengths"].items()]
    print_table(table)
    print(f"majority-class baseline: {chance_line(r)}")
    print(f"{args.out}/probe.json, probe.csv, index.html")
    if args.save:
        print(f"the probe of {r['saved']['length']} tokens: {args.save} (a task model: task:{args.save})")
    return 0


def add_parser(sub) -> None:
    s = sub.add_parser("probe", help="linear-probe accuracy of the frozen latents at each token length",
                       description="DIR/<class>/<images> (or DIR/train/<class>/ and DIR/test/<class>/): the "
                       "bottleneck latents at each length, pooled over tokens, feed a multinomial logistic "
                       "regression (torch, L-BFGS, deterministic); test accuracy against tokens. `alit data "
                       "fashion-mnist` makes such a folder offline. Writes OUT/probe.json, probe.csv, index.html.")
    s.add_argument("--data", required=True, metavar="LABELLED_DIR", help="one folder per class")
    add_out_arg(s, default="probe-out")
    s.add_argument("--lengths", default="all", help="'all' or comma-separated token counts (default all)")
    s.add_argument("--pool", choices=("mean", "concat"), default="mean",
                   help="mean over tokens (d features) or all tokens concatenated (L x d) (default mean)")
    s.add_argument("--test-fraction", type=float, default=0.25, help="held-out share per class without "
                   "train/ and test/ folders (default 0.25)")
    s.add_argument("--seed", type=int, default=0, help="split seed (default 0)")
    s.add_argument("--weight-decay", type=float, default=1e-3, help="L2 penalty of the probe (default 1e-3)")
    s.add_argument("--save", default=None, metavar="PATH", help="keep the probe of the longest length probed in "
                   "PATH (safetensors), a task model for the length rule task:PATH[:K] and `alit analyze task`")
    add_model_args(s, batch_size=32)
    add_limit_arg(s)
    add_progress_arg(s)
    s.set_defaults(func=run)
