"""A token folder of `alit tokenize` opens where people look: every dataset reader installed here reads
DIR as it is (alit's files begin with an underscore), older folders still read, `alit decode` says
which file is which key, and tokenize warns as `alit reconstruct` does, fails in one line without
`webdataset`, says when it resumes, and is quiet without a terminal or with --no-progress."""
from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import alit
from alit.cli import main
from alit.images import load_image

PHOTOS = sorted((Path(alit.__file__).parent / "assets" / "demo_photos").glob("*.jpg"))[:4]
WORKERS0 = ["--workers", "0", "--no-progress"]


@pytest.fixture(scope="module")
def tokens(model_dir, tmp_path_factory):
    """4 photos and a file that is not an image, in parts of 2 (3 parts: the last holds the bad one)."""
    data = tmp_path_factory.mktemp("photos")
    for p in PHOTOS:
        shutil.copy(p, data / p.name)
    (data / "zz-broken.png").write_text("not an image")
    out = tmp_path_factory.mktemp("run") / "tokens"
    assert main(["tokenize", str(data), "--out", str(out), "--checkpoint", str(model_dir), "--num-tokens", "16",
                 "--part-size", "2", *WORKERS0]) == 0
    return out


def expected(folder: Path) -> list[tuple[str, int, list[int]]]:
    ds = alit.TokenDataset(folder)
    return [(ds.keys[i], int(ds.lengths[i]), ds[i][1].tolist()) for i in range(len(ds))]


def data_of(folder: Path) -> str:
    return json.loads((folder / "_index.json").read_text())["data"]["source"]


def table_rows(table) -> list[tuple[str, int, list[int]]]:
    return list(zip(table.column("key").to_pylist(), table.column("num_tokens").to_pylist(),
                    table.column("ids").to_pylist()))


def test_the_folder_holds_the_parts_and_underscore_names(tokens):
    # part 2 holds only the file that is not an image: no Parquet file, its record in _state/
    assert sorted(p.name for p in tokens.iterdir()) == ["_index.json", "_skipped.jsonl", "_state",
                                                       "part-000000.parquet", "part-000001.parquet"]
    assert len(expected(tokens)) == 4
    assert [json.loads(s)["key"] for s in (tokens / "_skipped.jsonl").read_text().splitlines()] == ["zz-broken.png"]


def test_pyarrow_reads_the_folder(tokens):
    import pyarrow.dataset as pads
    import pyarrow.parquet as pq

    assert table_rows(pq.read_table(tokens)) == expected(tokens)
    assert table_rows(pads.dataset(tokens, format="parquet").to_table()) == expected(tokens)


def test_pandas_reads_the_folder(tokens):
    pd = pytest.importorskip("pandas", reason="pandas is not installed here")
    df = pd.read_parquet(tokens)
    assert list(zip(df["key"], df["num_tokens"].astype(int), [list(map(int, x)) for x in df["ids"]])) == \
        expected(tokens)


def test_duckdb_reads_the_parts(tokens):
    duckdb = pytest.importorskip("duckdb", reason="duckdb is not installed here")
    got = duckdb.sql(f"select key, num_tokens, ids from '{tokens}/*.parquet'").fetchall()
    assert [(k, n, list(ids)) for k, n, ids in got] == expected(tokens)
    got = duckdb.sql(f"select key, num_tokens, ids from read_parquet('{tokens}/*.parquet')").fetchall()
    assert [(k, n, list(ids)) for k, n, ids in got] == expected(tokens)


def test_hugging_face_datasets_reads_the_parts(tokens, tmp_path):
    datasets = pytest.importorskip("datasets", reason="datasets (Hugging Face) is not installed here")
    ds = datasets.load_dataset("parquet", data_files=f"{tokens}/*.parquet", split="train", cache_dir=str(tmp_path))
    assert [(r["key"], r["num_tokens"], r["ids"]) for r in ds] == expected(tokens)


