"""Real photographs that can be had offline, assembled into `DIR/train` and `DIR/heldout`.

Two tiers (licences: each package's copyright file; the held-out photos' in assets/demo_photos/SOURCES.txt):
  tier 0  photos inside pip wheels: scikit-image, scikit-learn, matplotlib, foolbox (32 photos).
          Never installed by us; a missing package is reported with the pip line that adds it.
  tier 1  photos inside Debian packages: gcompris-qt-data (Qt .rcc archives, read by `read_rcc`),
          opencv-doc and plasma-workspace-wallpapers (downloaded, never installed, their photos
          cached), mate-backgrounds (289).
          Installed with apt-get when allowed (root, network to the Debian mirror).

Every output file is an RGB JPEG or PNG named `<source>-<original name>`: JPEGs and RGB PNGs are
copied byte for byte; WebP (gcompris) and PNGs with alpha are decoded and saved as RGB PNG, which
keeps the decoded pixels exactly. Gray images, textures, logos, renders and paintings are left out.

The split is fixed: a photo is held out iff its name is in `assets/photos_heldout.txt`, so it does not
depend on which tiers a machine has. `choose_heldout` made that list once over the full tier 0+1 set.
"""
from __future__ import annotations

import hashlib
import importlib.util
import io
import math
import os
import shutil
import struct
import subprocess
import tarfile
import tempfile
import zlib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Callable, Iterable

from PIL import Image

from .errors import AlitError
from .files import atomic_write

PIP_HINT = "pip install scikit-image scikit-learn matplotlib"
FOOLBOX_HINT = "pip install --no-deps foolbox==3.3.4"
SPLITS = ("train", "heldout")


# ---------------------------------------------------------------------------------------------
# Qt resource archives (.rcc)
# Layout: header "qres", version, offsets of the node tree, the data block and the names block
# (v3 adds a flags word). Tree nodes are 14 bytes (v1) or 22 bytes (v2+, an 8-byte mtime at the
# end): name offset u32, flags u16, then for a directory child count u32 + index of the first child,
# for a file country u16 + language u16 + data offset u32. A name is u16 length, u32 hash,
# UTF-16BE text; a datum is u32 size then its bytes, which for zlib entries start with the u32
# uncompressed size. All integers are big-endian.

RCC_COMPRESSED, RCC_DIRECTORY, RCC_COMPRESSED_ZSTD = 0x1, 0x2, 0x4


def read_rcc(path_or_bytes: str | Path | bytes, prefix: str = "") -> dict[str, bytes]:
    """Files of a Qt .rcc archive whose path starts with `prefix`, as {path: bytes} (decompressed).

    Paths have no leading slash, e.g. "gcompris/src/activities/erase/resource/apple.webp".
    """
    blob = path_or_bytes if isinstance(path_or_bytes, bytes) else Path(path_or_bytes).read_bytes()
    where = "<bytes>" if isinstance(path_or_bytes, bytes) else str(path_or_bytes)
    try:
        magic, version, tree, data, names = struct.unpack_from(">4sIIII", blob, 0)
    except struct.error:
        raise AlitError(f"{where}: too short for a Qt resource archive") from None
    if magic != b"qres" or version not in (1, 2, 3):
        raise AlitError(f"{where}: not a Qt resource archive (magic {magic!r}, version {version})")
    node_size = 14 if version == 1 else 22

    def name_at(offset: int) -> str:
        (length,) = struct.unpack_from(">H", blob, names + offset)
        start = names + offset + 6  # skip the length and the hash
        return blob[start:start + 2 * length].decode("utf-16-be")

    def datum(offset: int, flags: int, path: str) -> bytes:
        (size,) = struct.unpack_from(">I", blob, data + offset)
        raw = blob[data + offset + 4:data + offset + 4 + size]
        if len(raw) != size:
            raise AlitError(f"{where}: {path} is cut short ({len(raw)} of {size} bytes)")
        if flags & RCC_COMPRESSED_ZSTD:
            raise AlitError(f"{where}: {path} is zstd-compressed, which this reader does not handle")
        if not flags & RCC_COMPRESSED:
            return raw
        (expected,) = struct.unpack_from(">I", raw, 0)
        out = zlib.decompress(raw[4:])
        if len(out) != expected:
            raise AlitError(f"{where}: {path} inflates to {len(out)} bytes, header says {expected}")
        return out

    files: dict[str, bytes] = {}
    stack = [(0, "")]  # (node index, path of that node); node 0 is the unnamed root
    try:
        while stack:
            index, path = stack.pop()
            at = tree + index * node_size
            name_offset, flags = struct.unpack_from(">IH", blob, at)
            if index:
                path = f"{path}/{name_at(name_offset)}" if path else name_at(name_offset)
            if flags & RCC_DIRECTORY:
                count, first = struct.unpack_from(">II", blob, at + 6)
                if path and not (path.startswith(prefix) or prefix.startswith(path + "/")):
                    continue  # nothing under this folder can match
                stack.extend((first + i, path) for i in range(count))
            elif path.startswith(prefix):
                (offset,) = struct.unpack_from(">I", blob, at + 10)
                files[path] = datum(offset, flags, path)
    except (struct.error, zlib.error, UnicodeDecodeError) as e:
        raise AlitError(f"{where}: corrupt Qt resource archive ({e})") from None
    return files


