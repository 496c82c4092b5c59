"""Shared pieces of the evaluation tests (no tests here): a tiny random checkpoint, synthetic image
folders, and a headless-Chromium page check."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import alit
from alit.weights import save

@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models run fastest on one thread, and shared CI cores are not oversubscribed (restored after)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
NO_CHROMIUM = "no chromium on PATH: apt-get install -y chromium (Debian) to run the browser checks"


def make_checkpoint(folder: Path, preset: str = "tiny") -> Path:
    torch.manual_seed(0)
    tok = alit.build(preset)
    return save(tok.state_dict(), tok.config, folder)


def write_images(folder: Path, n: int = 6, seed: int = 0, offset: float = 0.0) -> list[Path]:
    """n RGB images of several sizes and shapes; brighter ones are also noisier (more complex), so a
    random tiny model (whose error grows with brightness) gives more tokens to complex images."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    sizes = [(80, 100), (64, 64), (50, 90), (120, 70), (64, 96), (90, 90), (70, 110), (100, 64)]
    paths = []
    for i in range(n):
        h, w = sizes[i % len(sizes)]
        g = min(1.0, offset + i / max(1, n - 1))
        yy, xx = np.mgrid[0:h, 0:w]
        img = np.stack([0.7 * g + 0.3 * xx / w, g * np.ones((h, w)), 0.7 * g + 0.3 * yy / h], -1)
        img = img + rng.normal(0, 0.02 + 0.15 * g, img.shape)
        path = folder / f"img{i:02d}.png"
        Image.fromarray((np.clip(img, 0, 1) * 255).round().astype(np.uint8)).save(path)
        paths.append(path)
    return paths


def write_labelled(root: Path, per_class: int = 8, seed: int = 0) -> Path:
    """Three classes told apart by brightness and colour, with noise and varied sizes."""
    rng = np.random.default_rng(seed)
    looks = {"dark": (0.15, 0.1, 0.1), "green": (0.3, 0.7, 0.3), "bright": (0.9, 0.9, 0.8)}
    for name, rgb in looks.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            h, w = 40 + 8 * (i % 3), 48 + 8 * (i % 2)
            img = np.clip(np.array(rgb) + rng.normal(0, 0.08, (h, w, 3)), 0, 1)
            Image.fromarray((img * 255).astype(np.uint8)).save(root / name / f"{i:02d}.png")
    return root


def median_l1(tok, folder: Path) -> float:
    """A threshold that splits the folder's images: the median first-length L1 of a rollout."""
    from alit.scoring import l1_error
    from alit.eval.inputs import batches, protocol

    paths = sorted(folder.glob("*.png"))
    batch = next(batches(paths, tok.config.image_size, protocol("resize-crop"), len(paths)))
    with torch.no_grad():
        errors = l1_error(batch.images, tok.rollout(batch.images).reconstructions[0])
    return float(errors.median()) + 1e-4


_CHECK = """<script>window.addEventListener('load', function () {
  var bad = [];
  for (var i = 0; i < document.images.length; i++) {
    var im = document.images[i];
    if (!im.complete || im.naturalWidth === 0) bad.push(im.getAttribute('src'));
  }
  document.body.setAttribute('data-images', String(document.images.length));
  document.body.setAttribute('data-broken', JSON.stringify(bad));
  document.body.setAttribute('data-scroll-width', String(document.documentElement.scrollWidth));
});</script>"""


def render(page: Path, screenshot: Path, size: tuple[int, int] = (1280, 900)) -> dict:
    """Open `page` in headless Chromium in a window of `size`: write a screenshot and return
    {"images": n, "broken": [...], "scroll_width": the page's width in CSS px (wider than the
    window: it scrolls sideways)}.

    The page is copied beside itself (so relative image paths resolve) with a script that, once
    everything has loaded, records every <img> whose naturalWidth is 0.
    """
    text = page.read_text()
    assert "</body>" in text
    probe = page.with_name(f"_browser_check_{page.name}")
    probe.write_text(text.replace("</body>", _CHECK + "</body>"))
    try:
        with tempfile.TemporaryDirectory() as profile:
            proc = subprocess.run(
                [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={profile}", f"--screenshot={screenshot}", f"--window-size={size[0]},{size[1]}",
                 "--hide-scrollbars", "--dump-dom", probe.resolve().as_uri()],
                capture_output=True, text=True, timeout=600)  # only a guard against a hang
    finally:
        probe.unlink()
    assert proc.returncode == 0, proc.stderr[-2000:]
    images = re.search(r'data-images="(\d+)"', proc.stdout)
    broken = re.search(r'data-broken="([^"]*)"', proc.stdout)
    width = re.search(r'data-scroll-width="(\d+)"', proc.stdout)
    assert images and broken and width, "the load handler did not run: " + proc.stdout[:500]
    return {"images": int(images.group(1)), "broken": json.loads(broken.group(1).replace("&quot;", '"')),
            "scroll_width": int(width.group(1))}


def assert_renders(page: Path, screenshot: Path, min_images: int = 1) -> None:
    """The page renders in Chromium: every image loads, nothing is cut off sideways in a 1280-px
    window (the page is no wider) and the screenshot is not blank."""
    result = render(page, screenshot)
    assert result["images"] >= min_images, result
    assert result["broken"] == [], f"{page}: images that did not load: {result['broken']}"
    assert result["scroll_width"] <= 1280, f"{page}: {result['scroll_width']} px wide, wider than a 1280-px window"
    shot = np.asarray(Image.open(screenshot).convert("RGB"), dtype=np.float64)
    assert shot.shape[0] > 100 and shot.shape[1] > 100
    not_white = (shot < 240).any(-1).mean()
    assert not_white > 0.02, f"{screenshot}: looks blank ({not_white:.3%} non-white pixels)"
    assert shot.std() > 10, f"{screenshot}: looks blank (std {shot.std():.1f})"
