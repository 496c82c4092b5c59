"""`alit tokenize --views K` on real photos with a tiny random-weight model: keys KEY#k, rows that
are `tok.encode` of each view, views that differ from each other and from the plain image but not
from run to run (another number of workers, WebDataset shards, a rerun after a lost part), and a
folder of other views refused."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

import alit
from alit.cli import main
from alit.criteria import EightBit, L1Below
from alit.images import load_image, read_image
from alit.tokens.views import SCALE, square_box, view_key, view_of, view_seed
from conftest import photo_folder

VIEWS = 3


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """3 real photos (one in a sub-folder) and a truncated JPEG."""
    return photo_folder(tmp_path_factory.mktemp("data"), 3, in_sub=1, truncated=1)


def tokenize(data, model_dir, out, *extra) -> Path:
    assert main(["tokenize", str(data), "--out", str(out), "--checkpoint", str(model_dir), "--criterion", "l1:0.25",
                 "--part-size", "2", "--batch-size", "4", "--no-progress", *map(str, extra)]) == 0
    return out


def rows(folder: Path) -> list[tuple[str, int, list[int]]]:
    ds = alit.TokenDataset(folder)
    return [(k, int(n), ds[i][1].tolist()) for i, (k, n) in enumerate(zip(ds.keys, ds.lengths))]


@pytest.fixture(scope="module")
def run1(data, model_dir, tmp_path_factory):
    return tokenize(data, model_dir, tmp_path_factory.mktemp("run1") / "t", "--views", VIEWS, "--workers", 0)


def keys_of(data: Path) -> list[str]:
    return sorted(p.relative_to(data).as_posix() for p in data.rglob("*.jpg"))


def view(key: str, k: int, path: Path):
    """View k of the image at path, keyed `key`, as `alit tokenize --views` reads it."""
    return view_of(read_image(path, 64), 64, view_seed(key, k))


def expected(model_dir, files: dict[str, Path]) -> list[tuple[str, int, list[int]]]:
    """The rows of the views of files {key: path}: `tok.encode` of each view, seeded by its key."""
    tok = alit.load(model_dir)
    views = torch.stack([view(k, v, p) for k, p in files.items() for v in range(VIEWS)])  # [n, 3, 64, 64]
    enc = tok.encode(views, criterion=EightBit.of(L1Below(0.25)))
    keys = [view_key(k, v) for k in files for v in range(VIEWS)]
    return [(k, int(n), enc.ids[j, :int(n)].tolist()) for j, (k, n) in enumerate(zip(keys, enc.lengths))]


def test_rows_are_the_tokens_of_each_view(data, model_dir, run1):
    good = [k for k in keys_of(data) if k != "broken.jpg"]
    assert rows(run1) == expected(model_dir, {k: data / k for k in good})
    index = json.loads((run1 / "_index.json").read_text())
    assert index["data"]["views"] == VIEWS and index["images_written"] == 9 and index["images_skipped"] == VIEWS
    skipped = [json.loads(line)["key"] for line in (run1 / "_skipped.jsonl").read_text().splitlines()]
    assert skipped == [view_key("broken.jpg", v) for v in range(VIEWS)]


def test_views_are_seeded_crops_and_flips(data):
    key = keys_of(data)[1]  # after broken.jpg
    image = read_image(data / key, 64)  # [3, H, W]
    views = [view(key, v, data / key) for v in range(8)]
    assert all(x.shape == (3, 64, 64) and torch.equal(x, (x * 255).round() / 255) for x in views)  # 8-bit grid
    assert all(torch.equal(view(key, v, data / key), views[v]) for v in range(8))  # the same each time
    assert all(not torch.equal(views[a], views[b]) for a in range(8) for b in range(a))  # and each its own
    plain = load_image(data / key, 64)
    assert all((x - plain).abs().mean() > 0.005 for x in views)  # none is the centre crop
    assert view_seed(key, 0) != view_seed(key, 1) != view_seed("other.jpg", 1)
    # squares of 80-100% of the largest square's area, all over a wide image (228 x 128 here)
    boxes = [square_box(228, 128, torch.Generator().manual_seed(view_seed(key, v))) for v in range(200)]
    sides = [side for _, _, side in boxes]
    assert round(128 * SCALE[0] ** 0.5) <= min(sides) < 0.91 * 128 and 0.99 * 128 < max(sides) <= 128
    assert min(left for left, _, _ in boxes) < 10 and max(left + side for left, _, side in boxes) > 218
    # a flip is a mirror of the same crop: some seed flips and some does not
    flips = [torch.rand(1, generator=_after_crop(image, view_seed(key, v))).item() < 0.5 for v in range(8)]
    assert any(flips) and not all(flips)


def _after_crop(image: torch.Tensor, seed: int) -> torch.Generator:
    gen = torch.Generator().manual_seed(seed)
    square_box(image.shape[2], image.shape[1], gen)
    return gen


def test_same_rows_with_workers_shards_and_after_a_lost_part(data, model_dir, run1, tmp_path):
    assert rows(tokenize(data, model_dir, tmp_path / "w2", "--views", VIEWS, "--workers", 2)) == rows(run1)
    from alit.data import write_shards

    files = sorted((p for p in data.rglob("*.jpg")), key=lambda p: p.relative_to(data).as_posix())
    write_shards(files, tmp_path / "shards", per_shard=2)
    shards = tokenize(tmp_path / "shards", model_dir, tmp_path / "s", "--views", VIEWS, "--workers", 0)
    # a shard's views are seeded by its WebDataset keys (000000001, ...: broken.jpg is 000000000)
    assert rows(shards) == expected(model_dir, {f"{i:09d}": files[i] for i in (1, 2, 3)})
    # a part lost (its file and record): the same command writes it again, the same rows
    copy = tmp_path / "copy"
    shutil.copytree(run1, copy)
    (copy / "_index.json").unlink()
    (copy / "part-000000.parquet").unlink()
    (copy / "_state" / "part-000000.json").unlink()
    assert rows(tokenize(data, model_dir, copy, "--views", VIEWS, "--workers", 0)) == rows(run1)
    assert json.loads((copy / "_index.json").read_text())["resumed"] is True


def test_other_views_are_refused(data, model_dir, run1, capsys):
    for extra in ((), ("--views", 2)):
        assert main(["tokenize", str(data), "--out", str(run1), "--checkpoint", str(model_dir), "--criterion",
                     "l1:0.25", "--part-size", "2", "--no-progress", *map(str, extra)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "holds tokens made with another --views" in err[0]
    assert main(["tokenize", str(data), "--out", str(run1) + "-x", "--views", "-1"]) == 2
    assert "--views must be 0" in capsys.readouterr().err
