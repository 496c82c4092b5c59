"""`alit demo` as a user runs it, on the bundled photos, with a tiny random-weight checkpoint."""
from __future__ import annotations

import json
import re

import pytest
import torch

import alit
from alit.demo import BEFORE_STAGE_2, PHOTOS, base_note
from alit.eval.inputs import batches, protocol
from alit.data.acquire.photos import heldout_names
from alit.scoring import pixel_metrics
from conftest import REPO, run_alit
from test_eval_support import CHROMIUM, NO_CHROMIUM, assert_renders, make_checkpoint, one_thread  # noqa: F401

README = REPO / "README.md"


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """(output folder, threshold, completed process) of one `alit demo` run whose L1 threshold is
    the median first-length error, so the rule splits the photos."""
    root = tmp_path_factory.mktemp("demo")
    ckpt = make_checkpoint(root / "ckpt")
    tok = alit.load(ckpt)
    proto = protocol("resize-crop")
    batch = next(batches(sorted(PHOTOS.glob("*.jpg")), tok.config.image_size, proto, 64))
    with torch.no_grad():
        first = proto.finish(tok.rollout(batch.images, num_iters=1).reconstructions[0])
    threshold = float(pixel_metrics(batch.images, first)["l1"].median()) + 1e-6
    out = root / "out"
    proc = run_alit("demo", "--checkpoint", ckpt, "--out", out, "--criterion", f"l1:{threshold}")
    return out, threshold, proc


def test_bundled_photos_are_the_heldout_photos():
    files = sorted(PHOTOS.glob("*.jpg"))
    assert sorted(f.stem for f in files) == sorted(name.rsplit(".", 1)[0] for name in heldout_names())
    assert sum(f.stat().st_size for f in files) < 1_000_000


def test_demo_summary(demo):
    out, threshold, proc = demo
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    lengths = summary["model"]["lengths"]
    keys = [str(L) for L in lengths]
    assert len(summary["images"]) == 48
    assert summary["criterion"] == f"l1:{threshold}"
    for r in summary["images"]:
        assert list(r["l1"]) == keys and list(r["psnr"]) == keys and list(r["ssim"]) == keys
        assert all(-1 <= v <= 1 for v in r["ssim"].values())
        assert r["chosen_tokens"] in lengths
        # the shortest length whose L1 passes, the longest when none does
        assert r["chosen_tokens"] == next((L for L in lengths if r["l1"][str(L)] < threshold), lengths[-1])
        assert r["png_bpp"] > 0
    chosen = {r["chosen_tokens"] for r in summary["images"]}
    assert lengths[0] in chosen and len(chosen) > 1  # the threshold splits the photos
    for L in keys:
        assert summary["mean_l1"][L] == pytest.approx(sum(r["l1"][L] for r in summary["images"]) / 48)
        assert summary["mean_ssim"][L] == pytest.approx(sum(r["ssim"][L] for r in summary["images"]) / 48)
    rank = summary["spearman_chosen_vs_png_bpp"]
    assert -1 <= rank["rho"] <= 1 and 0 <= rank["p"] <= 1
    # the base decoder on its encoder's own code of each photo, scored as every length is
    assert set(summary["base"]) == {"l1", "psnr", "ssim"}
    assert summary["base"]["l1"] == pytest.approx(sum(r["base_l1"] for r in summary["images"]) / 48)
    assert summary["base"]["psnr"] == pytest.approx(sum(r["base_psnr"] for r in summary["images"]) / 48)
    # the printed table: a row per length, then the means and the page
    lines = proc.stdout.splitlines()
    assert [line.split()[0] for line in lines[1:1 + len(lengths)]] == keys
    assert "Spearman rho" in proc.stdout and lines[-1] == str(out / "index.html")