# ---------------------------------------------------------------------------------------------
# What each source offers

@dataclass(frozen=True)
class Photo:
    """One photo a source offers: its output file name and how to get its bytes."""

    name: str                   # output file name, e.g. "skimage-astronaut.png"
    read: Callable[[], bytes]   # the original file's bytes (JPEG, PNG or WebP)


@dataclass
class SourceResult:
    """What one source gave on this machine."""

    source: str                 # "skimage", "gcompris", ...
    tier: int
    found: int = 0              # photos this source offers here
    written: int = 0            # files new in DIR after this run
    moved: int = 0              # files moved between train/ and heldout/ to follow the list
    missing: str = ""           # what could not be had and why, with the command that fixes it


@dataclass
class PhotosSummary:
    """The result of `assemble`: per-source counts and the folder's totals."""

    out: Path
    sources: list[SourceResult] = field(default_factory=list)
    train: int = 0              # files in out/train after the run
    heldout: int = 0            # files in out/heldout after the run

    @property
    def empty(self) -> bool:
        return self.train + self.heldout == 0

    @property
    def written(self) -> int:
        return sum(s.written for s in self.sources)

    def format(self) -> str:
        lines = [f"{'source':<12} tier  found  written  not had"]
        for s in self.sources:
            lines.append(f"{s.source:<12} {s.tier:>4} {s.found:>6} {s.written:>8}  {s.missing or '-'}")
        total = self.train + self.heldout
        if total == 0:
            news = "no photos"
        elif self.written or any(s.moved for s in self.sources):
            moved = sum(s.moved for s in self.sources)
            news = f"{self.written} new files" + (f", {moved} moved between splits" if moved else "")
        else:
            news = f"nothing new: all {total} photos were already there"
        lines.append(f"{self.out}: {self.train} train, {self.heldout} held out; {news}")
        return "\n".join(lines)


def _package_dir(module: str) -> Path | None:
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
        root = _package_dir(module)
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

# Pairs of one scene (stereo views, before/after): held out together or not at all, so a
# held-out photo never has a near copy in train.
SAME_SCENE = (
    ("skimage-motorcycle_left.png", "skimage-motorcycle_right.png"),
    ("opencv-aero1.jpg", "opencv-aero3.jpg"), ("opencv-aloeL.jpg", "opencv-aloeR.jpg"),
    ("opencv-graf1.png", "opencv-graf3.png"), ("opencv-left.jpg", "opencv-right.jpg"),
    ("opencv-leuvenA.jpg", "opencv-leuvenB.jpg"), ("opencv-rubberwhale1.png", "opencv-rubberwhale2.png"),
)


