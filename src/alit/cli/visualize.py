"""`alit visualize IMAGE`: decoder attention of each latent token over the image grid (alit/eval/visualize.py)."""
from __future__ import annotations

from ..eval.inputs import load_model
from ..eval.visualize import visualize
from .options import add_model_args, add_out_arg, add_progress_arg, integer, output_folder


def run(args) -> int:
    layer = None if args.layer is None else ("mean" if args.layer == "mean" else integer(args.layer, "--layer"))
    output_folder(args.out)
    tok = load_model(args.checkpoint, args.device, args.precision)
    info = visualize(tok, args.image, args.out, layer=layer, progress=not args.no_progress)
    print(f"decoder block {info['layer']}, lengths {info['lengths']}: {args.out}/index.html")
    return 0


def add_parser(sub) -> None:
    s = sub.add_parser("visualize", help="decoder attention of each latent token over the image grid",
                       description="Resize-crop IMAGE to the model's size, run every iteration and draw, for each "
                       "latent token, the decoder's attention from the grid queries to that token as a heat map "
                       "over the image (one PNG grid per iteration), plus which token each grid cell attends to "
                       "most and the reconstruction. Writes OUT/index.html, iter<t>_*.png, attention.npz.")
    s.add_argument("image", metavar="IMAGE")
    add_out_arg(s, default="visualize-out")
    s.add_argument("--layer", default=None, help="decoder block index or 'mean' (default: 3/4 of the depth, "
                   "block 6 of 8 as the paper's figures)")
    add_model_args(s, batch_size=None)  # one image: no --batch-size, no --limit
    add_progress_arg(s)
    s.set_defaults(func=run)
