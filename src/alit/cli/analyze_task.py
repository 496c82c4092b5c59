"""`alit analyze task`: tokens a downstream task needs against the model's own reconstruction rule
(alit/eval/task_analysis.py). `add_parser(sub)` makes it a command of its own; `add_arguments(s)`
adds its options to the `alit analyze` parser, which dispatches `analyze task` to `run`."""
from __future__ import annotations

from pathlib import Path

from ..criteria import parse_criterion
from ..errors import AlitError
from ..eval.inputs import load_model, parse_floats
from ..eval.task_analysis import analyze_task
from ..criteria.task import TaskAgrees
from ..task_model import load_task_model
from .options import add_limit_arg, add_model_args, add_out_arg, add_progress_arg, add_protocol_arg, at_least, num, \
    output_folder, print_table

DESCRIPTION = (
    "For a folder of images and a task model (--task-model: a TorchScript file taking images in [0, 1], or a "
    "probe saved by `alit probe --save`), the tokens the task needs (the shortest length whose reconstruction it "
    "judges as it judges the input: the same class, or within --top-k; with --threshold, a relative output error "
    "below it) against the tokens the model's own reconstruction rule needs (or --criteria), per image and in "
    "aggregate, with a paired test (Wilcoxon signed-rank, else a sign test) and the task's agreement (and, with "
    "--labels, accuracy) at every length. Writes OUT/task.json, task.csv, index.html and figures.")


def add_arguments(s) -> None:
    """The task's own options, on a parser that has --data, --out, --criteria and the model options."""
    g = s.add_argument_group("task (alit analyze task)")
    g.add_argument("--task-model", default=None, metavar="PATH",
                   help="TorchScript file (its own preprocessing; images [B, 3, H, W] in [0, 1]) or a probe of "
                   "`alit probe --save`")
    g.add_argument("--top-k", type=int, default=1, metavar="K",
                   help="a classifier agrees when the input's class is in its top K on the reconstruction (default 1)")
    g.add_argument("--threshold", type=float, default=None, metavar="T",
                   help="a dense task model: agrees when its relative output error is below T")
    g.add_argument("--labels", action="store_true",
                   help="the images lie in DIR/<class>/ folders: also the task's accuracy at every length")


def add_parser(sub) -> None:
    """`task` as a command of `sub` (e.g. the subcommands of `alit analyze`)."""
    s = sub.add_parser("task", help="tokens a downstream task needs against the reconstruction rule's",
                       description=DESCRIPTION)
    s.add_argument("--data", required=True, metavar="DIR", help="image folder (searched recursively)")
    add_out_arg(s, default="analyze-out")
    s.add_argument("--criteria", default=None, metavar="NAME:VALUE,...",
                   help="reconstruction rules to compare with, comma-separated (default: the model's own)")
    add_protocol_arg(s, help="preprocessing, as for `alit eval` (default resize-crop)")
    add_model_args(s, batch_size=8)
    add_limit_arg(s)
    add_progress_arg(s)
    add_arguments(s)
    s.set_defaults(func=run)


def run(args) -> int:
    task, criteria = _check(args)
    output_folder(args.out)
    tok = load_model(args.checkpoint, args.device, args.precision)
    for spec in criteria or []:
        if isinstance(spec, str):
            parse_criterion(spec, tok)  # e.g. conf: needs a VQGAN-based model
    rule = TaskAgrees(task, top_k=args.top_k, threshold=args.threshold,
                      tokenizer=tok if getattr(task, "takes", "pixels") == "latents" else None)
    r = analyze_task(tok, args.data, rule, args.out, criteria=criteria, labels=args.labels,
                     protocol_name=args.protocol, batch_size=args.batch_size, limit=args.limit,
                     task_name=Path(args.task_model).name, progress=not args.no_progress)
    table = [["length of", "mean tokens", "task fewer", "equal", "task more", "p"]]
    table.append(["task", num(r["task_tokens"]["mean"]), "", "", "", ""])
    for e in r["rules"].values():
        t = e["paired_test"]
        table.append([e["label"], num(e["mean_tokens"]), str(t["fewer"]), str(t["equal"]), str(t["more"]),
                      f"{num(t['p'])} ({t['test']})"])
    print_table(table)
    for e in r["rules"].values():
        print(f"against {e['label']}: {e['verdict']}")
    keys = [k for k in ("agreement", "accuracy", "mean_error") if k in r["at_length"][0]]
    print_table([["tokens"] + keys] + [[str(row["tokens"])] + [num(row[k]) for k in keys] for row in r["at_length"]])
    print(f"{r['data']['images']} images: {args.out}/task.json, task.csv, index.html")
    return 0


def _check(args):
    """Argument errors as one line, before the tokenizer loads: (the task model, the rules)."""
    if args.task_model is None:
        raise AlitError("analyze task needs --task-model PATH (a TorchScript file or a probe of `alit probe --save`)")
    at_least(args.batch_size, 1, "--batch-size")
    at_least(args.limit, 1, "--limit")
    at_least(args.top_k, 1, "--top-k")
    if args.threshold is not None and not args.threshold > 0:
        raise AlitError(f"--threshold (a relative output error) must be above 0, got {args.threshold}")
    thresholds = getattr(args, "thresholds", None)  # `alit analyze`'s L1 thresholds, when hooked there
    if thresholds is not None and args.criteria is not None:
        raise AlitError("give --thresholds (L1) or --criteria (NAME:VALUE,...), not both")
    criteria = None if args.criteria is None else [c.strip() for c in args.criteria.split(",") if c.strip()]
    if thresholds is not None:
        criteria = parse_floats(thresholds, "--thresholds")
    for spec in criteria or []:
        if isinstance(spec, str):
            parse_criterion(spec)  # a bad rule fails before the model loads
    return load_task_model(args.task_model), criteria
