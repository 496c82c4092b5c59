"""benchmarks/shrink_photos.py: shrunk photos, and tiles of the larger ones that cover them."""
from __future__ import annotations

import numpy as np
from PIL import Image

from conftest import load_script


def test_tiles_cover_the_shrunk_photo_and_small_photos_are_left_out(tmp_path):
    src, out = tmp_path / "photos", tmp_path / "tiles"
    src.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (300, 500, 3), dtype=np.uint8)).save(src / "wide.png")
    Image.fromarray(rng.integers(0, 256, (120, 120, 3), dtype=np.uint8)).save(src / "small.png")
    script = load_script("shrink_photos")
    script.main([str(src), str(out), "--size", "64", "--tiles", "150"])
    tiles = sorted(p.name for p in out.iterdir())
    # wide.png shrinks to 250 x 150: ceil(250/64) = 4 columns at 0, 62, 124, 186; ceil(150/64) = 3 rows at 0, 43, 86
    assert len(tiles) == 12 and not any(t.startswith("small") for t in tiles)
    assert script.starts(250, 64) == [0, 62, 124, 186] and script.starts(64, 64) == [0]
    shrunk = np.asarray(Image.open(src / "wide.png").resize((250, 150), Image.LANCZOS))
    tile = np.asarray(Image.open(out / "wide-t150-186-86.png"))
    assert tile.shape == (64, 64, 3) and np.array_equal(tile, shrunk[86:150, 186:250])
    script.main([str(src), str(tmp_path / "small"), "--size", "128"])  # never enlarged
    assert Image.open(tmp_path / "small" / "small.png").size == (120, 120)
    assert Image.open(tmp_path / "small" / "wide.png").size == (213, 128)
