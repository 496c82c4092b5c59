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


def shrunk_size(width: int, height: int, size: int) -> tuple[int, int]:
    """(width, height) with the shorter side at most `size` (never enlarged)."""
    scale = size / min(width, height)
    return (round(width * scale), round(height * scale)) if scale < 1 else (width, height)


def write_shrunk(path: Path, out: Path, size: int) -> int:
    """OUT/<stem>.png, the photo shrunk; the number of files written (0 if it was there)."""
    target = out / f"{path.stem}.png"
    if target.exists():
        return 0
    with Image.open(path) as im:
        im.convert("RGB").resize(shrunk_size(*im.size, size), Image.LANCZOS).save(target)
    return 1


def write_tiles(path: Path, out: Path, size: int, tiles: int) -> int:
    """OUT/<stem>-t<T>-<x>-<y>.png, the tiles of the photo shrunk to T; the number written. The grid
    comes from the photo's header, so a photo whose tiles all exist is not decoded again."""
    with Image.open(path) as im:
        if min(im.size) < tiles:
            return 0
        width, height = shrunk_size(*im.size, tiles)
        targets = {(x, y): out / f"{path.stem}-t{tiles}-{x}-{y}.png"
                   for y in starts(height, size) for x in starts(width, size)}
        missing = {xy: t for xy, t in targets.items() if not t.exists()}
        if not missing:
            return 0
        im = im.convert("RGB").resize((width, height), Image.LANCZOS)
        for (x, y), target in missing.items():
            im.crop((x, y, x + size, y + size)).save(target)
    return len(missing)


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
    written = sum(write_shrunk(path, out, args.size) if args.tiles is None
                  else write_tiles(path, out, args.size, args.tiles) for path in paths)
    print(f"{out}: {len(paths)} photos, {written} written")


if __name__ == "__main__":
    main()
