"""Real photographs that can be had offline, assembled into `DIR/train` and `DIR/heldout`.

Two tiers (licences: each package's copyright file; the held-out photos' in assets/demo_photos/SOURCES.txt):
  tier 0  photos inside pip wheels: scikit-image, scikit-learn, matplotlib, foolbox (32 photos).
          Never installed by us; a missing package is reported with the pip line that adds it.
  tier 1  photos inside Debian packages: gcompris-qt-data (Qt .rcc archives, read by `rcc.read_rcc`),
          opencv-doc and plasma-workspace-wallpapers (downloaded, never installed, their photos
          cached), mate-backgrounds (289).
          gcompris-qt-data and mate-backgrounds are installed with apt-get only when the user allows
          it (`system`, `alit data photos --yes`: system-wide, root, network to the Debian mirror).

Every output file is an RGB JPEG or PNG named `<source>-<original name>`: JPEGs and RGB PNGs are
copied byte for byte; WebP (gcompris) and PNGs with alpha are decoded and saved as RGB PNG, which
keeps the decoded pixels exactly. Gray images, textures, logos, renders and paintings are left out.

The split is fixed: a photo is held out iff its name is in `assets/photos_heldout.txt`, so it does not
depend on which tiers a machine has. `choose_heldout` made that list once over the full tier 0+1 set.
"""
from __future__ import annotations

import hashlib
import io
import math
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Callable, Iterable

from PIL import Image

from ...errors import AlitError
from ...files import atomic_write
from .photo_sources import Photo, default_cache, sources_of

SPLITS = ("train", "heldout")


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


# Pairs of one scene (stereo views, before/after): held out together or not at all, so a
# held-out photo never has a near copy in train.
SAME_SCENE = (
    ("skimage-motorcycle_left.png", "skimage-motorcycle_right.png"),
    ("opencv-aero1.jpg", "opencv-aero3.jpg"), ("opencv-aloeL.jpg", "opencv-aloeR.jpg"),
    ("opencv-graf1.png", "opencv-graf3.png"), ("opencv-left.jpg", "opencv-right.jpg"),
    ("opencv-leuvenA.jpg", "opencv-leuvenB.jpg"), ("opencv-rubberwhale1.png", "opencv-rubberwhale2.png"),
)


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


def _collect(tiers: Iterable[int], install: bool, cache: str | Path | None, log: Callable[[str], None] | None,
             system: bool = False) -> list[tuple[SourceResult, list[tuple[str, Callable[[], bytes]]]]]:
    """Per source: its result so far and its photos as (output name, bytes to write)."""
    cache = Path(cache) if cache is not None else default_cache()
    found = []
    for source, tier, collect in sources_of(_checked_tiers(tiers), install, cache, log or (lambda line: None),
                                            system):
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
             log: Callable[[str], None] | None = None, system: bool = False) -> PhotosSummary:
    """Assemble the photos of `tiers` into out/train and out/heldout; idempotent.

    install: allow `apt-get download` of the tier-1 Debian packages read from their .deb (no root,
        nothing installed, their photos kept in `cache`); without it only what is already on disk
        (or in `cache`) is used.
    system: also allow `apt-get install` (root, system-wide) of the packages read where they are
        installed (gcompris-qt-data, mate-backgrounds); without it a missing one is reported with
        its install line.
    cache: where downloaded packages' photos are kept (default `default_cache()`).
    heldout: the held-out names (default: the committed list).
    log: called with a line before each slow step (apt-get); silent by default.
    """
    out = Path(out)
    heldout = heldout_names() if heldout is None else heldout
    found = _collect(tiers, install, cache, log, system)
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
