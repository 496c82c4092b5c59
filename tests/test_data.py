"""Training data: recursive image folders with optional class folders, deterministic crops and
step order (independent of process count and resume), unreadable files skipped and named,
WebDataset shards."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from alit.data import (BatchPlan, DataOptions, ImageFolder, Shards, StepBatches, list_images, preview_images,
                       training_data, write_shards)
from alit.data.folder import collate
from alit.data.transforms import CenterCrop, RandomResizedCropFlip, crop_box, sample_seed
from alit.errors import AlitError


def _photo(path, size=(40, 30), seed=0, fmt=None):
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path, format=fmt)


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "imgs"
    for cls in ("cat", "dog"):
        (root / cls / "deeper").mkdir(parents=True)
        for i in range(3):
            _photo(root / cls / f"{i}.png", seed=i + (10 if cls == "dog" else 0))
        _photo(root / cls / "deeper" / "x.jpg", size=(50, 20), seed=7)
    (root / "notes.txt").write_text("not an image")
    return root


def test_folder_is_recursive_with_classes(folder):
    files = list_images(folder)
    assert len(files) == 8 and all(f.suffix in (".png", ".jpg") for f in files)
    ds = ImageFolder(folder, RandomResizedCropFlip(16))
    assert ds.classes == ["cat", "dog"] and sorted(set(ds.labels)) == [0, 1]
    image, skipped = ds[(0, 123)]
    assert image.shape == (3, 16, 16) and image.dtype == torch.float32 and skipped == []
    assert 0 <= image.min() and image.max() <= 1


def test_cached_folder_decodes_each_file_once_and_crops_the_same(folder):
    plain = ImageFolder(folder, RandomResizedCropFlip(16))
    cached = ImageFolder(folder, RandomResizedCropFlip(16), cache=True)
    expected = [plain[(i, 40 + i)][0] for i in range(len(plain))]
    assert all(torch.equal(cached[(i, 40 + i)][0], expected[i]) for i in range(len(cached)))
    for f in cached.files:
        f.unlink()  # from now on only the cache can serve them
    assert all(torch.equal(cached[(i, 40 + i)][0], expected[i]) for i in range(len(cached)))
    assert not torch.equal(cached[(0, 1)][0], cached[(0, 2)][0])  # new crops of the cached image
    with pytest.raises(AlitError, match="could be read"):
        plain[(0, 1)]  # uncached: the files are gone


def test_flat_folder_and_errors(tmp_path):
    for i in range(2):
        _photo(tmp_path / f"{i}.jpeg")
    ds = ImageFolder(tmp_path, RandomResizedCropFlip(8))
    assert ds.classes == [] and ds.labels == [-1, -1]
    with pytest.raises(AlitError, match="no images found"):
        list_images(tmp_path / "nothing" if (tmp_path / "nothing").mkdir() is None else None)
    with pytest.raises(AlitError, match="not a folder"):
        list_images(tmp_path / "missing")


def test_crop_is_a_function_of_the_seed():
    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (56, 64, 3), dtype=np.uint8))
    t = RandomResizedCropFlip(24, (0.8, 1.0))
    a, b = t(img, 5), t(img, 5)
    assert torch.equal(a, b) and not all(torch.equal(a, t(img, s)) for s in range(6, 10))
    gen = torch.Generator().manual_seed(0)
    for _ in range(200):
        left, top, w, h = crop_box(90, 60, (0.8, 1.0), gen)
        assert 0 <= left and left + w <= 90 and 0 <= top and top + h <= 60
        assert 0.8 * 5400 * 0.97 <= w * h <= 5400 and 3 / 4 * 0.97 <= w / h <= 4 / 3 * 1.03
    assert crop_box(1000, 10, (0.8, 1.0), gen)[2:] == (13, 10)  # extreme aspect: central crop
    assert sample_seed(0, 1) != sample_seed(0, 2) != sample_seed(1, 1)


def test_square_crops_keep_the_aspect_that_evaluation_sees():
    # crop_ratio [1, 1]: every crop is a square; an area no square fits falls back to the central one,
    # the view `alit demo` and `alit eval` score (the short side, centred)
    gen = torch.Generator().manual_seed(0)
    boxes = [crop_box(160, 90, (0.3, 1.0), gen, (1.0, 1.0)) for _ in range(300)]
    assert all(w == h and left + w <= 160 and top + h <= 90 for left, top, w, h in boxes)
    assert {(w, h) for _, _, w, h in boxes} >= {(90, 90)} and min(w for _, _, w, _ in boxes) < 70
    img = Image.fromarray(np.random.default_rng(1).integers(0, 255, (90, 160, 3), dtype=np.uint8))
    full = RandomResizedCropFlip(24, (1.0, 1.0), flip=False, ratio=(1.0, 1.0))(img, 3)
    assert torch.equal(full, CenterCrop(24)(img))


def test_step_order_ignores_process_count_and_resume():
    def step_items(world, accum, step):
        out = []
        for rank in range(world):
            s = StepBatches(10, 8, 8 // (world * accum), rank, world, seed=3, first_step=step, last_step=step)
            out += [i for batch in s for i in batch]
        return sorted(out)

    for step in (1, 2, 5):
        one = step_items(1, 1, step)
        assert one == step_items(2, 1, step) == step_items(2, 2, step) == step_items(4, 2, step)
        assert len(one) == 8
    # a resumed sampler continues exactly where an uninterrupted one is
    full = list(StepBatches(10, 4, 2, 0, 1, 3, 1, 6))
    assert list(StepBatches(10, 4, 2, 0, 1, 3, 4, 6)) == full[6:]
    # every image once per epoch: positions 0..9 are one permutation
    s = StepBatches(10, 5, 5, 0, 1, 3, 1, 2)
    assert sorted(i for b in s for i, _ in b) == list(range(10))
    with pytest.raises(ValueError, match="multiple"):
        StepBatches(10, 6, 4, 0, 1, 0, 1, 1)


def test_unreadable_files_are_skipped_and_named(tmp_path):
    _photo(tmp_path / "a.png")
    (tmp_path / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    good = tmp_path / "c.jpg"
    _photo(good, size=(64, 64))
    (tmp_path / "d.jpg").write_bytes(good.read_bytes()[:200])  # truncated JPEG
    ds = ImageFolder(tmp_path, RandomResizedCropFlip(8))
    images, skipped = collate([ds[(i, i)] for i in range(4)])
    assert images.shape == (4, 3, 8, 8)
    names = " ".join(skipped)
    assert "b.png" in names and "d.jpg" in names and len(skipped) == 2
    # the substitute is the next readable file, whichever process asks
    assert torch.equal(ds[(1, 9)][0], ImageFolder(tmp_path, RandomResizedCropFlip(8))[(2, 9)][0])
    for f in ("a.png", "c.jpg"):
        (tmp_path / f).write_bytes(b"broken")
    with pytest.raises(AlitError, match="none of the 4"):
        ImageFolder(tmp_path, RandomResizedCropFlip(8))[(0, 0)]


def test_training_data_loader(folder):
    data = training_data(folder, 16, BatchPlan(batch_size=4, micro_batch=2), DataOptions(workers=1))
    assert data.kind == "folder" and data.size == 8
    it = iter(data.loader)
    first = [next(it)[0] for _ in range(4)]  # steps 1-2, two micro-steps each
    again = training_data(folder, 16, BatchPlan(batch_size=4, micro_batch=2, first_step=2), DataOptions(workers=0))
    assert torch.equal(next(iter(again.loader))[0], first[2])
    assert preview_images(folder, 16, 3).shape == (3, 3, 16, 16)
    # the recipe's crop_ratio reaches the crops: whole-square crops are the images' central squares
    square = training_data(folder, 16, BatchPlan(batch_size=4, micro_batch=4),
                           DataOptions(workers=0, crop_scale=(1.0, 1.0), flip=False, crop_ratio=(1.0, 1.0)))
    centres = [CenterCrop(16)(Image.open(f).convert("RGB")) for f in list_images(folder)]
    batch = next(iter(square.loader))[0]
    assert all(any(torch.equal(x, c) for c in centres) for x in batch)


def test_webdataset_shards(tmp_path, folder):
    pytest.importorskip("webdataset")
    files = list_images(folder)
    (tmp_path / "bad.jpg").write_bytes(b"not a jpeg")
    shards = write_shards(files + [tmp_path / "bad.jpg"], tmp_path / "shards", per_shard=3)
    assert len(shards) == 3
    ds = Shards(str(tmp_path / "shards"), RandomResizedCropFlip(8), seed=0, rank=0, world=1, buffer=4)
    items = []
    for item in ds:
        items.append(item)
        if len(items) == 10:
            break
    assert all(im.shape == (3, 8, 8) for im, _ in items)
    assert any("000000008" in s for _, sk in items for s in sk)  # the broken member is named
    pattern = str(tmp_path / "shards" / "shard-{000000..000002}.tar")
    data = training_data(pattern, 8, BatchPlan(batch_size=2, micro_batch=2), DataOptions(workers=0))
    assert data.kind == "shards" and next(iter(data.loader))[0].shape == (2, 3, 8, 8)
    with pytest.raises(AlitError, match="no shards"):
        Shards(str(tmp_path / "nothing-{0..2}.tar"), None, 0, 0, 1)
