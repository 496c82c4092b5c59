"""Every HTML page the evaluation commands write renders in a real headless Chromium: the screenshot
is not blank and every <img> loads. Set ALIT_SCREENSHOTS=DIR to keep the screenshots."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

import alit
from alit.eval.analysis import analyze_complexity, analyze_familiarity
from alit.eval.probe import run_probe
from alit.eval.sweep import EvalOptions, evaluate
from alit.eval.visualize import visualize
from test_eval_support import (CHROMIUM, NO_CHROMIUM, assert_renders, make_checkpoint, median_l1,  # noqa: F401
                               one_thread, write_images, write_labelled)  # one_thread: autouse

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason=NO_CHROMIUM)


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    pytest.importorskip("scipy")
    root = tmp_path_factory.mktemp("pages")
    tok = alit.load(make_checkpoint(root / "ckpt"))
    images = root / "images"
    write_images(images, n=4)
    t = median_l1(tok, images)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TORCH_HOME", str(root / "empty-hub"))  # LPIPS / rFID unavailable: the page says why
        evaluate(tok, images, EvalOptions(lengths=[8, 32, 64], criterion=f"l1:{t}", examples=2), out=root / "eval")
    analyze_complexity(tok, images, [t], root / "complexity")
    other = root / "other"
    write_images(other, n=3, seed=1, offset=0.5)
    analyze_familiarity(tok, images, other, [t], root / "familiarity")
    run_probe(tok, write_labelled(root / "labelled", per_class=4), root / "probe", [8, 64], log=lambda line: None)
    visualize(tok, images / "img02.png", root / "visualize")
    return root


@pytest.mark.parametrize("name, min_images", [("eval", 9), ("complexity", 5), ("familiarity", 1), ("probe", 1),
                                              ("visualize", 25)])
def test_page_renders(pages, name, min_images, tmp_path):
    shot = tmp_path / f"{name}.png"
    assert_renders(pages / name / "index.html", shot, min_images)
    keep = os.environ.get("ALIT_SCREENSHOTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(keep) / f"{name}.png")


def test_a_missing_image_is_caught(pages, tmp_path):
    page = tmp_path / "index.html"
    page.write_text((pages / "probe" / "index.html").read_text().replace('src="accuracy.png"', 'src="gone.png"'))
    with pytest.raises(AssertionError, match="gone.png"):
        assert_renders(page, tmp_path / "shot.png")


def test_a_page_wider_than_1280_px_is_caught(tmp_path):
    page = tmp_path / "index.html"
    page.write_text('<!DOCTYPE html><html><body><div style="width: 1500px; height: 300px; background: #c33">'
                    "</div></body></html>")
    with pytest.raises(AssertionError, match="wider than a 1280-px window"):
        assert_renders(page, tmp_path / "shot.png", min_images=0)


def test_a_blank_page_is_caught(tmp_path):
    page = tmp_path / "index.html"
    page.write_text("<!DOCTYPE html><html><body></body></html>")
    with pytest.raises(AssertionError, match="blank"):
        assert_renders(page, tmp_path / "shot.png", min_images=0)
