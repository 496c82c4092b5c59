"""`alit reconstruct` run as a user runs it: many kinds of image files, bad ones among them."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import alit
from alit.cli import main
from alit.weights import save

from test_images import write_png16_rgb


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    tok = alit.build("tiny")
    return save(tok.state_dict(), tok.config, tmp_path_factory.mktemp("ckpt") / "tiny")


def write_inputs(root):
    """Good files of every kind (some in a subfolder), a corrupt PNG and a text file named .png."""
    rng = np.random.default_rng(0)
    rgb = (rng.random((48, 80, 3)) * 255).astype(np.uint8)
    (root / "sub").mkdir(parents=True)
    Image.fromarray(rgb).save(root / "photo.png")
    Image.fromarray(rgb).save(root / "photo.jpg", quality=90)  # same stem: written to photo-2/
    Image.fromarray((rng.random((70, 64)) * 65535).astype(np.uint16)).save(root / "gray16.png")
    write_png16_rgb(root / "sub" / "rgb16.png", (rng.random((64, 64, 3)) * 65535).astype(np.uint16))
    rgba = (rng.random((64, 96, 4)) * 255).astype(np.uint8)
    Image.fromarray(rgba, "RGBA").save(root / "sub" / "alpha.webp")
    Image.fromarray(rgb).quantize(32).save(root / "sub" / "palette.png")
    Image.fromarray(rgb[..., 0], "L").save(root / "gray.png")
    Image.fromarray(rgb).save(root / "sub" / "bitmap.bmp")
    Image.fromarray(rgb).save(root / "sub" / "scan.tiff")
    data = (root / "photo.png").read_bytes()
    (root / "corrupt.png").write_bytes(data[: len(data) // 3])
    (root / "sub" / "notes.png").write_text("not an image\n")
    (root / "sub" / "readme.txt").write_text("skipped: not an image suffix\n")
    good = ["photo", "photo-2", "gray16", "rgb16", "alpha", "palette", "gray", "bitmap", "scan"]
    return good, ["corrupt.png", "notes.png"]


def test_reconstruct_many_files(tmp_path, checkpoint):
    good, bad = write_inputs(tmp_path / "in")
    missing = tmp_path / "missing.jpg"
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "alit", "reconstruct", str(tmp_path / "in"), str(missing),
                           "--checkpoint", str(checkpoint), "--out", str(out), "--criterion", "l1:0.9",
                           "--batch-size", "4"], capture_output=True, text=True,
                          timeout=900)  # only a guard against a hang
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    errors = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert len(errors) == 3, proc.stderr
    for name in bad + ["missing.jpg"]:
        assert sum(name in line for line in errors) == 1, (name, proc.stderr)
    assert sorted(p.name for p in out.iterdir()) == sorted(good)
    lengths = [f"len{L:03d}.png" for L in range(8, 65, 8)]
    for name in good:
        files = sorted(p.name for p in (out / name).iterdir())
        assert files == sorted(["input.png", "chosen.png"] + lengths), name
        chosen = np.asarray(Image.open(out / name / "chosen.png"))
        assert chosen.shape == (64, 64, 3)
        # every random-weight reconstruction has L1 < 0.9: the first length is chosen
        assert np.array_equal(chosen, np.asarray(Image.open(out / name / "len008.png")))
    rows = proc.stdout.splitlines()
    assert rows[0].split() == ["file", "tokens"] + [f"L1@{L}" for L in range(8, 65, 8)] + ["folder"]
    table = [r.split() for r in rows[1:] if r.split() and r.split()[0].startswith(str(tmp_path))]
    assert len(table) == len(good) and all(r[1] == "8" for r in table)


def test_missing_checkpoint_is_one_line(tmp_path, capsys):
    missing = tmp_path / "no-such-model"
    assert main(["reconstruct", str(tmp_path), "--out", str(tmp_path / "out"), "--checkpoint", str(missing)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(missing) in err


def test_wrong_kind_of_checkpoint_is_one_line(tmp_path, capsys):
    torch.manual_seed(0)
    tok = alit.build("tiny")
    save(tok.base.state_dict(), tok.config.base, tmp_path / "base", image_size=64)
    (tmp_path / "empty").mkdir()
    for ckpt, says in ((tmp_path / "base", "base tokenizer"), (tmp_path / "empty", "not an alit checkpoint"),
                       (tmp_path / "nothing", "no such checkpoint")):
        argv = ["reconstruct", str(tmp_path), "--checkpoint", str(ckpt), "--out", str(tmp_path / "o")]
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and says in err, err


def test_bad_criterion_is_one_line(tmp_path, checkpoint, capsys):
    assert main(["reconstruct", str(tmp_path), "--checkpoint", str(checkpoint), "--out", str(tmp_path / "o"),
                 "--criterion", "l1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bad criterion" in err


def test_the_models_own_criterion_is_the_default(tmp_path, capsys):
    torch.manual_seed(0)
    tok = alit.build("tiny")
    strict = save(tok.state_dict(), tok.config.replace(criterion="l1:0.0001"), tmp_path / "strict")
    assert alit.load(strict).config.criterion == "l1:0.0001"  # it travels in config.json
    Image.fromarray((np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8)).save(tmp_path / "a.png")

    def chosen(*extra):
        assert main(["reconstruct", str(tmp_path / "a.png"), "--out", str(tmp_path / "out"),
                     "--checkpoint", str(strict), *extra]) == 0
        row = next(r.split() for r in capsys.readouterr().out.splitlines() if r.startswith(str(tmp_path)))
        return int(row[1])

    assert chosen() == 64  # no random-weight reconstruction has L1 below 0.0001: the longest
    assert chosen("--criterion", "l1:0.9") == 8  # an explicit rule wins
