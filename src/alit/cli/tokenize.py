"""`alit tokenize DATA --out DIR` and `alit decode DIR --out IMAGES` (alit/tokens/)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path, PurePosixPath

from .. import dist
from ..criteria import parse_criterion
from ..errors import AlitError
from ..eval.inputs import load_model
from ..files import atomic_write
from ..images import save_png
from ..progress import progress_bar
from ..tokens import TokenDataset
from ..tokens.job import Options, tokenize
from ..tokens.layout import layout
from .names import unique_names
from .options import add_batch_size_arg, add_checkpoint_arg, add_criterion_arg, add_device_arg, \
    add_precision_arg, add_progress_arg, at_least, check_criterion, print_table


def run_tokenize(args) -> int:
    given = [m for m in ("num_tokens", "criterion", "mean_tokens") if getattr(args, m) is not None]
    if len(given) > 1:
        raise AlitError("give one of --num-tokens, --criterion and --mean-tokens")
    if args.batch_size < 1 or (args.workers is not None and args.workers < 0):
        raise AlitError(f"--batch-size must be at least 1 and --workers at least 0, got {args.batch_size} "
                        f"and {args.workers}")
    precision = _precision(args)
    check_criterion(args.criterion)  # a bad rule fails before the model loads
    device = dist.init()
    try:
        world = dist.world_size()
        if args.device is not None and world > 1:
            raise AlitError(f"--device does not go with torchrun's {world} processes: each takes its own "
                            f"(cuda:LOCAL_RANK, else cpu); leave --device out")
        index = _tokenize(args, given, precision, args.device or device, dist.rank(), world)
    finally:
        dist.shutdown()
    if index is None:
        return 0
    bpp = index["mean_bits_per_pixel"]
    bpp = f", {bpp:.4f} bits per pixel" if bpp is not None else ""
    rate = index["images_per_second"]
    rate = f", {rate:.1f} images/s on {world} process(es)" if rate and index["images_this_run"] else ""
    files = layout(args.out)
    print(f"{index['images_written']} images written, {index['images_skipped']} skipped "
          f"({files.skipped}); mean {index['mean_tokens']:.2f} tokens{bpp}{rate}")
    c = index.get("mean_tokens_comparison")
    if c:
        rows = [["rule", "mean tokens", "mean L1"],
                ["budget (--mean-tokens)", f"{c['budget']['mean_tokens']:.2f}", f"{c['budget']['mean_l1']:.4f}"],
                [f"fixed length {c['fixed_length']['tokens']}", f"{c['fixed_length']['mean_tokens']:.2f}",
                 f"{c['fixed_length']['mean_l1']:.4f}"],
                [f"threshold l1:{c['threshold_rule']['threshold']:.4g}",
                 f"{c['threshold_rule']['mean_tokens']:.2f}", f"{c['threshold_rule']['mean_l1']:.4f}"]]
        print_table(rows)
    print(files.index)
    return 0


def _tokenize(args, given: list[str], precision: str, device, rank: int, world: int) -> dict | None:
    """Load the model, check the length options against it, and run the job (`tokens/job.py`)."""
    tok = load_model(args.checkpoint, device)
    mode = given[0] if given else "criterion"
    value = getattr(args, mode) if given else tok.config.criterion
    lengths = tok.config.lengths
    if mode == "num_tokens" and value not in lengths:
        raise AlitError(f"--num-tokens {value} is not a length of this model; choose from {lengths}")
    if mode == "mean_tokens" and not lengths[0] <= value:
        raise AlitError(f"--mean-tokens {value:g} is below this model's shortest length {lengths[0]}")
    if mode == "criterion":
        parse_criterion(value, tok)
    checkpoint = str(args.checkpoint)
    if Path(checkpoint).exists():
        checkpoint = str(Path(checkpoint).resolve())
    opts = Options(data=args.data, out=args.out, mode=mode, value=value, checkpoint=checkpoint,
                   batch_size=args.batch_size, precision=precision, part_size=args.part_size,
                   workers=args.workers, progress=not args.no_progress, views=args.views)
    return tokenize(tok, opts, rank=rank, world=world)


def _precision(args) -> str:
    """--precision, or the older --dtype (same names, hidden), fp32 when neither is given."""
    if args.dtype is None:
        return args.precision or "fp32"
    print("alit tokenize: --dtype is deprecated; use --precision (the same names)", file=sys.stderr)
    if args.precision not in (None, args.dtype):
        raise AlitError(f"--precision {args.precision} and --dtype {args.dtype} disagree; give --precision alone")
    return args.dtype


def run_decode(args) -> int:
    at_least(args.batch_size, 1, "--batch-size")
    ds = TokenDataset(args.dir)
    tok = load_model(args.checkpoint or ds.index["model"]["checkpoint"], args.device)
    ds.check_model(tok)
    if args.keys:
        missing = [k for k in args.keys if k not in set(ds.keys)]
        if missing:
            raise AlitError(f"{args.dir}: no image with key {missing[0]!r}"
                            + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
        rows = [ds.find(k) for k in dict.fromkeys(args.keys)]
    else:
        rows = list(range(len(ds)))
    out = Path(args.out)
    names = output_names(ds.keys)  # of every key: a key's file is the same whichever --keys are asked for
    decoded = {ds.keys[i]: names[ds.keys[i]] for i in rows}
    with progress_bar(len(rows), "decode", enabled=not args.no_progress) as bar:
        for start in range(0, len(rows), args.batch_size):
            batch = rows[start:start + args.batch_size]
            images = tok.decode(ds.encoding(batch, tok))  # [b, 3, S, S] in [0, 1]
            for i, image in zip(batch, images):
                path = out / names[ds.keys[i]]
                path.parent.mkdir(parents=True, exist_ok=True)
                save_png(image, path)
            bar.update(len(batch))
    write_key_map(out / KEY_MAP, decoded)
    renamed = [f"{k} -> {v}" for k, v in decoded.items() if v != _stem(k) + ".png"]
    also = f"; {len(renamed)} renamed where names collide ({', '.join(renamed[:2])}" \
           f"{', ...' if len(renamed) > 2 else ''})" if renamed else ""
    print(f"{len(rows)} image(s) decoded: {out}/<key>.png; {out / KEY_MAP} maps each key to its file{also}")
    return 0


KEY_MAP = "keys.json"  # beside the PNGs of `alit decode`: {key: file} (.png names of two keys can collide)


def write_key_map(path: Path, decoded: dict[str, str]) -> None:
    """{key: PNG path relative to the output folder}, merged with the map of earlier runs into the
    same folder (names are given over every key of DIR, so they agree)."""
    known = {}
    if path.is_file():
        try:
            known = json.loads(path.read_text())
        except (OSError, ValueError):
            known = {}
    known = {**(known if isinstance(known, dict) else {}), **decoded}
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(known, indent=1, ensure_ascii=False) + "\n"))


def output_names(keys: list[str]) -> dict[str, str]:
    """A PNG path per key: the key with its suffix replaced by .png, inside the output folder
    (no '..', no absolute paths), with -2, -3, ... where two keys would give one name."""
    return dict(zip(keys, unique_names([_stem(k) for k in keys], ".png")))


def _stem(key: str) -> str:
    """A key as a path inside the output folder, without its suffix."""
    parts = [p for p in PurePosixPath(key.replace("\\", "/")).parts if p not in ("/", "..", ".", "")]
    return PurePosixPath(*parts).with_suffix("").as_posix() if parts else "image"


def add_parser(sub) -> None:
    _add_tokenize_parser(sub)
    _add_decode_parser(sub)


def _add_tokenize_parser(sub) -> None:
    s = sub.add_parser(
        "tokenize", help="a data set into Parquet token files (one or many processes, resumable)",
        description="Encode every image of DATA (an image folder, searched recursively, or WebDataset "
        "shards) and write DIR/part-NNNNNN.parquet, one row per image: key (the path relative to DATA, or "
        "the WebDataset key), num_tokens, and ids (the smallest unsigned integer type that holds the "
        "codebook) or latents (continuous models); then DIR/_index.json (the model, how lengths were chosen, "
        "counts, histogram of lengths, bits per pixel, speed) and DIR/_skipped.jsonl (images that could not "
        "be read, with the reason), with DIR/_state/ (what a rerun resumes from): names with a leading "
        "underscore, which dataset readers skip. Images are prepared as `alit reconstruct` prepares them, "
        "with its warnings (files without an image suffix, images smaller than the model's size, enlarged, "
        "animations, their first frame read). WebDataset shards need the `webdataset` package. Lengths: "
        "--num-tokens N for all, --criterion NAME:VALUE per image (default: the model's own rule), or "
        "--mean-tokens N, the least total L1 with a mean of at most N tokens. Images are decoded ahead of the "
        "model by --workers processes and parts are written by a background thread, so the model waits for "
        "neither. Runs on many processes with `torchrun --nproc_per_node=N -m alit tokenize ...` (each on its "
        "own device); run the same command again after an interruption to finish the job (it says how much "
        "was done). Read the result with pd.read_parquet(DIR), pyarrow.parquet.read_table(DIR), DuckDB "
        "(select * from 'DIR/*.parquet'), datasets.load_dataset(\"parquet\", data_files=\"DIR/*.parquet\"), or "
        "alit.TokenDataset(DIR) (which also reads folders of the older layout, index.json beside the parts).")
    s.add_argument("data", metavar="DATA", help="image folder, or WebDataset shards (.tar, dir/{0000..0099}.tar)")
    s.add_argument("--out", required=True, metavar="DIR", help="output folder (new, empty, or this run's own)")
    add_checkpoint_arg(s)
    s.add_argument("--num-tokens", type=int, default=None, metavar="N", help="every image gets N tokens")
    add_criterion_arg(s, "the shortest length this rule accepts, per image")
    s.add_argument("--mean-tokens", type=float, default=None, metavar="N",
                   help="a budget for the whole data set: lengths that make the total L1 smallest with a mean "
                   "of at most N tokens (a first pass measures every image at every length)")
    add_batch_size_arg(s, 32)
    add_precision_arg(s, default=None)  # None: fp32, unless the older --dtype names one
    s.add_argument("--dtype", choices=("fp32", "bf16", "fp16"), default=None, help=argparse.SUPPRESS)  # deprecated
    s.add_argument("--part-size", type=int, default=256, metavar="N",
                   help="images per Parquet part of an image folder (default 256); a shard is one part")
    s.add_argument("--views", type=int, default=0, metavar="K",
                   help="K seeded random views of every image instead of the image itself (random resized crop "
                   "of 80-100%% of the area and a horizontal flip, as the training recipes crop), keyed KEY#k, "
                   "k = 0..K-1; the same views on every run")
    s.add_argument("--workers", type=int, default=None, metavar="N",
                   help="processes decoding images ahead of the model, across parts, into pinned memory on CUDA "
                   "(default: min(4, CPUs per process); 0: in the main process, no reading ahead)")
    add_device_arg(s, help="torch device of a single process (default: cuda if available, else cpu); under "
                   "torchrun with several processes each takes its own, cuda:LOCAL_RANK (else cpu), and --device "
                   "is refused")
    add_progress_arg(s)
    s.set_defaults(func=run_tokenize)


def _add_decode_parser(sub) -> None:
    s = sub.add_parser("decode", help="PNGs back from a token folder of `alit tokenize`",
                       description="Decode the tokens of DIR (made by `alit tokenize`) with the model that "
                       "made them and write IMAGES/<key>.png (the key's suffix replaced by .png; where two keys "
                       "give one name, as a.jpg and a.png, the later one gets -2, -3, ...) and IMAGES/keys.json, "
                       "which maps each key to its file.")
    s.add_argument("dir", metavar="DIR", help="token folder (with _index.json, or index.json of the older layout)")
    s.add_argument("--out", required=True, metavar="IMAGES", help="output folder")
    s.add_argument("--keys", nargs="+", default=None, metavar="KEY", help="only these images (default: all)")
    s.add_argument("--checkpoint", default=None, metavar="CKPT",
                   help="the model (default: the one _index.json names); it must be the model that made the tokens")
    add_batch_size_arg(s, 16)
    add_device_arg(s)
    add_progress_arg(s)
    s.set_defaults(func=run_decode)
