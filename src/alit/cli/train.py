"""`alit train STAGE`: one training stage from a recipe (alit/train/)."""
from __future__ import annotations

from .. import dist, train
from .options import add_progress_arg


def run(args) -> int:
    run_dir = train.run(args.stage, args.config, data=args.data, out=args.out, max_steps=args.max_steps,
                        resume=args.resume, overrides=args.set + (["classes=true"] if args.classes else []),
                        base=args.base, init=args.init,
                        progress=not args.no_progress)
    if dist.is_main():
        print(f"run folder: {run_dir} (its newest model: {train.stage_spec(args.stage).result_of(run_dir)})")
    return 0


def add_parser(sub) -> None:
    s = sub.add_parser("train", help="train a base tokenizer, ALIT's stage 1 (distill) / 2 (finetune), or a generator",
                       description="Train one stage from a recipe (YAML; `--config tiny` finds the shipped "
                       "`<stage>-tiny` recipe). Writes a run folder: checkpoints, log.jsonl (one record per "
                       "step), train.log, TensorBoard events; `alit.load(RUN_DIR)` gives its newest model "
                       "(EMA weights). Also runs under `torchrun --nproc_per_node=N -m alit train ...` (DDP).")
    s.add_argument("stage", choices=train.STAGE_NAMES,
                   help="; ".join(f"{name}: {spec.summary}" for name, spec in train.STAGES.items()))
    s.add_argument("--config", default=None, metavar="RECIPE",
                   help="recipe name (tiny, small-vqgan-quantized-in100, ...) or YAML file; "
                   "when resuming, the run's own recipe is used")
    s.add_argument("--data", default=None, metavar="DIR",
                   help="image folder or WebDataset shards; generator: a token folder of `alit tokenize`")
    s.add_argument("--out", default=None, metavar="RUN_DIR", help="run folder (default runs/<stage>-<recipe>)")
    s.add_argument("--max-steps", type=int, default=None, metavar="N",
                   help="total optimizer steps of the run, also after --resume")
    s.add_argument("--resume", action="store_true", help="continue the run in --out from its newest checkpoint")
    s.add_argument("--base", default=None, metavar="BASE_RUN_OR_CKPT",
                   help="distill: the frozen base tokenizer (a base run, base checkpoint or ALIT checkpoint)")
    s.add_argument("--init", default=None, metavar="RUN_OR_CKPT",
                   help="finetune: the distilled model to start from (its EMA weights); distill: continue "
                   "from an ALIT model (e.g. on other data) instead of fresh weights on --base")
    s.add_argument("--classes", action="store_true", help="generator: condition on classes, the first folder of "
                   "each key (an ImageFolder layout; the recipe key classes: true)")
    s.add_argument("--set", action="extend", nargs="+", default=[], metavar="KEY=VALUE", help="override a recipe "
                   "value (type-checked; dotted keys for sections, e.g. gan.schedule=[[100,0.2]])")
    add_progress_arg(s)
    s.set_defaults(func=run)
