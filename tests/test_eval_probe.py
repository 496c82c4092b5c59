"""alit probe (linear probe on frozen latents) and alit data fashion-mnist."""
from __future__ import annotations

import gzip
import json
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import alit
from alit.cli import main
from alit.errors import AlitError
from alit.data.acquire import fashion_mnist
from alit.eval.probe import accuracy, features, fit_linear, labelled_folder, split
from test_eval_support import make_checkpoint, one_thread, write_labelled  # noqa: F401 (one_thread: autouse)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("probe")
    ckpt = make_checkpoint(root / "ckpt")
    return {"ckpt": ckpt, "tok": alit.load(ckpt), "data": write_labelled(root / "data")}


def test_fit_linear_separates_and_is_deterministic():
    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.randn(30, 4, generator=g) + 3, torch.randn(30, 4, generator=g) - 3]) * 100 + 7
    y = torch.tensor([0] * 30 + [1] * 30)
    a, b = fit_linear(x, y, 2), fit_linear(x, y, 2)
    assert accuracy(a, x, y) == 1.0
    assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias)


def test_split_is_stratified_and_seeded(setup, tmp_path):
    train, test, how = split(setup["data"], 0.25, seed=0)
    assert train.classes == ["bright", "dark", "green"] and "stratified" in how
    assert [test.labels.count(c) for c in range(3)] == [2, 2, 2] and len(train.paths) == 18
    assert not set(train.paths) & set(test.paths)
    again, _, _ = split(setup["data"], 0.25, seed=0)
    other, _, _ = split(setup["data"], 0.25, seed=1)
    assert again.paths == train.paths and other.paths != train.paths
    with pytest.raises(AlitError, match="at least two class folders"):
        labelled_folder(setup["data"] / "dark")


def test_features_are_pooled_latents(setup):
    tok = setup["tok"]
    paths = sorted((setup["data"] / "dark").glob("*.png"))[:3]
    f = features(tok, paths, pool="mean", batch_size=2)
    assert len(f) == len(tok.config.lengths) and f[1].shape == (3, tok.config.latent_dim)
    from alit.eval.inputs import batches, protocol
    images = next(batches(paths, 64, protocol("resize-crop"), 3)).images
    with torch.no_grad():
        roll = tok.rollout(images, pixels=False)
    torch.testing.assert_close(f[1], roll.latents[1].mean(1))
    concat = features(tok, paths, pool="concat", batch_size=3)
    assert concat[2].shape == (3, 24 * tok.config.latent_dim)


def test_probe_cli(setup, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["probe", "--checkpoint", str(setup["ckpt"]), "--data", str(setup["data"]), "--out", str(out),
                 "--lengths", "8,64"])
    assert code == 0
    r = json.loads((out / "probe.json").read_text())
    assert set(r["lengths"]) == {"8", "64"} and r["train_images"] == 18 and r["test_images"] == 6
    assert r["chance_accuracy"] == pytest.approx(1 / 3)
    for row in r["lengths"].values():
        assert 0 <= row["test_accuracy"] <= 1 and row["features"] == 12
    # brightness and colour survive even a random tokenizer's latents
    assert max(row["test_accuracy"] for row in r["lengths"].values()) >= 2 / 3
    assert r["majority_class"] == "bright" and r["uniform_chance"] == pytest.approx(1 / 3)  # a tie: the first class
    printed = capsys.readouterr().out
    assert "test acc" in printed
    assert ("majority-class baseline: 0.3333 on this test split (always answering 'bright', the most frequent class "
            "among the training images); uniform chance 1/3 = 0.3333") in printed.splitlines()
    for name in ("probe.csv", "accuracy.png", "index.html"):
        assert (out / name).is_file()


def _idx(path: Path, array: np.ndarray) -> None:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_fashion_mnist_conversion(tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    rng = np.random.default_rng(0)
    arrays = {}
    for split_name, n in (("train", 12), ("test", 5)):
        images, labels = rng.integers(0, 256, (n, 28, 28)), np.arange(n) % 10
        images_file, labels_file = fashion_mnist.FILES[split_name]
        _idx(src / images_file, images)
        _idx(src / labels_file, labels)
        arrays[split_name] = (images, labels)
    out = tmp_path / "fm"
    assert main(["data", "fashion-mnist", "--out", str(out), "--source", str(src), "--limit", "10"]) == 0
    assert "10 train and 5 test images" in capsys.readouterr().out
    first = np.asarray(Image.open(out / "train" / fashion_mnist.CLASSES[0] / "00000.png"))
    assert first.shape == (28, 28) and np.array_equal(first, arrays["train"][0][0])
    assert len(list((out / "train").rglob("*.png"))) == 10 and len(list((out / "test").rglob("*.png"))) == 5
    assert (out / "test" / "ankle_boot" / "00009.png").is_file() is False  # only 5 test images
    train, test, how = split(out, 0.25, 0)
    assert how.startswith("the folder's own") and len(train.classes) == 10
    assert main(["data", "fashion-mnist", "--out", str(out), "--source", str(tmp_path / "nothing")]) == 2
    assert "apt-get install -y dataset-fashion-mnist" in capsys.readouterr().err


@pytest.mark.skipif(not (fashion_mnist.DEBIAN_DIR / "t10k-labels-idx1-ubyte.gz").is_file(),
                    reason="Debian dataset-fashion-mnist is not installed (apt-get install -y dataset-fashion-mnist)")
def test_fashion_mnist_from_debian(tmp_path):
    counts = fashion_mnist.convert(tmp_path / "fm", limit=30)
    assert counts == {"train": 30, "test": 30}
    labels = fashion_mnist.read_idx(fashion_mnist.DEBIAN_DIR / "train-labels-idx1-ubyte.gz")
    assert labels.shape == (60000,) and set(np.unique(labels)) == set(range(10))