# --- folders of the older layout: index.json, skipped.jsonl and .alit-tokenize/ beside the parts ----------
def as_older_layout(folder: Path, to: Path) -> Path:
    """A copy of a token folder as `alit tokenize` wrote it before the underscore names."""
    shutil.copytree(folder, to)
    (to / "_index.json").rename(to / "index.json")
    (to / "_skipped.jsonl").rename(to / "skipped.jsonl")
    (to / "_state").rename(to / ".alit-tokenize")
    for record in (to / ".alit-tokenize").glob("part-*.json"):  # older records had no warning counts
        r = json.loads(record.read_text())
        record.write_text(json.dumps({k: v for k, v in r.items() if k not in ("enlarged", "animated")}))
    return to


def test_older_folders_still_read_decode_and_resume(tokens, model_dir, tmp_path, capsys):
    old = as_older_layout(tokens, tmp_path / "old")
    assert expected(old) == expected(tokens)
    assert main(["decode", str(old), "--out", str(tmp_path / "png"), "--no-progress"]) == 0
    assert sorted(p.name for p in (tmp_path / "png").glob("*.png")) == sorted(p.stem + ".png" for p in PHOTOS)
    # an unfinished older folder is finished in its own layout, with the same rows
    unfinished = as_older_layout(tokens, tmp_path / "unfinished")
    for name in ("index.json", "skipped.jsonl", "part-000001.parquet", ".alit-tokenize/part-000001.json"):
        (unfinished / name).unlink()
    capsys.readouterr()
    assert main(["tokenize", data_of(tokens), "--out", str(unfinished), "--checkpoint", str(model_dir),
                 "--num-tokens", "16", "--part-size", "2", *WORKERS0]) == 0
    assert "resuming: 2 of 3 parts already written (2 images, 1 skipped)" in capsys.readouterr().err
    assert expected(unfinished) == expected(tokens)
    assert (unfinished / "index.json").is_file() and not (unfinished / "_index.json").exists()


