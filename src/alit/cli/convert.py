"""`alit convert SRC --out DST`: a paper checkpoint (.pth / .ckpt / state dict) to ours (alit/convert.py)."""
from __future__ import annotations

from ..convert import convert
from .options import add_out_arg


def run(args) -> int:
    dst = convert(args.src, args.out, heads=args.heads, weights=args.weights, image_size=args.image_size)
    print(f"wrote {dst}/model.safetensors and {dst}/config.json")
    return 0


def add_parser(sub) -> None:
    s = sub.add_parser("convert", help="convert a paper checkpoint (.pth / .ckpt / state dict) to ours",
                       description="Convert the paper's released ALIT checkpoints, the MAGE VQGAN or MAR KL-16 "
                       "base checkpoints, or a bare state dict into a folder with model.safetensors and "
                       "config.json. Every size is inferred from the tensors. Files are read with "
                       "torch.load(weights_only=True): a file that would run code is refused.")
    s.add_argument("src", metavar="SRC", help="checkpoint file")
    add_out_arg(s, metavar="DST")
    s.add_argument("--heads", type=int, default=None,
                   help="attention heads, when the width and depth are not a paper preset")
    s.add_argument("--weights", choices=("ema", "model"), default="ema",
                   help="which weights of a training checkpoint to take (default: ema)")
    s.add_argument("--image-size", type=int, default=256,
                   help="image size of a base-tokenizer-only checkpoint (default 256)")
    s.set_defaults(func=run)