class _Debian:
    """apt-get, run only when allowed; each method returns '' or why the package could not be had."""

    def __init__(self, install: bool, log: Callable[[str], None]):
        self.install, self.log, self._updated = install, log, False

    def why_not(self) -> str:
        if not self.install:
            return "--no-install given"
        if shutil.which("apt-get") is None:
            return "no apt-get on this machine"
        if os.geteuid() != 0:
            return "not root"
        return ""

    def _apt(self, args: list[str], cwd: Path | None = None) -> str:
        """Run apt-get; on failure update the package lists once and retry. '' or the error."""
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for attempt in range(2):
            run = subprocess.run(["apt-get", *args], cwd=cwd, env=env, capture_output=True, text=True)
            if run.returncode == 0:
                return ""
            if attempt or self._updated:
                break
            self.log("apt-get update")
            self._updated = True
            subprocess.run(["apt-get", "update"], env=env, capture_output=True, text=True)
        lines = [l for l in (run.stderr + run.stdout).splitlines() if l.startswith("E:")]
        return (lines[-1] if lines else f"apt-get {args[0]} exited with {run.returncode}").strip()

    def ensure(self, package: str, present: Callable[[], bool]) -> str:
        """Install `package` unless present(); '' when it is there now, else why not."""
        if present():
            return ""
        why = self.why_not()
        if why:
            return f"{package} is not installed ({why}): sudo apt-get install -y {package}"
        self.log(f"apt-get install -y --no-install-recommends {package}")
        error = self._apt(["install", "-y", "--no-install-recommends", package])
        if error or not present():
            return f"apt-get install {package} failed: {error or 'its files did not appear'}"
        return ""

    def download(self, package: str, into: Path) -> tuple[Path | None, str]:
        """`apt-get download` a .deb into `into` (no root needed, only the mirror)."""
        if not self.install:
            return None, f"--no-install given (without it: apt-get download {package})"
        if shutil.which("apt-get") is None:
            return None, "no apt-get on this machine"
        self.log(f"apt-get download {package}")
        into.mkdir(parents=True, exist_ok=True)
        error = self._apt(["download", package], cwd=into)
        debs = sorted(into.glob(f"{package}_*.deb"))
        if error or not debs:
            return None, f"apt-get download {package} failed: {error or 'no .deb appeared'}"
        return debs[-1], ""


def _gcompris(debian: _Debian) -> tuple[list[Photo], str]:
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


def _opencv(debian: _Debian, cache: Path) -> tuple[list[Photo], str]:
    # Installing opencv-doc pulls in large JavaScript packages and Docker images often drop
    # /usr/share/doc, so its .deb is downloaded and only the chosen photos are kept, in the cache.
    return _deb_photos(debian, cache, "opencv-doc", {f"{OPENCV_DATA}/{n}": n for n in OPENCV_PHOTOS}, "opencv")


def _plasma(debian: _Debian, cache: Path) -> tuple[list[Photo], str]:
    # plasma-workspace-wallpapers is 94 MB of wallpapers; only its colour photographs are kept
    members = {f"{PLASMA_WALLPAPERS}/{name}/contents/images/{size}": f"{name}.jpg"
               for name, size in PLASMA_PHOTOS}
    return _deb_photos(debian, cache, "plasma-workspace-wallpapers", members, "plasma")


