"""`alit data photos`: the .rcc reader, the committed split, idempotent assembly, the CLI."""
import hashlib
import importlib.util
import io
import random
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import pytest
from PIL import Image

import alit
from alit.data.acquire import deb, photo_sources, photos, rcc
from alit.cli import main
from alit.errors import AlitError
from conftest import run_alit

HAS_SKIMAGE = importlib.util.find_spec("skimage") is not None  # found, not imported: it is slow
needs_skimage = pytest.mark.skipif(not HAS_SKIMAGE, reason="scikit-image not installed (pip install scikit-image)")


# --- a tiny Qt resource archive, written the way rcc does (format v3) -----------------------------

def _qt_hash(name: str) -> int:
    h = 0
    for (unit,) in struct.iter_unpack(">H", name.encode("utf-16-be")):
        h = (h << 4) + unit
        h ^= (h & 0xF0000000) >> 23
        h &= 0x0FFFFFFF
    return h


def build_rcc(files: dict[str, tuple[bytes, bool]], version: int = 3) -> bytes:
    """{path: (bytes, zlib-compress?)} -> a Qt .rcc: header, data block, names block, node tree."""
    root: dict = {}
    for path, entry in files.items():
        *folders, leaf = path.split("/")
        node = root
        for folder in folders:
            node = node.setdefault(folder, {})
        node[leaf] = entry
    names, name_offsets, data = bytearray(), {}, bytearray()

    def name_offset(name: str) -> int:
        if name not in name_offsets:
            name_offsets[name] = len(names)
            text = name.encode("utf-16-be")
            names.extend(struct.pack(">HI", len(text) // 2, _qt_hash(name)) + text)
        return name_offsets[name]

    nodes, records = [("", root)], []  # breadth first: a folder's children are consecutive nodes
    for index, (name, item) in enumerate(nodes):
        offset = name_offset(name) if index else 0
        if isinstance(item, dict):
            children = sorted(item.items(), key=lambda kv: _qt_hash(kv[0]))
            records.append(struct.pack(">IHII", offset, rcc.RCC_DIRECTORY, len(children), len(nodes)))
            nodes.extend(children)
        else:
            blob, compress = item
            payload = struct.pack(">I", len(blob)) + zlib.compress(blob) if compress else blob
            records.append(struct.pack(">IHHHI", offset, int(compress), 0, 0, len(data)))
            data.extend(struct.pack(">I", len(payload)) + payload)
        if version >= 2:
            records[-1] += struct.pack(">Q", 0)  # last modified
    header = 24 if version >= 3 else 20
    data_at, names_at = header, header + len(data)
    tree_at = names_at + len(names)
    head = struct.pack(">4sIIII", b"qres", version, tree_at, data_at, names_at)
    if version >= 3:
        head += struct.pack(">I", 0)  # overall flags
    return head + bytes(data) + bytes(names) + b"".join(records)


PLAIN = b"plain bytes, stored as they are"
PACKED = bytes(range(256)) * 40  # compressible


@pytest.mark.parametrize("version", [1, 2, 3])
def test_read_rcc_plain_and_zlib(tmp_path, version):
    blob = build_rcc({"gcompris/a/plain.txt": (PLAIN, False), "gcompris/a/b/packed.bin": (PACKED, True),
                      "gcompris/café.txt": (b"x", False)}, version=version)
    assert blob[:4] == b"qres" and struct.unpack_from(">I", blob, 4)[0] == version
    path = tmp_path / "tiny.rcc"
    path.write_bytes(blob)
    assert rcc.read_rcc(path) == {"gcompris/a/plain.txt": PLAIN, "gcompris/a/b/packed.bin": PACKED,
                                     "gcompris/café.txt": b"x"}
    assert rcc.read_rcc(blob, "gcompris/a/b/") == {"gcompris/a/b/packed.bin": PACKED}
    assert rcc.read_rcc(blob, "other/") == {}


def test_read_rcc_refuses_what_it_cannot_read():
    with pytest.raises(AlitError, match="not a Qt resource"):
        rcc.read_rcc(b"RIFF" + bytes(40))
    with pytest.raises(AlitError, match="too short"):
        rcc.read_rcc(b"qres")
    blob = bytearray(build_rcc({"a.bin": (PACKED, True)}))
    blob[-22 + 4:-22 + 6] = struct.pack(">H", rcc.RCC_COMPRESSED_ZSTD)  # the file node's flags
    with pytest.raises(AlitError, match="zstd"):
        rcc.read_rcc(bytes(blob))
    with pytest.raises(AlitError, match="corrupt|cut short"):
        rcc.read_rcc(build_rcc({"a.bin": (PACKED, True)})[:60] + bytes(8))


@pytest.mark.skipif(not Path(photo_sources.GCOMPRIS_RCC, "erase.rcc").is_file(), reason="gcompris-qt-data not installed")
def test_read_rcc_on_gcompris():
    files = rcc.read_rcc(Path(photo_sources.GCOMPRIS_RCC, "erase.rcc"), "gcompris/src/activities/erase/resource/")
    webp = [blob for path, blob in files.items() if path.endswith(".webp")]
    assert len(webp) > 20
    with Image.open(io.BytesIO(webp[0])) as image:
        assert image.mode == "RGB" and min(image.size) >= 200


# --- the split ---------------------------------------------------------------------------------

def test_committed_heldout_list():
    heldout = photos.heldout_names()
    text = (Path(alit.__file__).parent / "assets" / "photos_heldout.txt").read_text()
    listed = [l for l in text.splitlines() if l and not l.startswith("#")]
    assert len(listed) == len(heldout) == 48  # no duplicates, and the list never shrinks by accident
    sources = {"skimage", "sklearn", "matplotlib", "foolbox", "gcompris", "opencv", "mate", "plasma"}
    assert {name.split("-", 1)[0] for name in heldout} <= sources
    tier0 = [n for n in heldout if n.split("-", 1)[0] in ("skimage", "sklearn", "matplotlib", "foolbox")]
    assert len(tier0) >= 2  # a machine with only the pip wheels still has a held-out set
    assert not heldout & set(REPLACED)  # the photos without a licence to ship are not held out
    assert all(n.endswith((".png", ".jpg")) for n in heldout)
    for pair in photos.SAME_SCENE:  # a scene's views are held out together or not at all
        assert len({n in heldout for n in pair}) == 1
    assert photos.split_of(listed[0], heldout) == "heldout"
    assert photos.split_of("skimage-astronaut.png", heldout) == "train"


def test_choose_heldout_is_seeded_and_order_free():
    names = ([f"gcompris-erase-{i}.png" for i in range(40)] + [f"foolbox-imagenet_{i:02d}.jpg" for i in range(20)]
             + ["sklearn-china.jpg", "sklearn-flower.jpg"] + list(photos.SAME_SCENE[0]))
    chosen = photos.choose_heldout(names)
    shuffled = names[:]
    random.Random(1).shuffle(shuffled)
    assert photos.choose_heldout(shuffled) == chosen
    assert photos.choose_heldout(names, seed=1) != chosen
    per_source = {s: sum(n.startswith(s + "-") for n in chosen) for s in ("gcompris", "foolbox", "sklearn")}
    assert per_source == {"gcompris": 6, "foolbox": 3, "sklearn": 0}  # ceil(15%); none of a 2-photo source
    for pair in photos.SAME_SCENE:
        assert len({n in chosen for n in pair}) == 1


# The hand edit of the committed list (its header says why): the ImageNet photos out, plasma photos in.
REPLACED = {"foolbox-imagenet_02_438.jpg": "plasma-ColorfulCups.jpg",
            "foolbox-imagenet_04_949.jpg": "plasma-Path.jpg",
            "foolbox-imagenet_18_317.jpg": "plasma-summer_1am.jpg"}


def test_committed_list_is_the_seeded_choice_over_the_full_set():
    names = photo_names_or_skip()
    first = [n for n in names if not n.startswith("plasma-")]  # the list was made before plasma came
    if len(first) != 313:  # another release of a package: the list stays as committed
        pytest.skip(f"{len(first)} photos here, the list was made over 313")
    chosen = [REPLACED.get(n, n) for n in photos.choose_heldout(first, fraction=0.15, seed=0)]
    assert sorted(chosen) == sorted(photos.heldout_names())
    plasma = [n for n in names if n.startswith("plasma-")]
    by_hash = sorted(plasma, key=lambda s: hashlib.sha256(f"0:{s}".encode()).hexdigest())
    assert sorted(by_hash[:3]) == sorted(REPLACED.values())


def photo_names_or_skip() -> list[str]:
    found = photos._collect((0, 1), install=False, cache=None, log=None)
    missing = [r.source for r, _ in found if r.missing or not r.found]
    if missing:
        pytest.skip(f"not every source is here (missing: {', '.join(missing)})")
    return sorted(name for _, encoded in found for name, _ in encoded)


def test_parse_tiers():
    assert photos.parse_tiers("0,1") == (0, 1) and photos.parse_tiers("1") == (1,)
    for bad in ("2", "", "a", "0,2"):
        with pytest.raises(AlitError, match="tiers"):
            photos.parse_tiers(bad)


# --- writing -------------------------------------------------------------------------------------

def test_webp_and_rgba_become_rgb_png():
    image = Image.new("RGBA", (8, 6), (10, 200, 30, 128))
    for fmt, name in (("WEBP", "gcompris-x-a.webp"), ("PNG", "opencv-a.png")):
        buffer = io.BytesIO()
        image.save(buffer, format=fmt, lossless=True)
        out_name, produce = photos._encoded(photo_sources.Photo(name, buffer.getvalue))
        assert out_name == name.rsplit(".", 1)[0] + ".png"
        with Image.open(io.BytesIO(produce())) as written:
            assert (written.format, written.mode, written.size) == ("PNG", "RGB", (8, 6))
            assert written.getpixel((0, 0)) == (10, 200, 30)


def test_missing_pip_packages_are_named_with_their_install_line(tmp_path, monkeypatch):
    monkeypatch.setattr(photo_sources, "package_dir", lambda module: None)
    summary = photos.assemble(tmp_path, tiers=(0,), install=False)
    assert summary.empty and [s.found for s in summary.sources] == [0, 0, 0, 0]
    missing = {s.source: s.missing for s in summary.sources}
    assert photo_sources.PIP_HINT in missing["skimage"] and photo_sources.FOOLBOX_HINT in missing["foolbox"]
    assert "no photos" in summary.format()


@needs_skimage
def test_tier0_assembly_is_idempotent(tmp_path):
    heldout = photos.heldout_names()
    first = photos.assemble(tmp_path, tiers=(0,), install=False)
    skimage = next(s for s in first.sources if s.source == "skimage")
    assert skimage.found == skimage.written == len(photo_sources.SKIMAGE_PHOTOS) and not skimage.missing
    files = {p.name: p for split in photos.SPLITS for p in (tmp_path / split).iterdir()}
    assert len(files) == first.written == first.train + first.heldout
    for name, path in files.items():
        assert path.parent.name == photos.split_of(name, heldout)
        assert name.split("-", 1)[0] in ("skimage", "sklearn", "matplotlib", "foolbox")
    assert (tmp_path / "heldout" / "skimage-retina.jpg").is_file()  # listed, so held out
    with Image.open(tmp_path / "train" / "skimage-astronaut.png") as image:
        assert image.mode == "RGB"

    stamps = {name: path.stat().st_mtime_ns for name, path in files.items()}
    again = photos.assemble(tmp_path, tiers=(0,), install=False)
    assert again.written == 0 and "nothing new" in again.format()
    assert {n: p.stat().st_mtime_ns for n, p in files.items()} == stamps

    (tmp_path / "heldout" / "skimage-retina.jpg").rename(tmp_path / "train" / "skimage-retina.jpg")
    moved = photos.assemble(tmp_path, tiers=(0,), install=False)  # a file in the wrong split goes back
    assert moved.written == 0 and sum(s.moved for s in moved.sources) == 1
    assert (tmp_path / "heldout" / "skimage-retina.jpg").is_file()


@needs_skimage
def test_cli_data_photos(tmp_path, capsys):
    out = tmp_path / "photos"
    first = run_alit("data", "photos", "--out", out, "--tiers", "0", "--no-install")  # as a user runs it
    assert first.returncode == 0, first.stderr
    assert "skimage" in first.stdout and "held out" in first.stdout and "new files" in first.stdout
    assert (out / "train" / "skimage-astronaut.png").is_file()
    # the rest in-process: each `python -m alit` pays the torch import again
    assert main(["data", "photos", "--out", str(out), "--tiers", "0", "--no-install"]) == 0
    assert "nothing new" in capsys.readouterr().out
    assert main(["data", "photos", "--out", str(out), "--tiers", "2"]) == 2
    assert "--tiers takes 0, 1 or 0,1" in capsys.readouterr().err


def test_nothing_is_installed_system_wide_without_yes(monkeypatch, capsys):
    """Without --yes a missing package is reported with the line that installs it; apt-get never runs."""
    def no_apt(*args, **kwargs):
        raise AssertionError(f"apt-get ran: {args}")

    monkeypatch.setattr(deb.subprocess, "run", no_apt)  # a tripwire: the real apt-get would install
    debian = deb.Debian(install=True, log=print)
    why = debian.ensure("mate-backgrounds", lambda: False)
    assert why == ("mate-backgrounds is not installed (installing it is system-wide: rerun with --yes (as root) to "
                   "let alit do it), or: sudo apt-get install -y --no-install-recommends mate-backgrounds")
    assert capsys.readouterr().out == ""
    assert deb.Debian(install=True, log=print, system=True).why_not() in ("", "not root", "no apt-get on this machine")
    assert main(["data", "photos", "--out", "x", "--no-install", "--yes"]) == 2
    assert capsys.readouterr().err.strip() == ("alit data: error: give --no-install (never run apt-get) or --yes "
                                               "(let it install), not both")


@pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="no dpkg-deb")
def test_extract_deb_from_a_real_package(tmp_path):
    # a real .deb made by dpkg-deb, as `apt-get download` gives them
    root = tmp_path / "pkg"
    member = "usr/share/wallpapers/Lake/contents/images/2560x1600.jpg"
    (root / member).parent.mkdir(parents=True)
    buffer = io.BytesIO()
    Image.new("RGB", (32, 20), (10, 200, 30)).save(buffer, format="JPEG")
    (root / member).write_bytes(buffer.getvalue())
    (root / "DEBIAN").mkdir()
    (root / "DEBIAN" / "control").write_text("Package: lake\nVersion: 1\nArchitecture: all\n"
                                             "Maintainer: t <t@example.org>\nDescription: t\n")
    package = tmp_path / "lake_1_all.deb"
    subprocess.run(["dpkg-deb", "--build", "-Znone", str(root), str(package)], check=True, capture_output=True)
    out = tmp_path / "cache"
    assert deb.extract_deb(package, {member: "Lake.jpg"}, out) == ""
    assert (out / "Lake.jpg").read_bytes() == buffer.getvalue()
    assert [p.name for p in out.iterdir()] == ["Lake.jpg"]  # nothing else, no temporary left
    why = deb.extract_deb(package, {member: "Lake.jpg", "usr/share/none.jpg": "None.jpg"}, out)
    assert why == "lake_1_all.deb lacks None.jpg"
