"""Shrink a folder of photos so the shorter side is at most SIZE px (Lanczos; never enlarged), as PNG.

    python benchmarks/shrink_photos.py PHOTOS/train SMALL/train [--size 128]
    python benchmarks/shrink_photos.py PHOTOS/train TILES/train --tiles 256   # zoomed-in tiles

Training at 64 px reads each photo at random crops; decoding a 1024 px JPEG for every crop costs more
than the step itself on a CPU. Files already written are kept, so a rerun is cheap.

With `--tiles T`, each photo whose shorter side is at least T px is shrunk to T on that side and cut
into SIZE x SIZE tiles on a grid that covers it (ceil(W / SIZE) x ceil(H / SIZE) tiles, evenly
spaced, overlapping where SIZE does not divide the side): views at T / SIZE times the zoom of the
shrunk photo, more distinct training images from the same photos (log section 15).
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

from PIL import Image

from alit.images import find_images


def starts(length: int, size: int) -> list[int]:
    """Evenly spaced offsets of ceil(length / size) windows of `size` that cover [0, length)."""
    n = math.ceil(length / size)
    return [round(i * (length - size) / (n - 1)) if n > 1 else 0 for i in range(n)]


def shrink(im: Image.Image, size: int) -> Image.Image:
    scale = size / min(im.size)
    if scale < 1:
        im = im.resize((round(im.width * scale), round(im.height * scale)), Image.LANCZOS)
    return im


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src")
    ap.add_argument("dst")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--tiles", type=int, default=None, metavar="T",
                    help="cut photos of shorter side >= T, shrunk to T, into SIZE x SIZE tiles")
    args = ap.parse_args(argv)
    out = Path(args.dst)
    out.mkdir(parents=True, exist_ok=True)
    paths, problems = find_images([args.src])
    for problem in problems:
        print(f"skipped: {problem}")
    written = 0
    for path in paths:
        if args.tiles is None:
            target = out / f"{path.stem}.png"
            if target.exists():
                continue
            with Image.open(path) as im:
                shrink(im.convert("RGB"), args.size).save(target)
            written += 1
            continue
        with Image.open(path) as im:
            if min(im.size) < args.tiles:
                continue
            im = shrink(im.convert("RGB"), args.tiles)
            for y in starts(im.height, args.size):
                for x in starts(im.width, args.size):
                    target = out / f"{path.stem}-t{args.tiles}-{x}-{y}.png"
                    if not target.exists():
                        im.crop((x, y, x + args.size, y + args.size)).save(target)
                        written += 1
    print(f"{out}: {len(paths)} photos, {written} written")


if __name__ == "__main__":
    main()