def _deb_photos(debian: _Debian, cache: Path, package: str, members: dict[str, str],
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
            why = _extract_deb(deb, members, cached)
            if why:
                return [], why
    return _files(cached, names, source)


def _extract_deb(deb: Path, members: dict[str, str], into: Path) -> str:
    """Copy each member (path inside the .deb -> file name) out of a .deb into `into`; '' or what
    went wrong."""
    if shutil.which("dpkg-deb") is None:
        return f"no dpkg-deb on this machine to open {deb.name}"
    wanted = {f"./{m}": n for m, n in members.items()}
    into.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE)
    try:
        with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:  # streamed: nothing else on disk
            for member in tar:
                name = wanted.pop(member.name, None)
                if name and member.isfile():
                    blob = tar.extractfile(member).read()
                    atomic_write(into / name, lambda tmp: tmp.write_bytes(blob))
    finally:
        proc.stdout.close()
        proc.wait()
    return f"{deb.name} lacks {', '.join(sorted(wanted.values()))}" if wanted else ""


def _mate(debian: _Debian) -> tuple[list[Photo], str]:
    folder = Path(MATE_NATURE)
    why = debian.ensure("mate-backgrounds", lambda: any(folder.glob("*.jpg")))
    if why:
        return [], why
    return _files(folder, sorted(p.name for p in folder.glob("*.jpg")), "mate")


