"""alit analyze: complexity proxies, rank correlations, ratings, and the familiarity test."""
from __future__ import annotations

import csv
import io
import json

import pytest
import torch
from PIL import Image

import alit
from alit.cli import main
from alit.criteria import EightBit, L1Below
from alit.eval.analysis import (analyze_complexity, analyze_familiarity, complexity_proxies, correlation,
                                read_ratings, token_counts)
from alit.errors import AlitError
from test_eval_support import make_checkpoint, median_l1, one_thread, write_images  # noqa: F401 (one_thread: autouse)

pytest.importorskip("scipy")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("analysis")
    ckpt = make_checkpoint(root / "ckpt")
    write_images(root / "images", n=6)
    tok = alit.load(ckpt)
    return {"root": root, "ckpt": ckpt, "images": root / "images", "tok": tok,
            "threshold": median_l1(tok, root / "images")}


def test_token_counts_follow_encode(setup):
    tok = setup["tok"]
    x = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    x[0] *= 0.1  # dark: a low error for this random model
    t = setup["threshold"]
    counts = token_counts(tok, x, [t, 10.0])
    assert counts[:, 0].tolist() == tok.encode(x, criterion=EightBit(L1Below(t))).lengths.tolist()
    assert counts[:, 1].tolist() == [tok.config.lengths[0]] * 3  # everything passes a huge threshold


def test_complexity_proxies_known_values():
    flat = torch.full((3, 64, 64), 0.5)
    noise = torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(0))
    p_flat, p_noise = complexity_proxies(flat), complexity_proxies(noise)
    assert p_flat["edge_density"] == 0.0 and p_flat["png_bpp"] < 0.5 and p_flat["jpeg_bpp"] < 1.5
    assert p_noise["png_bpp"] > 20 and p_noise["jpeg_bpp"] > 4 * p_flat["jpeg_bpp"]
    # PNG bpp is the size of the file Pillow writes for the 8-bit image
    buffer = io.BytesIO()
    Image.fromarray((noise * 255).round().byte().permute(1, 2, 0).numpy()).save(buffer, format="PNG")
    assert p_noise["png_bpp"] == pytest.approx(8 * len(buffer.getvalue()) / 64 ** 2)
    half = torch.zeros(3, 64, 64)
    half[:, :, 32:] = 1  # one vertical edge: a 1-2 pixel wide line of the 64 rows
    assert 0.01 < complexity_proxies(half)["edge_density"] < 0.05


def test_correlation_known_values():
    c = correlation([1, 2, 3, 4, 5], [2, 4, 6, 8, 10])
    assert c["spearman"] == pytest.approx(1.0) and c["kendall"] == pytest.approx(1.0)
    c = correlation([1, 2, 3, 4], [4, 3, 2, 1])
    assert c["spearman"] == pytest.approx(-1.0) and c["kendall"] == pytest.approx(-1.0)
    # one discordant pair of six: tau = (5 - 1) / 6; rho = 1 - 6 * 2 / (4 * 15) = 0.8
    c = correlation([1, 2, 3, 4], [1, 2, 4, 3])
    assert c["kendall"] == pytest.approx(4 / 6) and c["spearman"] == pytest.approx(0.8)
    c = correlation([8, 8, 8], [1, 2, 3])
    assert c["spearman"] is None and "same number of tokens" in c["reason"]
    assert correlation([1, None, 3], [1, 2, None])["reason"].startswith("needs at least 3")


def test_read_ratings(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("image,score\nimg00.png,1.5\nsub/img01.png,2\n\n")
    assert read_ratings(path) == {"img00.png": 1.5, "sub/img01.png": 2.0}
    path.write_text("file,rating\nimg00.png,high\n")
    with pytest.raises(AlitError, match="r.csv:2"):
        read_ratings(path)


def test_analyze_complexity(setup, tmp_path):
    t = setup["threshold"]
    ratings = tmp_path / "ratings.csv"
    with open(ratings, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "rating"])
        w.writerows([[f"img{i:02d}.png", i] for i in range(5)])  # img05 unrated
    out = tmp_path / "out"
    r = analyze_complexity(setup["tok"], setup["images"], [t, 10.0], out, ratings=ratings, batch_size=4)
    on_disk = json.loads((out / "complexity.json").read_text())
    assert on_disk["data"]["images"] == 6 and len(on_disk["images"]) == 6
    key = f"{t:g}"
    tokens = [x["tokens"][key] for x in r["images"]]
    assert 8 in tokens and 64 in tokens  # the median threshold splits the images
    # brighter test images are noisier and cost this random model more: positive correlations
    for proxy, least in (("png_bpp", 0.5), ("jpeg_bpp", 0.5), ("rating", 0.5), ("edge_density", 0.0)):
        c = r["correlations"][key][proxy]
        assert c["spearman"] > least and c["kendall"] > least and 0 <= c["kendall_p"] <= 1, (proxy, c)
    assert r["correlations"][key]["rating"]["n"] == 5
    assert r["correlations"]["10"]["png_bpp"]["spearman"] is None  # constant tokens: no correlation
    assert any("5 of 6 images matched" in n for n in r["notes"])
    with open(out / "complexity.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 6 and set(rows[0]) == {"file", f"tokens@{key}", "tokens@10", "png_bpp", "jpeg_bpp",
                                               "edge_density", "rating"}
    for name in ("index.html", "scatter.png"):
        assert (out / name).is_file()
    assert len(list((out / "thumbs").glob("*.png"))) == 6