def test_demo_under_an_ssim_rule_chooses_the_first_length_whose_ssim_passes(demo, tmp_path, one_thread):
    from alit.demo import run_demo

    summary = json.loads((demo[0] / "summary.json").read_text())
    tok = alit.load(summary["model"]["checkpoint"])
    s = float(sorted(r["ssim"]["16"] for r in summary["images"])[24])  # the median first-length SSIM
    got = run_demo(tok, tmp_path / "ssim", criterion=f"ssim:{s:.6f}")
    lengths = got["model"]["lengths"]
    for r in got["images"]:
        assert r["chosen_tokens"] == next((L for L in lengths if r["ssim"][str(L)] > round(s, 6)), lengths[-1])
    assert 20 <= sum(r["chosen_tokens"] == lengths[0] for r in got["images"]) <= 28
    assert (tmp_path / "ssim" / "ssim.png").is_file() and "Under each reconstruction: its SSIM" in \
        (tmp_path / "ssim" / "index.html").read_text()


def test_demo_base_figures_are_the_base_on_its_own_code(demo):
    """Recomputed here through the base alone: its encoder's code, its decoder, 8-bit, float64."""
    out, _, _ = demo
    summary = json.loads((out / "summary.json").read_text())
    tok = alit.load(summary["model"]["checkpoint"])
    proto = protocol("resize-crop")
    batch = next(batches(sorted(PHOTOS.glob("*.jpg")), tok.config.image_size, proto, 64))
    with torch.no_grad():
        own = proto.finish(tok.codes_to_images(tok.targets(batch.images).codes)).double()
    l1 = pixel_metrics(batch.images.double(), own)["l1"]
    by_file = {r["file"]: r["base_l1"] for r in summary["images"]}
    assert [by_file[p.name] for p in batch.paths] == pytest.approx(l1.tolist(), abs=1e-9)
    assert (out / "images" / batch.paths[0].stem / "base.png").is_file()


def test_demo_page_links_only_existing_images(demo):
    out, _, _ = demo
    page = (out / "index.html").read_text()
    sources = re.findall(r'<img src="([^"]+)"', page)
    assert len(sources) == 48 * 10 + 3  # input, every length and the base per photo, and the three plots
    assert all((out / src).is_file() for src in sources)
    assert page.count('class="img hl"') == 48  # one chosen length per photo


def test_demo_page_says_what_it_shows_and_what_the_base_is(demo):
    page = (demo[0] / "index.html").read_text()
    assert "alit encodes an image into a sequence of 1D tokens whose length adapts to the image" in page
    assert "ceiling" not in page.replace("No ceiling here", "")
    assert "base decoder (inside the model, retrained in stage 2)" in page and "<th>base decoder</th>" in page
    assert "Before stage 2" not in page  # a random model: nothing is known of its base before stage 2


def test_the_bundled_models_base_before_stage_2_is_the_readmes():
    """The page's figure for the bundled model is the README's, and belongs to the model that ships:
    a new bundled model must bring its own (BEFORE_STAGE_2)."""
    fingerprint = alit.load("default").fingerprint()
    assert fingerprint in BEFORE_STAGE_2
    l1, psnr = BEFORE_STAGE_2[fingerprint]
    readme = " ".join(README.read_text().split())  # its lines joined
    assert f"Before stage 2 the base scored {l1:.4f} / {psnr:.2f} dB on these photos" in readme
    assert f"L1 {l1:.4f}, PSNR {psnr:.2f} dB" in base_note(fingerprint)


@pytest.mark.skipif(CHROMIUM is None, reason=NO_CHROMIUM)
def test_demo_page_renders(demo, tmp_path):
    assert_renders(demo[0] / "index.html", tmp_path / "demo.png", min_images=48 * 9 + 3)


def test_missing_checkpoint_is_one_line(tmp_path):
    proc = run_alit("demo", "--checkpoint", tmp_path / "nope", "--out", tmp_path / "out")
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("alit demo: error: ")
    # a moved run folder: what --checkpoint takes, a PATH as well as the names
    assert f"--checkpoint {tmp_path / 'nope'}: no such checkpoint folder or file. --checkpoint PATH takes a " \
           "model folder" in proc.stderr and "default, paper/" in proc.stderr
