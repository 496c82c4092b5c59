"""`alit models`: the model names, what each is, whether it is cached and where; download or remove one."""
from __future__ import annotations

import json

from .. import resolve, weights
from ..errors import AlitError


def run(args) -> int:
    if args.remove:
        if args.remove == "default":
            raise AlitError(f"default is the bundled model: it ships inside the package ({weights.DEFAULT_MODEL}) "
                            f"and cannot be removed; --remove deletes a paper model from the cache")
        gone = resolve.remove(args.remove)
        print(f"{args.remove}: removed {', '.join(map(str, gone))}" if gone
              else f"{args.remove}: not cached ({resolve.cache_path(args.remove)})")
        return 0
    if args.download:
        if args.download == "default":
            raise AlitError("default is bundled with alit: nothing to download")
        folder = resolve.fetch_paper(args.download, keep_original=args.keep_original)
        print(f"{args.download}: {folder}")
        return 0
    rows = [("default", "bundled", str(weights.DEFAULT_MODEL), _describe_bundled())]
    for name, model in resolve.PAPER_MODELS.items():
        cached = "cached" if resolve.is_cached(name) else "not cached"
        rows.append((name, cached, str(resolve.cache_path(name)), f"{model.describe()}; file {model.file}"))
    width = max(len(r[0]) for r in rows)
    state = max(len(r[1]) for r in rows)
    for name, cached, path, what in rows:
        print(f"{name.ljust(width)}  {cached.ljust(state)}  {path}")
        print(f"{' ' * width}  {what}")
    print(f"cache: {resolve.cache_dir()} (ALIT_CACHE); a paper model is downloaded on first use "
          f"(ALIT_DOWNLOAD_MIRROR=URL fetches URL/<file> instead); hf:ORG/NAME loads from the Hugging Face Hub")
    return 0


def _describe_bundled() -> str:
    """What the bundled model is, read from its own config.json (it is replaced from time to time)."""
    try:
        meta = json.loads((weights.DEFAULT_MODEL / weights.CONFIG_FILE).read_text())
        c = meta["config"]
        lengths = [c["tokens_per_iter"] * (i + 1) for i in range(c["num_iters"])]
        latents = "quantised" if c.get("quantize") else "continuous"
        text = (f"ours: {c['image_size']} px, {c['base']['kind'].upper()} base, {latents} latents, "
                f"{lengths[0]}-{lengths[-1]} tokens ({c['num_iters']} x {c['tokens_per_iter']})")
        return text + (f"; {meta['source']}" if meta.get("source") else "")
    except (OSError, ValueError, KeyError, TypeError):
        return "missing from this install"


def add_parser(sub) -> None:
    s = sub.add_parser("models", help="the model names (bundled, the paper's), cached or not; download or remove",
                       description="List every model name that alit.load and --checkpoint take: `default` (the "
                       "bundled model) and the paper's released checkpoints and base tokenizers (paper/...), each "
                       "with what it is, whether it is in the cache and its cache path. A paper model is downloaded "
                       "on first use (from ALIT_DOWNLOAD_MIRROR/<file> when that is set), converted and kept in "
                       "the cache (ALIT_CACHE, else $XDG_CACHE_HOME/alit, else ~/.cache/alit); ALIT_OFFLINE=1 "
                       "forbids downloads. hf:ORG/NAME[@REVISION] names a model on the Hugging Face Hub.")
    s.add_argument("--remove", metavar="NAME", default=None,
                   help="delete a paper model from the cache (the bundled default ships inside the package)")
    s.add_argument("--download", metavar="NAME", default=None,
                   help="download and convert a paper model now (as its first use would)")
    s.add_argument("--keep-original", action="store_true",
                   help="with --download: also keep the released file in CACHE/downloads/")
    s.set_defaults(func=run)