def test_analyze_familiarity(setup, tmp_path):
    other = tmp_path / "other"
    write_images(other, n=5, seed=1, offset=0.6)  # brighter: more tokens from this random model
    out = tmp_path / "out"
    t = setup["threshold"]
    r = analyze_familiarity(setup["tok"], setup["images"], other, [t], out)
    e = r["tests"][f"{t:g}"]
    assert e["n_in_distribution"] == 6 and e["n_other"] == 5
    assert e["mean_other"] > e["mean_in_distribution"]
    assert 0 <= e["mann_whitney_p"] <= 1 and 0 <= e["ks_p"] <= 1 and e["prob_other_needs_more"] > 0.5
    assert sum(e["histogram_other"].values()) == 5
    assert json.loads((out / "familiarity.json").read_text())["tests"][f"{t:g}"]["mean_other"] == e["mean_other"]
    assert (out / "index.html").is_file() and (out / "histograms.png").is_file()


def test_rules_of_any_kind(setup, tmp_path, one_thread):
    """A criterion `NAME:VALUE` is a rule as an L1 threshold is: the same choice as encode's, keyed and
    labelled by its text; the number t and `l1:t` give the same counts."""
    tok = setup["tok"]
    x = torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    x[:2] *= 0.2
    t = setup["threshold"]
    counts = token_counts(tok, x, [t, f"l1:{t}", "ssim:0.02", "psnr:1"])
    assert torch.equal(counts[:, 0], counts[:, 1])
    assert counts[:, 2].tolist() == tok.encode(x, criterion=EightBit(alit.SSIMAbove(0.02))).lengths.tolist()
    assert counts[:, 3].tolist() == [tok.config.lengths[0]] * 4  # every 8-bit image is above 1 dB
    other = tmp_path / "other"
    write_images(other, n=5, seed=1, offset=0.6)
    r = analyze_familiarity(tok, setup["images"], other, [t, "ssim:0.02"], tmp_path / "f")
    assert list(r["tests"]) == [f"{t:g}", "ssim:0.02"]
    assert r["labels"] == {f"{t:g}": f"L1 < {t:g}", "ssim:0.02": "ssim:0.02"}
    assert "ssim:0.02" in (tmp_path / "f" / "index.html").read_text()
    c = analyze_complexity(tok, setup["images"], ["ssim:0.02"], tmp_path / "c")
    assert set(c["images"][0]["tokens"]) == {"ssim:0.02"} and "png_bpp" in c["correlations"]["ssim:0.02"]


def test_analyze_cli_criteria(setup, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["analyze", "familiarity", "--checkpoint", str(setup["ckpt"]), "--data", str(setup["images"]),
            "--other", str(setup["images"]), "--out", str(out)]
    assert main(argv + ["--criteria", "ssim:0.3,l1:0.2"]) == 0
    text = capsys.readouterr().out
    assert "ssim:0.3" in text and "l1:0.2" in text
    assert list(json.loads((out / "familiarity.json").read_text())["tests"]) == ["ssim:0.3", "l1:0.2"]
    assert main(argv + ["--criteria", "ssim:0.3", "--thresholds", "0.1"]) == 2
    assert "not both" in capsys.readouterr().err
    assert main(argv + ["--criteria", "ssim:2"]) == 2
    assert "bad criterion 'ssim:2'" in capsys.readouterr().err


def test_analyze_cli(setup, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["analyze", "complexity", "--checkpoint", str(setup["ckpt"]), "--data", str(setup["images"]),
                 "--out", str(out), "--thresholds", f"{setup['threshold']}"])
    assert code == 0
    text = capsys.readouterr().out
    assert "png_bpp" in text and "spearman" in text and "mean tokens" in text
    assert main(["analyze", "familiarity", "--checkpoint", str(setup["ckpt"]), "--data", str(setup["images"]),
                 "--out", str(out)]) == 2
    assert "--other" in capsys.readouterr().err
    assert main(["analyze", "complexity", "--checkpoint", str(setup["ckpt"]), "--data", str(setup["images"]),
                 "--thresholds", "0.1,x"]) == 2
    assert "--thresholds" in capsys.readouterr().err
