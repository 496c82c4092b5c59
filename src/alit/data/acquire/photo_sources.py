"""What each source of `alit data photos` offers (the tiers are described in `photos`): pip wheels
(tier 0) and Debian packages (tier 1), each as a list of `Photo`s and, when some could not be had,
why and the command that fixes it."""
from __future__ import annotations

import importlib.util
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from .deb import Debian, extract_deb
from .rcc import read_rcc

PIP_HINT = "pip install scikit-image scikit-learn matplotlib"
FOOLBOX_HINT = "pip install --no-deps foolbox==3.3.4"


@dataclass(frozen=True)
class Photo:
    """One photo a source offers: its output file name and how to get its bytes."""

    name: str                   # output file name, e.g. "skimage-astronaut.png"
    read: Callable[[], bytes]   # the original file's bytes (JPEG, PNG or WebP)


def package_dir(module: str) -> Path | None:
    """The folder of an installed package, found without importing it."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def _files(folder: Path, names: Iterable[str], source: str) -> tuple[list[Photo], str]:
    photos, absent = [], []
    for name in names:
        path = folder / name
        if path.is_file():
            photos.append(Photo(f"{source}-{name}", path.read_bytes))
        else:
            absent.append(name)
    return photos, (f"not in {folder}: {', '.join(absent)}" if absent else "")


# scikit-image's RGB photos; its gray images (camera, coins, moon, page, text) and gray textures
# (brick, grass, gravel) are left out: the tokenizer is trained on colour photos.
SKIMAGE_PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png",
                  "motorcycle_right.png", "retina.jpg", "hubble_deep_field.jpg", "ihc.png")


def _wheel_source(module: str, pip_name: str, sub: str, names: Iterable[str] | None, source: str,
                  hint: str) -> Callable[[], tuple[list[Photo], str]]:
    def collect() -> tuple[list[Photo], str]:
        root = package_dir(module)
        if root is None:
            return [], f"{pip_name} is not installed: {hint}"
        folder = root / sub
        if names is None:  # foolbox: every ImageNet photo, not the 32x32 CIFAR / MNIST samples
            found = sorted(p.name for p in folder.glob("imagenet_*.jpg")) if folder.is_dir() else []
            if not found:
                return [], f"no imagenet_*.jpg in {folder}: {hint}"
            return _files(folder, found, source)
        return _files(folder, names, source)
    return collect


# gcompris-qt-data: (archive, folder inside it, tag in the file name). Only real photos; the
# archives' paintings/, details/ and lang/ words are drawings or tiny and left out.
GCOMPRIS_RCC = "/usr/share/gcompris-qt/rcc"
GCOMPRIS_FOLDERS = (
    ("erase", "erase/resource", "erase"),
    ("categorization", "categorization/resource/images/fishes", "fishes"),
    ("categorization", "categorization/resource/images/monuments", "monuments"),
    ("categorization", "categorization/resource/images/others", "objects"),
    ("categorization", "categorization/resource/images/renewable", "renewable"),
    ("categorization", "categorization/resource/images/tools", "tools"),
    ("explore_monuments", "explore_monuments/resource", "landmarks"),  # one subfolder per country
    ("explore_world_animals", "explore_world_animals/resource/animals", "wild"),
    ("explore_farm_animals", "explore_farm_animals/resource/animals", "farm"),
)
# 320-px copies of photos that explore_monuments has at 1024 px (landmarks-*): left out.
GCOMPRIS_COPIES = ("monuments-brandenburgGate.webp", "monuments-colosseum.webp", "monuments-greatPyramid.webp")

# opencv-doc's real colour photos in examples/data/. Left out: gray images and calibration
# boards, logos, renders (Blender_Suzanne, blox), drawings, text, a painting (starry_night), an
# edited photo (ela_modified) and synthetic blur (licenseplate_motion, text_*).
OPENCV_DATA = "usr/share/doc/opencv-doc/examples/data"
OPENCV_PHOTOS = ("aero1.jpg", "aero3.jpg", "aloeL.jpg", "aloeR.jpg", "apple.jpg", "baboon.jpg",
                 "board.jpg", "building.jpg", "butterfly.jpg", "chicky_512.png", "ela_original.jpg",
                 "fruits.jpg", "graf1.png", "graf3.png", "home.jpg", "left.jpg", "leuvenA.jpg",
                 "leuvenB.jpg", "messi5.jpg", "orange.jpg", "right.jpg", "rubberwhale1.png",
                 "rubberwhale2.png", "smarties.png", "squirrel_cls.jpg", "stuff.jpg")

MATE_NATURE = "/usr/share/backgrounds/mate/nature"

# plasma-workspace-wallpapers' photographs (one image each: name, file in contents/images/).
# Left out: its illustrations and renders, two gray photos (ColdRipple, Grey) and Opal (a render).
PLASMA_WALLPAPERS = "usr/share/wallpapers"
PLASMA_PHOTOS = tuple((name, "2560x1600.jpg") for name in (
    "BytheWater", "ColorfulCups", "DarkestHour", "EveningGlow", "FallenLeaf", "OneStandsOut", "Path",
    "summer_1am"))

def _gcompris(debian: Debian) -> tuple[list[Photo], str]:
    root = Path(GCOMPRIS_RCC)
    why = debian.ensure("gcompris-qt-data", lambda: (root / "erase.rcc").is_file())
    if why:
        return [], why
    photos, absent = [], []
    for archive, folder, tag in GCOMPRIS_FOLDERS:
        path = root / f"{archive}.rcc"
        if not path.is_file():
            absent.append(path.name)
            continue
        prefix = f"gcompris/src/activities/{folder}/"
        for inner, blob in sorted(read_rcc(path, prefix).items()):
            if inner.endswith(".webp"):
                rest = inner[len(prefix):].replace("/", "-")  # landmarks: "france-eiffelTower.webp"
                if f"{tag}-{rest}" in GCOMPRIS_COPIES:
                    continue
                photos.append(Photo(f"gcompris-{tag}-{rest}", lambda blob=blob: blob))
    return photos, (f"missing archives in {root}: {', '.join(absent)}" if absent else "")


def _opencv(debian: Debian, cache: Path) -> tuple[list[Photo], str]:
    # Installing opencv-doc pulls in large JavaScript packages and Docker images often drop
    # /usr/share/doc, so its .deb is downloaded and only the chosen photos are kept, in the cache.
    return _deb_photos(debian, cache, "opencv-doc", {f"{OPENCV_DATA}/{n}": n for n in OPENCV_PHOTOS}, "opencv")


def _plasma(debian: Debian, cache: Path) -> tuple[list[Photo], str]:
    # plasma-workspace-wallpapers is 94 MB of wallpapers; only its colour photographs are kept
    members = {f"{PLASMA_WALLPAPERS}/{name}/contents/images/{size}": f"{name}.jpg"
               for name, size in PLASMA_PHOTOS}
    return _deb_photos(debian, cache, "plasma-workspace-wallpapers", members, "plasma")


def _deb_photos(debian: Debian, cache: Path, package: str, members: dict[str, str],
                source: str) -> tuple[list[Photo], str]:
    """The photos `members` (path inside the .deb -> file name) of a Debian package: from the
    installed package if all are there, else from cache/package, filled by `apt-get download`."""
    names = sorted(members.values())
    if all(Path("/", m).is_file() for m in members):
        return [Photo(f"{source}-{n}", Path("/", m).read_bytes) for m, n in sorted(members.items())], ""
    cached = cache / package
    if not all((cached / n).is_file() for n in names):
        cache.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=cache) as tmp:  # the .deb goes when done
            deb, why = debian.download(package, Path(tmp))
            if deb is None:
                return [], f"{package} is not in the cache {cached}: {why}"
            why = extract_deb(deb, members, cached)
            if why:
                return [], why
    return _files(cached, names, source)


def _mate(debian: Debian) -> tuple[list[Photo], str]:
    folder = Path(MATE_NATURE)
    why = debian.ensure("mate-backgrounds", lambda: any(folder.glob("*.jpg")))
    if why:
        return [], why
    return _files(folder, sorted(p.name for p in folder.glob("*.jpg")), "mate")


def default_cache() -> Path:
    """Where downloaded packages' photos are kept: $XDG_CACHE_HOME/alit/photos (~/.cache/...)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "alit" / "photos"


def sources_of(tiers: tuple[int, ...], install: bool, cache: Path, log: Callable[[str], None],
               system: bool = False) -> list[tuple[str, int, Callable[[], tuple[list[Photo], str]]]]:
    debian = Debian(install, log, system)
    table = [
        ("skimage", 0, _wheel_source("skimage", "scikit-image", "data", SKIMAGE_PHOTOS, "skimage", PIP_HINT)),
        ("sklearn", 0, _wheel_source("sklearn", "scikit-learn", "datasets/images", ("china.jpg", "flower.jpg"),
                                     "sklearn", PIP_HINT)),
        ("matplotlib", 0, _wheel_source("matplotlib", "matplotlib", "mpl-data/sample_data",
                                        ("grace_hopper.jpg",), "matplotlib", PIP_HINT)),
        ("foolbox", 0, _wheel_source("foolbox", "foolbox", "data", None, "foolbox", FOOLBOX_HINT)),
        ("gcompris", 1, lambda: _gcompris(debian)),
        ("opencv", 1, lambda: _opencv(debian, cache)),
        ("mate", 1, lambda: _mate(debian)),
        ("plasma", 1, lambda: _plasma(debian, cache)),
    ]
    return [row for row in table if row[1] in tiers]
