"""Image files in and out: any common file -> float RGB [3, H, W] in [0, 1], and back to PNG.

Reads what Pillow reads (PNG, JPEG, WebP, BMP, TIFF, ...). Gray, palette, CMYK and 1-bit images
become RGB; transparent ones (RGBA, LA, palette with transparency) are composited onto white;
16-bit gray keeps its 16-bit precision; the EXIF orientation of photos is applied. `fit` resizes
the shorter side (bicubic, antialiased) and centre-crops to a square, as the model expects.

A file that cannot be read raises `ImageReadError` (an AlitError) whose message is one line that
names the file.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .errors import AlitError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


class ImageReadError(AlitError):
    """A missing, unreadable, corrupt or non-image file."""


def read_image(path: str | Path) -> torch.Tensor:
    """The image at `path` as float32 RGB [3, H, W] in [0, 1], at its own size."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as im:
            im.load()  # decode now: a truncated or corrupt file fails here, not later
            im = ImageOps.exif_transpose(im)
            rgb = _rgb_array(im)  # [H, W, 3] float in [0, 1]
    except FileNotFoundError:
        raise ImageReadError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ImageReadError(f"{path}: is a directory") from None
    except PermissionError:
        raise ImageReadError(f"{path}: permission denied") from None
    except UnidentifiedImageError:
        raise ImageReadError(f"{path}: not a readable image file (corrupt, or not an image)") from None
    except Exception as e:  # decoders of corrupt files raise many kinds of errors
        detail = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ImageReadError(f"{path}: corrupt or unreadable image ({detail})") from None
    return torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))  # [3, H, W]


def _rgb_array(im) -> np.ndarray:
    """A loaded PIL image -> float32 [H, W, 3] in [0, 1]."""
    if im.mode.startswith("I;16") or im.mode == "I":
        # 16-bit gray (mode "I" is how Pillow widens 16-bit data in some formats)
        gray = np.asarray(im, dtype=np.float64) / 65535.0
        return np.repeat(np.clip(gray, 0, 1)[..., None], 3, axis=2).astype(np.float32)
    if im.mode == "F":  # float TIFF: taken to be in [0, 1] already
        gray = np.nan_to_num(np.asarray(im, dtype=np.float32))
        return np.repeat(np.clip(gray, 0, 1)[..., None], 3, axis=2)
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info:
        rgba = np.asarray(im.convert("RGBA"), dtype=np.float32) / 255.0
        alpha = rgba[..., 3:]
        return rgba[..., :3] * alpha + (1.0 - alpha)  # onto white
    return np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0


def fit(image: torch.Tensor, size: int) -> torch.Tensor:
    """Resize [3, H, W] so its shorter side is `size` (bicubic, antialiased), then centre-crop to
    [3, size, size]. Values stay in [0, 1]."""
    _, h, w = image.shape
    if (h, w) != (size, size):
        scale = size / min(h, w)
        nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
        if (nh, nw) != (h, w):
            image = F.interpolate(image[None], size=(nh, nw), mode="bicubic", antialias=True,
                                  align_corners=False)[0].clamp(0, 1)
        top, left = (nh - size) // 2, (nw - size) // 2
        image = image[:, top:top + size, left:left + size]
    return image.contiguous()


def load_image(path: str | Path, size: int) -> torch.Tensor:
    """read_image + fit: the image at `path` as the model sees it, [3, size, size] in [0, 1]."""
    return fit(read_image(path), size)


def find_images(inputs: list[str | Path]) -> tuple[list[Path], list[str]]:
    """Files named directly (whatever their suffix) and image files found under folders
    (recursively, by suffix, sorted). Returns (paths, problems): one line per input that is
    missing or a folder with no images in it."""
    paths, problems = [], []
    for item in map(Path, inputs):
        if item.is_dir():
            found = sorted(p for p in item.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            if not found:
                problems.append(f"{item}: no image files ({', '.join(IMAGE_SUFFIXES)}) in this folder")
            paths.extend(found)
        elif item.exists():
            paths.append(item)
        else:
            problems.append(f"{item}: no such file or folder")
    return paths, problems


def save_png(image: torch.Tensor, path: str | Path) -> Path:
    """Write [3, H, W] in [0, 1] as an 8-bit RGB PNG (values are clamped, then rounded)."""
    from PIL import Image

    path = Path(path)
    pixels = (image.detach().float().clamp(0, 1) * 255).round().to(torch.uint8)  # [3, H, W]
    Image.fromarray(pixels.permute(1, 2, 0).cpu().numpy()).save(path)
    return path
