"""`alit tokenize`, `alit decode` and `alit.TokenDataset` on real photos (the bundled demo photos)
with a tiny random-weight model saved to a folder: rows against `tok.encode`, Parquet read by
pyarrow and `datasets`, 2 processes under torchrun, a SIGKILL and a rerun, WebDataset shards,
refusals, `--mean-tokens`; decoding workers against the main process, Ctrl-C and a failing write
in the background writer, `--precision` and the older `--dtype`, `--device` under torchrun."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import alit
from alit.cli import main
from alit.criteria import EightBit, L1Below
from alit.images import load_image
from alit.tokens.budget import allocate, compare
from alit.weights import save
from conftest import photo_folder, run_alit

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def tok(model_dir):
    return alit.load(model_dir)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """10 real photos, two in a sub-folder, plus a corrupt JPEG and a text file named .png."""
    root = photo_folder(tmp_path_factory.mktemp("data"), 10, in_sub=2, truncated=3)
    (root / "notes.png").write_text("not an image")
    return root


GOOD = 10
BAD = {"broken.jpg", "notes.png"}


def rows(folder: Path) -> list[tuple[str, int, list[int]]]:
    import pyarrow.parquet as pq

    index = json.loads((folder / "_index.json").read_text())
    out = []
    for name in index["parts"]:
        t = pq.read_table(folder / name)
        out += list(zip(t.column("key").to_pylist(), t.column("num_tokens").to_pylist(), t.column("ids").to_pylist()))
    return out


def part_batches(data: Path, part_size: int):
    """The readable images of each part, as tokenize batches them (one batch per part here)."""
    keys = sorted(p.relative_to(data).as_posix() for p in data.rglob("*") if p.is_file())
    for start in range(0, len(keys), part_size):
        good = [k for k in keys[start:start + part_size] if k not in BAD]
        if good:
            yield good, torch.stack([load_image(data / k, 64) for k in good])


@pytest.fixture(scope="module")
def run1(tok, model_dir, data, tmp_path_factory):
    """One process, the default rule replaced by an l1 rule; parts of 4 = batches of 4."""
    out = tmp_path_factory.mktemp("run1") / "tokens"
    assert main(["tokenize", str(data), "--out", str(out), "--checkpoint", str(model_dir), "--criterion",
                 "l1:0.25", "--part-size", "4", "--batch-size", "4", "--workers", "2", "--no-progress"]) == 0
    return out


def test_rows_are_what_encode_gives(tok, data, run1):
    got = rows(run1)
    crit = EightBit(L1Below(0.25))
    want = []
    for keys, images in part_batches(data, 4):
        enc = tok.encode(images, criterion=crit)
        want += [(k, int(enc.lengths[j]), enc.ids[j, :enc.lengths[j]].tolist()) for j, k in enumerate(keys)]
    assert got == want and len(got) == GOOD
    assert {k for k, _, _ in got} == {p.relative_to(data).as_posix() for p in data.rglob("*.jpg")} - BAD
    assert any(k.startswith("sub/") for k, _, _ in got)
    skipped = [json.loads(line) for line in (run1 / "_skipped.jsonl").read_text().splitlines()]
    assert sorted(s["key"] for s in skipped) == sorted(BAD)
    assert all("\n" not in s["reason"] and s["reason"] for s in skipped)
    index = json.loads((run1 / "_index.json").read_text())
    assert index["images_written"] == GOOD and index["images_skipped"] == 2
    assert index["model"]["fingerprint"] == tok.fingerprint()
    assert index["total_tokens"] == sum(n for _, n, _ in got)
    assert sum(index["length_histogram"].values()) == GOOD
    assert index["mean_bits_per_pixel"] == pytest.approx(index["mean_tokens"] * 10 / 64 ** 2)
    assert index["tokens"]["mode"] == "criterion" and index["images_per_second"] > 0


def test_parquet_types_and_datasets(run1):
    import pyarrow as pa
    import pyarrow.parquet as pq

    t = pq.read_table(run1 / "part-000000.parquet")
    assert t.schema.field("ids").type == pa.list_(pa.uint16())  # 1024 codes
    assert json.loads(t.schema.metadata[b"alit"])["format"] == "alit-tokens"
    datasets = pytest.importorskip("datasets")
    files = sorted(str(p) for p in run1.glob("part-*.parquet"))
    ds = datasets.load_dataset("parquet", data_files=files, split="train", cache_dir=str(run1.parent / "hf"))
    assert [(r["key"], r["num_tokens"], r["ids"]) for r in ds] == rows(run1)


def test_token_dataset_and_collate(tok, run1):
    ds = alit.TokenDataset(run1)
    assert len(ds) == GOOD
    expect = rows(run1)
    key, ids = ds[3]
    assert key == expect[3][0] and ids.dtype == torch.long and ids.tolist() == expect[3][2]
    loader = torch.utils.data.DataLoader(ds, batch_size=4, collate_fn=ds.collate)
    keys, padded, lengths = next(iter(loader))
    assert keys == [r[0] for r in expect[:4]] and lengths.tolist() == [r[1] for r in expect[:4]]
    assert padded.shape == (4, max(lengths)) and (padded[0, lengths[0]:] == -1).all()
    enc = ds.encoding([0, 1], tok)
    assert enc.lengths.tolist() == lengths[:2].tolist()


def test_decode_gives_what_tok_decode_gives(tok, run1, tmp_path, capsys):
    from PIL import Image

    ds = alit.TokenDataset(run1)
    keys = [ds.keys[0], ds.keys[-1]]
    assert main(["decode", str(run1), "--out", str(tmp_path), "--keys", *keys]) == 0
    assert json.loads((tmp_path / "keys.json").read_text()) == {k: k.rsplit(".", 1)[0] + ".png" for k in keys}
    rows_ = [ds.find(k) for k in keys]
    _, ids, lengths = ds.collate([ds[i] for i in rows_])
    want = tok.decode(alit.Encoding.from_ids(ids, lengths, model=tok))
    for k, image in zip(keys, want):
        png = np.asarray(Image.open(tmp_path / (k.rsplit(".", 1)[0] + ".png")))
        assert np.array_equal(png, (image.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy())
    assert main(["decode", str(run1), "--out", str(tmp_path), "--keys", "nope.jpg"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"alit decode: error: {run1}: no image with key 'nope.jpg'"]


def test_two_processes_under_torchrun(model_dir, data, run1, tmp_path):
    """Parts of 3 over 2 ranks: every good photo exactly once, the same rows as 1 process."""
    out = tmp_path / "tokens"
    args = ["tokenize", data, "--out", out, "--checkpoint", model_dir, "--criterion", "l1:0.25",
            "--part-size", "4", "--batch-size", "4", "--no-progress"]
    torchrun = Path(sys.executable).parent / "torchrun"
    r = subprocess.run([str(torchrun), "--standalone", "--nproc_per_node=2", "-m", "alit", *map(str, args)],
                       capture_output=True, text=True, env=ENV, timeout=1200)
    assert r.returncode == 0, r.stderr[-3000:]
    assert rows(out) == rows(run1)
    index = json.loads((out / "_index.json").read_text())
    assert index["processes"] == 2 and index["images_written"] == GOOD
    assert sorted(json.loads(s)["key"] for s in (out / "_skipped.jsonl").read_text().splitlines()) == sorted(BAD)
    records = [json.loads(p.read_text()) for p in (out / "_state").glob("part-*.json")]
    assert sorted(r["part"] for r in records) == [0, 1, 2]


def test_sigkill_then_rerun_gives_the_same_rows(model_dir, data, tmp_path):
    out, clean = tmp_path / "killed", tmp_path / "clean"
    args = [data, "--checkpoint", model_dir, "--criterion", "l1:0.25", "--part-size", "1", "--batch-size", "1",
            "--workers", "2", "--no-progress"]
    assert main(["tokenize", str(args[0]), "--out", str(clean), *map(str, args[1:])]) == 0
    # the child writes its first part, then waits in the writer (until killed): SIGKILL comes mid-run on any load
    one_part = ("import sys, time\nimport alit.tokens.job as job\nfrom alit.cli import main\n"
                "save, saved = job._save_part, []\n"
                "def save_one(*args):\n    while saved:\n        time.sleep(1)\n    save(*args)\n    saved.append(1)\n"
                "job._save_part = save_one\nsys.exit(main(sys.argv[1:]))\n")
    proc = subprocess.Popen([sys.executable, "-c", one_part, "tokenize", "--out", str(out), *map(str, args)],
                            env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = out / "_state"
    deadline = time.time() + 900  # only a guard against a hang (a loaded machine can take minutes to start python)
    while not list(state.glob("part-*.json")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    done = len(list(state.glob("part-*.json")))
    assert done == 1 and not (out / "_index.json").exists()
    r = run_alit("tokenize", "--out", out, *args, env=ENV)
    assert r.returncode == 0, r.stderr
    assert f"resuming: {done} of 12 parts already written (" in r.stderr
    assert rows(out) == rows(clean)
    assert json.loads((out / "_index.json").read_text())["resumed"] is True
    assert not list(out.glob(".*.tmp-*")) and not list(state.glob(".*.tmp-*"))


def test_workers_give_the_rows_of_the_main_process(model_dir, data, run1, tmp_path):
    """Parts of 4 in batches of 4 (run1, 2 workers) and parts of 8 in batches of 3 (chunks of one part
    read by different workers): the rows of reading in the main process, and its skipped.jsonl."""
    def tokenize(out, *how):
        assert main(["tokenize", str(data), "--out", str(out), "--checkpoint", str(model_dir), "--criterion",
                     "l1:0.25", "--no-progress", *how]) == 0
        return rows(out), (out / "_skipped.jsonl").read_text()

    assert tokenize(tmp_path / "w0", "--part-size", "4", "--batch-size", "4", "--workers", "0") == \
        (rows(run1), (run1 / "_skipped.jsonl").read_text())
    assert tokenize(tmp_path / "a", "--part-size", "8", "--batch-size", "3", "--workers", "2") == \
        tokenize(tmp_path / "b", "--part-size", "8", "--batch-size", "3", "--workers", "0")


def test_pieces_come_back_as_each_part_s_batches():
    """However a loader interleaves the workers' pieces, each part's batches come back whole and in order."""
    from alit.tokens.readers import Chunk, _batches, _folder_units, _in_order

    units = [u for p, n in ((0, 7), (1, 3)) for u in _folder_units(p, n, 3, pieces=2)]
    assert [(p, a, b) for p, a, b, *_ in units] == [(0, 0, 2), (0, 2, 3), (0, 3, 5), (0, 5, 6), (0, 6, 7),
                                                     (1, 0, 2), (1, 2, 3)]
    chunks = [Chunk(p, i, closes, last, [f"{p}/{k}" for k in range(a, b)], torch.full((b - a, 3, 2, 2), float(a)), [])
              for p, a, b, i, closes, last in units]
    shuffled = [chunks[i] for i in (5, 2, 0, 6, 4, 1, 3)]
    got = [(c.part, c.keys, c.images[:, 0, 0, 0].tolist(), c.last)
           for c in _batches(_in_order(shuffled), torch.device("cpu"))]
    assert got == [(1, ["1/0", "1/1", "1/2"], [0, 0, 2], True), (0, ["0/0", "0/1", "0/2"], [0, 0, 2], False),
                   (0, ["0/3", "0/4", "0/5"], [3, 3, 5], False), (0, ["0/6"], [6], True)]


def test_ctrl_c_waits_for_the_parts_handed_to_the_writer(model_dir, data, run1, tmp_path, monkeypatch, capsys):
    """Ctrl-C while part 2 is encoded, the writer still busy with parts 0 and 1: both are written
    before the command returns, and a rerun gives the rows of an uninterrupted run."""
    import alit.tokens.job as job

    save, encode = job._save_part, job._encode_chunk

    def slow_save(*args):
        time.sleep(0.3)  # parts 0 and 1 still wait for the writer when Ctrl-C comes
        save(*args)

    def interrupted(tok, chunk, *args):
        if chunk.part == 2:
            raise KeyboardInterrupt
        encode(tok, chunk, *args)

    monkeypatch.setattr(job, "_save_part", slow_save)
    monkeypatch.setattr(job, "_encode_chunk", interrupted)
    out = tmp_path / "tokens"
    argv = ["tokenize", str(data), "--out", str(out), "--checkpoint", str(model_dir), "--criterion", "l1:0.25",
            "--part-size", "4", "--batch-size", "4", "--workers", "2", "--no-progress"]
    assert main(argv) == 130 and capsys.readouterr().err.strip() == "interrupted"
    assert sorted(p.name for p in (out / "_state").glob("part-*.json")) == \
        ["part-000000.json", "part-000001.json"]
    assert sorted(p.name for p in out.glob("part-*.parquet")) == ["part-000000.parquet", "part-000001.parquet"]
    monkeypatch.undo()
    assert main(argv) == 0 and rows(out) == rows(run1)


def test_a_failing_write_is_one_line_and_a_rerun_finishes(model_dir, data, run1, tmp_path, monkeypatch, capsys):
    import alit.tokens.job as job

    table = job.part_table
    calls = []

    def full_disk(*args):
        calls.append(1)
        if len(calls) == 2:  # part 1's Parquet file
            raise OSError(28, "No space left on device")
        return table(*args)

    monkeypatch.setattr(job, "part_table", full_disk)
    out = tmp_path / "tokens"
    argv = ["tokenize", str(data), "--out", str(out), "--checkpoint", str(model_dir), "--criterion", "l1:0.25",
            "--part-size", "4", "--batch-size", "4", "--workers", "0", "--no-progress"]
    assert main(argv) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"alit tokenize: error: {out}/part-000001.parquet: could not write it (No space left on device)"]
    state = out / "_state"
    assert [p.name for p in state.glob("part-*.json")] == ["part-000000.json"] and not (out / "_index.json").exists()
    assert not list(out.glob(".*.tmp-*"))
    monkeypatch.undo()
    assert main(argv) == 0 and rows(out) == rows(run1)
    assert capsys.readouterr().err.strip() == "resuming: 1 of 3 parts already written (3 images, 1 skipped)"


def test_precision_and_the_older_dtype(model_dir, data, run1, tmp_path, capsys):
    """index.json names the precision; a DIR made before --precision (options.json's "dtype") is the
    same job under the same name; --dtype still works, with a note; another precision is refused."""
    assert json.loads((run1 / "_index.json").read_text())["precision"] == "fp32"
    old = tmp_path / "old"
    shutil.copytree(run1, old)
    options = old / "_state" / "options.json"
    theirs = json.loads(options.read_text())
    theirs["dtype"] = theirs.pop("precision")
    options.write_text(json.dumps(theirs))
    argv = ["tokenize", str(data), "--out", str(old), "--checkpoint", str(model_dir), "--criterion", "l1:0.25",
            "--part-size", "4", "--batch-size", "4", "--no-progress"]
    assert main([*argv, "--dtype", "fp32"]) == 0
    assert "--dtype is deprecated; use --precision" in capsys.readouterr().err
    assert main([*argv, "--precision", "fp32"]) == 0
    assert main([*argv, "--precision", "bf16"]) == 2
    assert "another --precision" in capsys.readouterr().err
    assert main([*argv, "--precision", "bf16", "--dtype", "fp32"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith("disagree; give --precision alone")


def test_device_is_refused_under_torchrun(model_dir, data, tmp_path):
    """Each rank takes its own device: `--device` would put every rank on one."""
    torchrun = Path(sys.executable).parent / "torchrun"
    args = ["tokenize", data, "--out", tmp_path / "tokens", "--checkpoint", model_dir, "--device", "cpu",
            "--no-progress"]
    r = subprocess.run([str(torchrun), "--standalone", "--nproc_per_node=2", "-m", "alit", *map(str, args)],
                       capture_output=True, text=True, env=ENV, timeout=600)
    assert r.returncode != 0
    ours = [line for line in r.stderr.splitlines() if "alit tokenize" in line]
    assert ours and all(line.endswith("alit tokenize: error: --device does not go with torchrun's 2 processes: "
                                      "each takes its own (cuda:LOCAL_RANK, else cpu); leave --device out")
                        for line in ours), r.stderr[-3000:]
    assert "alit/cli/" not in r.stderr  # no traceback of ours (torchrun prints its own)
    assert not (tmp_path / "tokens").exists()


def test_webdataset_shards_give_the_same_tokens(tok, model_dir, data, run1, tmp_path):
    from alit.data import write_shards

    files = sorted(p for p in data.rglob("*") if p.is_file())
    files.sort(key=lambda p: p.relative_to(data).as_posix())
    write_shards(files, tmp_path / "shards", per_shard=4)
    out = tmp_path / "tokens"
    assert main(["tokenize", str(tmp_path / "shards"), "--out", str(out), "--checkpoint", str(model_dir),
                 "--criterion", "l1:0.25", "--batch-size", "4", "--workers", "2", "--no-progress"]) == 0
    assert [(n, ids) for _, n, ids in rows(out)] == [(n, ids) for _, n, ids in rows(run1)]
    index = json.loads((out / "_index.json").read_text())
    assert index["data"]["kind"] == "shards" and index["images_skipped"] == 2


def test_refusals_are_one_line(model_dir, data, run1, tmp_path, capsys):
    def refused(*argv):
        assert main(list(map(str, argv))) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("alit tokenize: error: ")
        return err[0]

    common = ["--checkpoint", model_dir, "--part-size", 4, "--batch-size", 4, "--no-progress"]
    assert "other length options" in refused("tokenize", data, "--out", run1, "--num-tokens", 16, *common)
    torch.manual_seed(5)
    other = save(alit.build("tiny").state_dict(), alit.build("tiny").config, tmp_path / "other")
    assert "another model" in refused("tokenize", data, "--out", run1, "--criterion", "l1:0.25",
                                      "--checkpoint", other, "--part-size", 4, "--no-progress")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x.txt").write_text("mine")
    assert "not an empty folder" in refused("tokenize", data, "--out", tmp_path / "busy", *common)
    assert "not a length" in refused("tokenize", data, "--out", tmp_path / "n", "--num-tokens", 12, *common)
    assert "one of" in refused("tokenize", data, "--out", tmp_path / "n", "--num-tokens", 8, "--mean-tokens", 9,
                               *common)
    assert "no such image folder" in refused("tokenize", tmp_path / "missing", "--out", tmp_path / "n", *common)
    # the same command again on a finished folder changes nothing
    before = (run1 / "_index.json").read_text()
    assert main(["tokenize", str(data), "--out", str(run1), "--criterion", "l1:0.25", *map(str, common)]) == 0
    assert (run1 / "_index.json").read_text() == before


def test_mean_tokens_run(model_dir, data, tmp_path, capsys):
    out = tmp_path / "tokens"
    assert main(["tokenize", str(data), "--out", str(out), "--checkpoint", str(model_dir), "--mean-tokens", "28",
                 "--part-size", "4", "--batch-size", "4", "--no-progress"]) == 0
    index = json.loads((out / "_index.json").read_text())
    c = index["mean_tokens_comparison"]
    got = rows(out)
    assert np.mean([n for _, n, _ in got]) == pytest.approx(c["budget"]["mean_tokens"])
    assert c["budget"]["mean_tokens"] <= 28 and index["mean_tokens"] <= 28
    assert c["budget"]["mean_l1"] <= c["fixed_length"]["mean_l1"] + 1e-12
    assert c["budget"]["mean_l1"] <= c["threshold_rule"]["mean_l1"] + 1e-12
    assert c["fixed_length"]["tokens"] == 24 and c["threshold_rule"]["mean_tokens"] <= 28
    assert "budget (--mean-tokens)" in capsys.readouterr().out


def test_continuous_model_writes_latents(tmp_path, data):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from alit.tokens.job import Options, tokenize

    torch.manual_seed(0)
    tok = alit.build("tiny-vae-continuous")
    out = tmp_path / "tokens"
    index = tokenize(tok, Options(str(data), str(out), "num_tokens", 16, part_size=20, batch_size=20,
                                  progress=False))
    assert index["mean_bits_per_pixel"] is None and index["images_written"] == GOOD
    t = pq.read_table(out / "part-000000.parquet")
    assert t.schema.field("latents").type == pa.list_(pa.list_(pa.float32(), tok.config.latent_dim))
    ds = alit.TokenDataset(out)
    _, latents = ds[0]
    assert latents.shape == (16, tok.config.latent_dim) and latents.dtype == torch.float32
    images = torch.stack([load_image(data / k, 64) for k in ds.keys[:2]])
    enc = tok.encode(images, num_tokens=16)
    torch.testing.assert_close(ds.encoding([0, 1], tok).latents, enc.latents, atol=1e-6, rtol=0)


# --- the budget allocation itself ---------------------------------------------------------------------
LENGTHS = [8, 16, 24, 32]


def brute_force(errors, mean):
    import itertools

    best = None
    for choice in itertools.product(range(len(LENGTHS)), repeat=len(errors)):
        if np.mean([LENGTHS[k] for k in choice]) <= mean + 1e-9:
            total = sum(errors[i, k] for i, k in enumerate(choice))
            best = total if best is None or total < best else best
    return best


def test_allocation_is_optimal_on_convex_curves():
    rng = np.random.default_rng(0)
    for trial in range(30):
        drops = np.sort(rng.uniform(0, 0.1, (5, 3)), axis=1)[:, ::-1]  # shrinking gains: convex
        errors = 0.5 - np.concatenate([np.zeros((5, 1)), np.cumsum(drops, 1)], 1)
        mean = rng.choice([8, 12.8, 16, 20, 27.2, 32])
        choice = allocate(errors, LENGTHS, mean)
        assert np.mean(np.array(LENGTHS)[choice]) <= mean + 1e-9
        assert errors[np.arange(5), choice].sum() == pytest.approx(brute_force(errors, mean))


def test_allocation_beats_both_rules_on_any_curves():
    rng = np.random.default_rng(1)
    for trial in range(30):
        errors = rng.uniform(0.05, 0.3, (6, 4))  # not monotone: longer can be worse
        for mean in (8, 14, 20, 26, 32):
            c = compare(errors, LENGTHS, mean)
            assert c["budget"]["mean_tokens"] <= mean + 1e-9
            assert c["budget"]["mean_l1"] <= c["fixed_length"]["mean_l1"] + 1e-12
            assert c["budget"]["mean_l1"] <= c["threshold_rule"]["mean_l1"] + 1e-12
            assert c["threshold_rule"]["mean_tokens"] <= mean + 1e-9
    # a curve that rises after 16 tokens never gets more
    errors = np.array([[0.3, 0.1, 0.2, 0.25]] * 3)
    assert allocate(errors, LENGTHS, 32).tolist() == [1, 1, 1]
    with pytest.raises(ValueError, match="below the shortest"):
        allocate(errors, LENGTHS, 4)