# --- alit decode: the key of each file --------------------------------------------------------------------
def test_decode_maps_keys_to_files_when_names_collide(model_dir, tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(PHOTOS[0], data / "a.jpg")
    Image.open(PHOTOS[1]).save(data / "a.png")
    out = tmp_path / "tokens"
    assert main(["tokenize", str(data), "--out", str(out), "--checkpoint", str(model_dir), "--num-tokens", "16",
                 *WORKERS0]) == 0
    capsys.readouterr()
    png = tmp_path / "png"
    assert main(["decode", str(out), "--out", str(png), "--no-progress"]) == 0
    assert capsys.readouterr().out.strip() == (f"2 image(s) decoded: {png}/<key>.png; {png}/keys.json maps each "
                                               f"key to its file; 1 renamed where names collide (a.png -> a-2.png)")
    assert json.loads((png / "keys.json").read_text()) == {"a.jpg": "a.png", "a.png": "a-2.png"}
    ds = alit.TokenDataset(out)
    tok = alit.load(model_dir)
    want = tok.decode(ds.encoding([ds.find("a.jpg"), ds.find("a.png")], tok))  # one batch, as decode's
    for image, name in zip(want, ("a.png", "a-2.png")):
        assert np.array_equal(np.asarray(Image.open(png / name)),
                              (image.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy())
    # one key alone gets the same name, and the map keeps what earlier runs wrote
    alone = tmp_path / "alone"
    assert main(["decode", str(out), "--out", str(alone), "--keys", "a.png", "--no-progress"]) == 0
    assert sorted(p.name for p in alone.iterdir()) == ["a-2.png", "keys.json"]
    assert main(["decode", str(out), "--out", str(alone), "--keys", "a.jpg", "--no-progress"]) == 0
    assert json.loads((alone / "keys.json").read_text()) == {"a.jpg": "a.png", "a.png": "a-2.png"}


# --- what tokenize says -----------------------------------------------------------------------------------
def test_warnings_of_reconstruct_and_their_counts(model_dir, tmp_path, capsys):
    """Files without an image suffix, images smaller than the model (enlarged), an animation: one
    line each, the first 3 of a kind by name, then a count; the index counts them too."""
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(PHOTOS[0], data / "photo.jpg")
    (data / "README.txt").write_text("about")
    (data / "labels.csv").write_text("a,1")
    for i in range(5):
        Image.new("RGB", (10, 12), (40 * i, 30, 30)).save(data / f"t{i}.png")
    frames = [Image.new("RGB", (80, 80), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    frames[0].save(data / "spin.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    out = tmp_path / "tokens"
    assert main(["tokenize", str(data), "--out", str(out), "--checkpoint", str(model_dir), "--num-tokens", "16",
                 *WORKERS0]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    w = "alit tokenize: warning: "
    assert err == [f"{w}{data}: skipped 2 file(s) without an image suffix (README.txt, labels.csv)",
                   f"{w}spin.gif is animated (3 frames): only its first frame is read"] + [
        f"{w}t{i}.png is 10x12 pixels, smaller than the model's 64x64: enlarged (its tokens are of a blurred image)"
        for i in range(3)] + [f"{w}5 images in all were smaller than 64x64 and enlarged (3 named above)"]
    index = json.loads((out / "_index.json").read_text())
    assert (index["images_written"], index["images_enlarged"], index["images_animated"]) == (7, 5, 1)
    # the warnings change nothing: the rows are those of the images every command reads
    ds, tok = alit.TokenDataset(out), alit.load(model_dir)
    for key in ("spin.gif", "t0.png"):
        enc = tok.encode(load_image(data / key, 64)[None], num_tokens=16)
        assert ds[ds.find(key)][1].tolist() == enc.ids[0].tolist()


def test_shards_without_webdataset_is_one_line_before_any_output(model_dir, tmp_path):
    with tarfile.open(tmp_path / "shard-000000.tar", "w") as tar:
        tar.add(PHOTOS[0], arcname="000000.jpg")
    out = tmp_path / "tokens"
    hidden = "import sys; sys.modules['webdataset'] = None; from alit.cli import main; sys.exit(main())"
    r = subprocess.run([sys.executable, "-c", hidden, "tokenize", str(tmp_path / "shard-000000.tar"), "--out",
                        str(out), "--checkpoint", str(model_dir), "--no-progress"], capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        "alit tokenize: error: WebDataset shards need the `webdataset` package, which is not installed: "
        "pip install webdataset (or pip install 'alit[train]')"]
    assert not out.exists()


class Terminal(io.StringIO):
    """stderr as a terminal shows it: tqdm draws its bar only on a terminal."""

    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("command", ["tokenize", "decode"])
def test_progress_only_on_a_terminal_without_no_progress(command, tokens, model_dir, tmp_path, monkeypatch, capsys):
    def run(*flags, terminal: bool) -> str:
        out = tmp_path / f"out{len(list(tmp_path.iterdir()))}"
        if command == "tokenize":
            argv = ["tokenize", data_of(tokens), "--out", str(out), "--checkpoint", str(model_dir),
                    "--num-tokens", "16", "--workers", "0", *flags]
        else:
            argv = ["decode", str(tokens), "--out", str(out), *flags]
        capsys.readouterr()
        with monkeypatch.context() as m:
            if terminal:
                m.setattr(sys, "stderr", Terminal())
            assert main(argv) == 0
            return sys.stderr.getvalue() if terminal else capsys.readouterr().err

    bar = run(terminal=True)
    total = "5/5" if command == "tokenize" else "4/4"  # tokenize counts the file it skips
    assert "100%" in bar and total in bar, bar
    assert run("--no-progress", terminal=True) == ""
    assert run(terminal=False) == ""
