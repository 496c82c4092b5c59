"""`alit demo`: the model on the held-out photos bundled with alit (alit/demo.py)."""
from __future__ import annotations

from pathlib import Path

from ..demo import run_demo
from ..eval.inputs import load_model
from .options import add_criterion_arg, add_model_args, add_out_arg, add_progress_arg, at_least, check_criterion, \
    output_folder, print_table


def run(args) -> int:
    at_least(args.batch_size, 1, "--batch-size")
    check_criterion(args.criterion)  # a bad rule fails before the model loads
    output_folder(args.out)
    tok = load_model(args.checkpoint, args.device, args.precision)
    check_criterion(args.criterion, tok)  # e.g. conf: needs a VQGAN-based model
    s = run_demo(tok, args.out, criterion=args.criterion, batch_size=args.batch_size, checkpoint=args.checkpoint,
                 progress=not args.no_progress)
    table = [["tokens", "mean L1", "mean PSNR", "mean SSIM"]]
    table += [[L, f"{l1:.4f}", f"{s['mean_psnr'][L]:.2f}", f"{s['mean_ssim'][L]:.4f}"] for L, l1 in s["mean_l1"].items()]
    print_table(table)
    rank = s["spearman_chosen_vs_png_bpp"]
    rho = f"{rank['rho']:.3f} (p {rank['p']:.2g})" if rank["rho"] is not None else f"n/a ({rank['reason']})"
    print(f"{len(s['images'])} photos, {s['criterion']}: mean chosen tokens {s['mean_chosen_tokens']:.1f}; "
          f"Spearman rho of chosen tokens vs PNG bits per pixel {rho}")
    print(Path(args.out) / "index.html")
    return 0


def add_parser(sub) -> None:
    s = sub.add_parser("demo", help="the model on the held-out photos bundled with alit: summary.json, index.html",
                       description="Run the model on the 48 held-out photos bundled with alit (resized and "
                       "centre-cropped to its size, 8-bit), with reconstructions at every length. Writes "
                       "OUT/summary.json (per photo: L1 and PSNR of the 8-bit reconstruction at every length, "
                       "the length the criterion chooses, PNG bits per pixel of the model's input; the means "
                       "and the Spearman correlation of chosen tokens with PNG bits per pixel) and "
                       "OUT/index.html (every photo at every length, plots). Prints the means per length.")
    add_out_arg(s, default="alit-demo")
    add_criterion_arg(s, "which length each photo gets")
    add_model_args(s, batch_size=16)
    add_progress_arg(s)
    s.set_defaults(func=run)
