"""Reading image files of every common kind into float RGB [0, 1], fitting them to the model's
size, and writing PNGs; bad files give one-line errors naming the file."""
from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from alit.images import ImageReadError, find_images, fit, load_image, read_image, save_png

RNG = np.random.default_rng(0)
_yy, _xx = np.mgrid[0:24, 0:32]
RGB = np.stack([_xx * 8, _yy * 10, 255 - _xx * 4 - _yy * 3], -1).astype(np.uint8)  # smooth: JPEG keeps it


def write_png16_rgb(path, pixels: np.ndarray) -> None:
    """A 16-bit RGB PNG written by hand (Pillow cannot write one)."""
    H, W, _ = pixels.shape
    raw = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in pixels)  # filter 0 per row

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", W, H, 16, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def as_hwc(image: torch.Tensor) -> np.ndarray:
    assert image.dtype == torch.float32 and image.ndim == 3 and image.shape[0] == 3
    assert image.min() >= 0 and image.max() <= 1
    return image.permute(1, 2, 0).numpy()


@pytest.mark.parametrize("suffix, tol", [(".png", 1e-6), (".bmp", 1e-6), (".tif", 1e-6), (".webp", 1e-6),
                                         (".jpg", 0.02)])
def test_rgb_formats(tmp_path, suffix, tol):
    path = tmp_path / f"rgb{suffix}"
    Image.fromarray(RGB).save(path, **{".webp": {"lossless": True}, ".jpg": {"quality": 95}}.get(suffix, {}))
    got = as_hwc(read_image(path))
    assert got.shape == (24, 32, 3)
    assert np.abs(got - RGB / 255).mean() < tol


def test_gray_and_one_bit(tmp_path):
    gray = RGB[..., 0]
    Image.fromarray(gray, "L").save(tmp_path / "gray.png")
    got = as_hwc(read_image(tmp_path / "gray.png"))
    assert np.allclose(got, (gray / 255)[..., None].repeat(3, 2), atol=1e-6)
    Image.fromarray(gray > 128).save(tmp_path / "bits.png")
    got = as_hwc(read_image(tmp_path / "bits.png"))
    assert np.array_equal(got[..., 1], (gray > 128).astype(np.float32))


def test_16_bit_gray_keeps_its_precision(tmp_path):
    gray16 = (RNG.random((20, 30)) * 65535).astype(np.uint16)
    for name in ("gray16.png", "gray16.tif"):
        Image.fromarray(gray16).save(tmp_path / name)
        got = as_hwc(read_image(tmp_path / name))
        assert np.allclose(got, (gray16 / 65535)[..., None].repeat(3, 2), atol=1e-6), name


def test_16_bit_rgb(tmp_path):
    rgb16 = (RNG.random((12, 10, 3)) * 65535).astype(np.uint16)
    write_png16_rgb(tmp_path / "rgb16.png", rgb16)
    got = as_hwc(read_image(tmp_path / "rgb16.png"))
    assert np.abs(got - rgb16 / 65535).max() <= 1 / 255 + 1e-6


def test_transparency_is_composited_onto_white(tmp_path):
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., :3] = (200, 40, 10)
    rgba[:4, :, 3] = 255  # top half opaque, bottom half fully transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "alpha.webp", lossless=True)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "alpha.png")
    for name in ("alpha.webp", "alpha.png"):
        got = as_hwc(read_image(tmp_path / name))
        assert np.allclose(got[:4], np.array([200, 40, 10]) / 255, atol=1e-6), name
        assert np.allclose(got[4:], 1.0), name


def test_palette(tmp_path):
    im = Image.fromarray(RGB).quantize(16)
    im.save(tmp_path / "palette.png")
    expected = np.asarray(im.convert("RGB")) / 255
    assert np.allclose(as_hwc(read_image(tmp_path / "palette.png")), expected, atol=1e-6)
    im.info["transparency"] = 0
    im.save(tmp_path / "palette_t.png", transparency=0)
    got = as_hwc(read_image(tmp_path / "palette_t.png"))
    assert np.allclose(got[np.asarray(im) == 0], 1.0)  # the transparent index shows white


def test_exif_orientation_is_applied(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90 degrees: shown as 32 x 24 portrait
    Image.fromarray(RGB).save(tmp_path / "rotated.jpg", exif=exif)
    assert read_image(tmp_path / "rotated.jpg").shape == (3, 32, 24)


def test_bad_files_raise_one_line_naming_the_file(tmp_path):
    Image.fromarray(RGB).save(tmp_path / "good.png")
    data = (tmp_path / "good.png").read_bytes()
    (tmp_path / "truncated.png").write_bytes(data[: len(data) // 2])
    (tmp_path / "notes.png").write_text("this is not an image\n")
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "folder.png").mkdir()
    for name in ("truncated.png", "notes.png", "empty.jpg", "missing.png", "folder.png"):
        with pytest.raises(ImageReadError) as info:
            read_image(tmp_path / name)
        message = str(info.value)
        assert message.startswith(str(tmp_path / name) + ": ") and "\n" not in message, message


def test_fit_resizes_the_shorter_side_and_centre_crops():
    tall = torch.rand(3, 100, 50)
    out = fit(tall, 64)
    assert out.shape == (3, 64, 64) and out.min() >= 0 and out.max() <= 1
    stripes = torch.zeros(3, 40, 120)
    stripes[:, :, 40:80] = 1  # a white middle third: the centre crop is all white
    assert fit(stripes, 40).min() == 1
    small = torch.rand(3, 20, 30)
    assert fit(small, 64).shape == (3, 64, 64)
    exact = torch.rand(3, 64, 64)
    assert torch.equal(fit(exact, 64), exact)


def test_load_image(tmp_path):
    Image.fromarray(RGB).save(tmp_path / "a.png")
    assert load_image(tmp_path / "a.png", 16).shape == (3, 16, 16)


def test_find_images(tmp_path):
    (tmp_path / "d" / "sub").mkdir(parents=True)
    (tmp_path / "empty").mkdir()
    for name in ("d/b.PNG", "d/sub/a.jpg", "d/readme.txt", "loose.dat"):
        (tmp_path / name).write_bytes(b"x")
    paths, problems = find_images([tmp_path / "d", tmp_path / "loose.dat", tmp_path / "nope.png",
                                   tmp_path / "empty"])
    assert paths == [tmp_path / "d/b.PNG", tmp_path / "d/sub/a.jpg", tmp_path / "loose.dat"]
    assert len(problems) == 2 and "nope.png: no such file" in problems[0] and "empty: no image" in problems[1]


def test_save_png_round_trip(tmp_path):
    image = torch.rand(3, 16, 16)
    save_png(image, tmp_path / "x.png")
    back = read_image(tmp_path / "x.png")
    assert (back - image).abs().max() <= 0.5 / 255 + 1e-6