def default_cache() -> Path:
    """Where downloaded packages' photos are kept: $XDG_CACHE_HOME/alit/photos (~/.cache/...)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "alit" / "photos"


def _sources(tiers: tuple[int, ...], install: bool, cache: Path,
             log: Callable[[str], None]) -> list[tuple[str, int, Callable[[], tuple[list[Photo], str]]]]:
    debian = _Debian(install, log)
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


# ---------------------------------------------------------------------------------------------
# The split

def heldout_names(path: str | Path | None = None) -> frozenset[str]:
    """The committed held-out list (one file name a line, '#' comments)."""
    text = (Path(path).read_text() if path is not None
            else resources.files("alit").joinpath("assets/photos_heldout.txt").read_text())
    return frozenset(l.strip() for l in text.splitlines() if l.strip() and not l.startswith("#"))


def split_of(name: str, heldout: frozenset[str]) -> str:
    return "heldout" if name in heldout else "train"


def _scene(name: str) -> str:
    for pair in SAME_SCENE:
        if name in pair:
            return pair[0]
    return name


def choose_heldout(names: Iterable[str], fraction: float = 0.15, seed: int = 0) -> list[str]:
    """The seeded held-out choice that made assets/photos_heldout.txt (kept to regenerate it).

    Per source (the name's prefix before the first '-'), ceil(fraction * n) photos of sources with
    at least 3 photos, by a hash of seed and scene: the same for any order of `names`, and a scene's
    views are held out together.
    """
    by_source: dict[str, set[str]] = {}
    for name in names:
        by_source.setdefault(name.split("-", 1)[0], set()).add(name)
    chosen: list[str] = []
    for source, members in sorted(by_source.items()):
        if len(members) < 3:
            continue
        want = math.ceil(fraction * len(members))
        scenes: dict[str, list[str]] = {}
        for name in members:
            scenes.setdefault(_scene(name), []).append(name)
        order = sorted(scenes, key=lambda s: hashlib.sha256(f"{seed}:{s}".encode()).hexdigest())
        taken: list[str] = []
        for scene in order:
            if len(taken) >= want:
                break
            taken += scenes[scene]
        chosen += taken
    return sorted(chosen)


# ---------------------------------------------------------------------------------------------
# Writing

def _needs_decoding(name: str, blob: bytes) -> bool:
    """True unless the bytes are already an RGB JPEG or PNG that can be copied as they are."""
    if name.lower().endswith((".jpg", ".jpeg")):
        return False
    if not name.lower().endswith(".png"):
        return True
    with Image.open(io.BytesIO(blob)) as image:  # reads the header only
        return image.mode != "RGB"


def _encoded(photo: Photo) -> tuple[str, Callable[[], bytes]]:
    """Output name and a function giving the bytes to write (an RGB JPEG or PNG)."""
    stem, ext = os.path.splitext(photo.name)
    if ext.lower() in (".jpg", ".jpeg"):
        return photo.name, photo.read

    def png() -> bytes:
        blob = photo.read()
        if not _needs_decoding(photo.name, blob):
            return blob
        with Image.open(io.BytesIO(blob)) as image:
            buffer = io.BytesIO()
            image.convert("RGB").save(buffer, format="PNG")
        return buffer.getvalue()
    return stem + ".png", png


def _place(name: str, produce: Callable[[], bytes], out: Path, split: str) -> str:
    """Put one photo in out/split. Returns "present", "moved" or "written"."""
    dest = out / split / name
    if dest.is_file():
        return "present"
    other = out / ("train" if split == "heldout" else "heldout") / name
    if other.is_file():
        os.replace(other, dest)
        return "moved"
    atomic_write(dest, lambda tmp: tmp.write_bytes(produce()))  # a killed run leaves no half file
    return "written"


def parse_tiers(text: str) -> tuple[int, ...]:
    """"0,1" -> (0, 1)."""
    parts = [t.strip() for t in text.split(",") if t.strip()]
    if not parts or not all(t in ("0", "1") for t in parts):
        raise AlitError(f"--tiers takes 0, 1 or 0,1, got {text!r}")
    return _checked_tiers(int(t) for t in parts)


def _checked_tiers(tiers: Iterable[int]) -> tuple[int, ...]:
    tiers = tuple(sorted(set(tiers)))
    if not tiers or not set(tiers) <= {0, 1}:
        raise AlitError(f"tiers are 0 (pip wheels) and/or 1 (Debian packages), got {tiers}")
    return tiers


def _collect(tiers: Iterable[int], install: bool, cache: str | Path | None, log: Callable[[str], None] | None
             ) -> list[tuple[SourceResult, list[tuple[str, Callable[[], bytes]]]]]:
    """Per source: its result so far and its photos as (output name, bytes to write)."""
    cache = Path(cache) if cache is not None else default_cache()
    found = []
    for source, tier, collect in _sources(_checked_tiers(tiers), install, cache, log or (lambda line: None)):
        photos, missing = collect()
        encoded = [_encoded(p) for p in photos]
        if len({name for name, _ in encoded}) != len(encoded):
            raise AlitError(f"{source}: two photos map to one file name")
        found.append((SourceResult(source, tier, found=len(photos), missing=missing), encoded))
    return found


def photo_names(tiers: Iterable[int] = (0, 1), install: bool = False, cache: str | Path | None = None
                ) -> list[str]:
    """The output file names of every photo the sources of `tiers` offer here (nothing written)."""
    return sorted(name for _, encoded in _collect(tiers, install, cache, None) for name, _ in encoded)


def assemble(out: str | Path, tiers: Iterable[int] = (0, 1), install: bool = True,
             cache: str | Path | None = None, heldout: frozenset[str] | None = None,
             log: Callable[[str], None] | None = None) -> PhotosSummary:
    """Assemble the photos of `tiers` into out/train and out/heldout; idempotent.

    install: allow apt-get to install (root) or download the tier-1 Debian packages; without it
        only what is already on disk (or in `cache`) is used.
    cache: where downloaded packages' photos are kept (default `default_cache()`).
    heldout: the held-out names (default: the committed list).
    log: called with a line before each slow step (apt-get); silent by default.
    """
    out = Path(out)
    heldout = heldout_names() if heldout is None else heldout
    found = _collect(tiers, install, cache, log)
    for split in SPLITS:
        (out / split).mkdir(parents=True, exist_ok=True)
    summary = PhotosSummary(out)
    for result, encoded in found:
        for name, produce in encoded:
            outcome = _place(name, produce, out, split_of(name, heldout))
            result.written += outcome == "written"
            result.moved += outcome == "moved"
        summary.sources.append(result)
    summary.train = sum(1 for p in (out / "train").iterdir() if not p.name.startswith("."))
    summary.heldout = sum(1 for p in (out / "heldout").iterdir() if not p.name.startswith("."))
    return summary
