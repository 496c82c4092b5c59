"""`alit analyze complexity|familiarity`: tokens against image complexity, or in- vs out-of-distribution
(alit/eval/analysis.py)."""
from __future__ import annotations

from ..criteria import L1Below, parse_criterion
from ..errors import AlitError
from ..eval.analysis import analyze_complexity, analyze_familiarity
from ..eval.inputs import load_model, parse_floats
from . import analyze_task
from .options import add_limit_arg, add_model_args, add_out_arg, add_progress_arg, add_protocol_arg, at_least, num, \
    output_folder, print_table


def run(args) -> int:
    if args.what == "task":  # tokens a downstream task needs (cli/analyze_task.py)
        return analyze_task.run(args)
    at_least(args.batch_size, 1, "--batch-size")
    at_least(args.limit, 1, "--limit")
    criteria = _check_rules(args)
    output_folder(args.out)
    tok = load_model(args.checkpoint, args.device, args.precision)
    rules = _rules(args, criteria, tok)
    if args.what == "complexity":
        _complexity(args, tok, rules)
    else:
        _familiarity(args, tok, rules)
    return 0


def _check_rules(args) -> list[str] | None:
    """--thresholds or --criteria, checked before the model loads; the rules of --criteria."""
    if args.thresholds is not None and args.criteria is not None:
        raise AlitError("give --thresholds (L1) or --criteria (NAME:VALUE,...), not both")
    if args.thresholds is not None:
        high = [t for t in parse_floats(args.thresholds, "--thresholds") if t >= 1]
        if high:
            raise AlitError(f"--thresholds {args.thresholds}: L1 thresholds are below 1 (the error of an 8-bit "
                            f"image never reaches 1: every image would get the shortest length)")
    criteria = None if args.criteria is None else [c.strip() for c in args.criteria.split(",") if c.strip()]
    for spec in criteria or []:
        parse_criterion(spec)
    return criteria


def _rules(args, criteria: list[str] | None, tok) -> list:
    """L1 thresholds (floats) or rules (NAME:VALUE): those given, else the model's own."""
    if args.thresholds is not None:
        return parse_floats(args.thresholds, "--thresholds")
    if criteria:
        for spec in criteria:
            parse_criterion(spec, tok)  # e.g. conf: needs a VQGAN-based model
        return criteria
    own = parse_criterion(tok.config.criterion, tok)
    return [own.threshold] if isinstance(own, L1Below) else [tok.config.criterion]


def _complexity(args, tok, rules: list) -> None:
    r = analyze_complexity(tok, args.data, rules, args.out, ratings=args.ratings, protocol_name=args.protocol,
                           batch_size=args.batch_size, limit=args.limit, progress=not args.no_progress)
    table = [["rule", "proxy", "n", "spearman", "p", "kendall", "p"]]
    for key, per in r["correlations"].items():
        for proxy, c in per.items():
            table.append([r["labels"][key], proxy, str(c["n"])]
                         + [num(c[k]) for k in ("spearman", "spearman_p", "kendall", "kendall_p")])
    print_table(table)
    print("mean tokens: " + ", ".join(f"{r['labels'][k]}: {v:.1f}" for k, v in r["mean_tokens"].items()))
    print(f"{r['data']['images']} images: {args.out}/complexity.json, complexity.csv, index.html")


def _familiarity(args, tok, rules: list) -> None:
    if args.other is None:
        raise AlitError("analyze familiarity needs --other OOD_DIR (images unlike the training data)")
    r = analyze_familiarity(tok, args.data, args.other, rules, args.out, protocol_name=args.protocol,
                            batch_size=args.batch_size, limit=args.limit, progress=not args.no_progress)
    table = [["rule", "mean (in)", "mean (other)", "Mann-Whitney p", "KS p"]]
    table += [[r["labels"][k], num(e["mean_in_distribution"]), num(e["mean_other"]), num(e["mann_whitney_p"]),
               num(e["ks_p"])] for k, e in r["tests"].items()]
    print_table(table)
    print(f"{args.out}/familiarity.json, index.html")


def add_parser(sub) -> None:
    s = sub.add_parser("analyze", help="tokens against image complexity, in- vs out-of-distribution, or a "
                       "task's needs",
                       description="complexity: tokens per image (the shortest length whose 8-bit "
                       "reconstruction, as `alit eval` scores it, passes each rule: the model's own, or "
                       "--thresholds / --criteria) against PNG and JPEG bits per pixel, Canny edge density and "
                       "optional human ratings (--ratings CSV with file,rating), with Spearman and Kendall "
                       "correlations, scatter plots and OUT/index.html. familiarity: token counts of --data "
                       "against --other, with a two-sided Mann-Whitney U test (and Kolmogorov-Smirnov), "
                       "histograms and OUT/index.html. task: the tokens a downstream task model needs against "
                       "the reconstruction rule's (--task-model; the options below).")
    s.add_argument("what", choices=("complexity", "familiarity", "task"))
    s.add_argument("--data", required=True, metavar="DIR", help="image folder (in distribution, for familiarity)")
    s.add_argument("--other", default=None, metavar="DIR", help="familiarity: the out-of-distribution folder")
    add_out_arg(s, default="analyze-out")
    s.add_argument("--thresholds", default=None,
                   help="L1 thresholds, comma-separated, each the rule L1 < T (default: the model's own rule)")
    s.add_argument("--criteria", default=None, metavar="NAME:VALUE,...",
                   help="length rules of any kind, comma-separated, e.g. ssim:0.47,l1:0.07,psnr:20 (instead of "
                   "--thresholds; default: the model's own rule)")
    s.add_argument("--ratings", default=None, metavar="CSV", help="complexity: human ratings, columns file,rating")
    add_protocol_arg(s, help="preprocessing, as for `alit eval` (default resize-crop)")
    add_model_args(s, batch_size=8)
    add_limit_arg(s)
    add_progress_arg(s)
    analyze_task.add_arguments(s)
    s.set_defaults(func=run)
