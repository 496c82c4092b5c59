"""Bundle the held-out photos that `alit demo` runs on, so the demo needs nothing but `pip install`.

    alit data photos --out /tmp/photos && python benchmarks/make_demo_photos.py /tmp/photos/heldout

Each photo named in assets/photos_heldout.txt is read from HELDOUT_DIR, shrunk (Lanczos) so its
shorter side is 128 px (never enlarged) and written as JPEG quality 92 to
src/alit/assets/demo_photos/<stem>.jpg, with SOURCES.txt saying where each came from. The photos
are made once and committed; run this again only when the held-out list changes: photos already
there and their SOURCES.txt lines (licences checked by a person) are kept, photos no longer held
out are removed, and a new photo gets a line saying "licence: UNCHECKED" until someone checks it.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from alit.images import read_image
from alit.data.acquire.photos import heldout_names

OUT = Path(__file__).resolve().parents[1] / "src" / "alit" / "assets" / "demo_photos"
SHORT_SIDE = 128
QUALITY = 92
# where the photos of each `alit data photos` source come from; each carries its own licence terms
ORIGINS = {
    "foolbox": "the foolbox 3.3.4 wheel (PyPI), foolbox/data: ImageNet validation samples",
    "gcompris": "Debian gcompris-qt-data; licence per file in /usr/share/doc/gcompris-qt-data/copyright",
    "mate": "Debian mate-backgrounds (GPL-2+); /usr/share/doc/mate-backgrounds/copyright",
    "opencv": "Debian opencv-doc, examples/data; usr/share/doc/opencv-doc/copyright in the .deb",
    "plasma": "Debian plasma-workspace-wallpapers; usr/share/doc/plasma-workspace-wallpapers/copyright",
    "skimage": "the scikit-image wheel (PyPI), skimage/data; licences in skimage/data/README.txt",
    "sklearn": "the scikit-learn wheel (PyPI), sklearn/datasets/images",
    "matplotlib": "the matplotlib wheel (PyPI), mpl-data/sample_data",
}


def shrink(path: Path) -> Image.Image:
    """The photo at `path`, upright RGB, with its shorter side at most SHORT_SIDE px."""
    pixels = (read_image(path).numpy().transpose(1, 2, 0) * 255).round().astype(np.uint8)  # [H, W, 3]
    image = Image.fromarray(pixels)
    scale = SHORT_SIDE / min(image.size)
    if scale < 1:
        image = image.resize((round(image.width * scale), round(image.height * scale)), Image.LANCZOS)
    return image


def read_sources(path: Path) -> tuple[dict[str, str], list[str]]:
    """SOURCES.txt as (photo file name -> the rest of its line, the comment lines at its top)."""
    if not path.is_file():
        return {}, []
    entries, header = {}, []
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            header.append(line)
        elif line.strip():
            name, rest = line.split(None, 1)
            entries[name] = rest
    return entries, header


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("heldout", type=Path, metavar="HELDOUT_DIR", help="DIR/heldout of `alit data photos --out DIR`")
    args = p.parse_args()
    names = sorted(heldout_names())
    missing = [n for n in names if not (args.heldout / n).is_file()]
    if missing:
        raise SystemExit(f"{args.heldout}: {len(missing)} held-out photo(s) missing, e.g. {missing[:3]}; "
                         f"run `alit data photos` with every tier")
    OUT.mkdir(parents=True, exist_ok=True)
    wanted = {f"{Path(name).stem}.jpg": name for name in names}
    for old in OUT.glob("*.jpg"):  # photos no longer held out go; the others stay as committed
        if old.name not in wanted:
            old.unlink()
    entries, header = read_sources(OUT / "SOURCES.txt")
    lines = []
    for dst_name, name in sorted(wanted.items()):
        dst = OUT / dst_name
        if not dst.is_file():
            shrink(args.heldout / name).save(dst, quality=QUALITY)
        # a new photo's licence is for a person to check and write in: the tests refuse UNCHECKED
        lines.append(f"{dst_name}  " + entries.get(dst_name, f"{name}, from {ORIGINS[name.split('-', 1)[0]]}; "
                                                   "licence: UNCHECKED; copyright: ?; checked: not yet"))
    header = header or [
        "# The photos of `alit demo`: the held-out photos of `alit data photos` (assets/photos_heldout.txt),",
        f"# shrunk to {SHORT_SIDE} px on the shorter side, JPEG quality {QUALITY} (benchmarks/make_demo_photos.py)."]
    (OUT / "SOURCES.txt").write_text("\n".join(header + lines) + "\n")
    total = sum(f.stat().st_size for f in OUT.glob("*.jpg"))
    print(f"{OUT}: {len(names)} photos, {total / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
