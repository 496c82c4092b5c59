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
