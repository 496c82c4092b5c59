"""Shrink a folder of photos so the shorter side is at most SIZE px (Lanczos; never enlarged), as PNG.

    python benchmarks/shrink_photos.py PHOTOS/train SMALL/train [--size 128]

Training at 64 px reads each photo at random crops; decoding a 1024 px JPEG for every crop costs more
than the step itself on a CPU. Files already written are kept, so a rerun is cheap.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image

from alit.images import find_images


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src")
    ap.add_argument("dst")
    ap.add_argument("--size", type=int, default=128)
    args = ap.parse_args()
    out = Path(args.dst)
    out.mkdir(parents=True, exist_ok=True)
    paths, problems = find_images([args.src])
    for problem in problems:
        print(f"skipped: {problem}")
    written = 0
    for path in paths:
        target = out / f"{path.stem}.png"
        if target.exists():
            continue
        with Image.open(path) as im:
            im = im.convert("RGB")
            scale = args.size / min(im.size)
            if scale < 1:
                im = im.resize((round(im.width * scale), round(im.height * scale)), Image.LANCZOS)
            im.save(target)
        written += 1
    print(f"{out}: {len(paths)} photos, {written} written")


if __name__ == "__main__":
    main()
