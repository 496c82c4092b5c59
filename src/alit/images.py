"""Image files in and out: any common file -> float RGB [3, H, W] in [0, 1], and back to PNG.

Reads what Pillow reads (PNG, JPEG, WebP, BMP, TIFF, ...). Gray, palette, CMYK and 1-bit images
become RGB; transparent ones (RGBA, LA, palette with transparency) are composited onto white;
16-bit gray keeps its 16-bit precision; the EXIF orientation of photos is applied. `fit` resizes
the shorter side (bicubic, antialiased) and centre-crops to a square, as the model expects.

`load_image(path, size)` and the transform `Preprocess(size)` (for PIL images, tensors and arrays)
are exactly what every `alit` command gives a model: `fit`, then values rounded to the 8-bit grid
k / 255, as an 8-bit file would hold them. A model's length rule (`config.criterion`) is calibrated
on such inputs; resizing with another library moves pixels by up to ~0.2.

An image much larger than the model (shorter side above `REDUCE_ABOVE` times `size`) is shrunk by
an integer factor while it is decoded (Pillow's JPEG draft mode, then `Image.reduce`, a box
filter), to a shorter side of at least `REDUCE_TO` times `size`, before the bicubic resize: a
10000 x 10000 photo then needs ~0.3 GB and seconds instead of ~4 GB, and its result moves by about
one 8-bit step at most. Images up to that size are resized from their full resolution.

A file that cannot be read raises `ImageReadError` (an AlitError) whose message is one line that
names the file.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import AlitError
from .scoring import to_8bit

# what Pillow reads, by suffix (case-insensitive), for files found in folders; a file named directly
# is read whatever its suffix
IMAGE_SUFFIXES = (".png", ".apng", ".jpg", ".jpeg", ".jpe", ".jfif", ".webp", ".bmp", ".dib", ".gif", ".tif",
                  ".tiff", ".ppm", ".pgm", ".pbm", ".pnm", ".tga", ".qoi", ".jp2", ".j2k", ".jpx", ".ico", ".pcx",
                  ".sgi", ".ras", ".psd", ".avif")
REDUCE_ABOVE = 8  # shrink while decoding when the shorter side is above this many times the model's size
REDUCE_TO = 4     # ... by an integer factor, to no fewer than this many times the size


class ImageReadError(AlitError):
    """A missing, unreadable, corrupt or non-image file."""


def read_image(path: str | Path, size: int | None = None) -> torch.Tensor:
    """The image at `path` as float32 RGB [3, H, W] in [0, 1], at its own size; with `size` (the
    size it will be fitted to), an image more than REDUCE_ABOVE times larger is shrunk while it is
    decoded (see the module docstring)."""
    path = Path(path)
    try:
        with warnings.catch_warnings():
            # a big image is shrunk as it is decoded; Pillow's own limit (2x this) still refuses bombs
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                if size is not None and im.format == "JPEG":
                    im.draft("RGB", _reduced_size(im.size, size))  # decode at 1/2, 1/4 or 1/8 scale
                im.load()  # decode now: a truncated or corrupt file fails here, not later
                im = ImageOps.exif_transpose(im)
                if size is not None:
                    im = _reduce(im, size)
                rgb = _rgb_array(im)  # [H, W, 3] float in [0, 1]
    except FileNotFoundError:
        raise ImageReadError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ImageReadError(f"{path}: is a directory") from None
    except PermissionError:
        raise ImageReadError(f"{path}: permission denied") from None
    except UnidentifiedImageError:
        raise ImageReadError(f"{path}: not a readable image file (corrupt, or not an image)") from None
    except Image.DecompressionBombError as e:
        detail = str(e).split(", could be")[0]  # "Image size (N pixels) exceeds limit of M pixels"
        raise ImageReadError(f"{path}: too large to read safely ({detail})") from None
    except Exception as e:  # decoders of corrupt files raise many kinds of errors
        detail = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ImageReadError(f"{path}: corrupt or unreadable image ({detail})") from None
    return torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))  # [3, H, W]


def _reduced_size(wh: tuple[int, int], size: int) -> tuple[int, int]:
    """(w, h) an image of `wh` may be shrunk to before it is fitted to `size` (itself when small)."""
    factor = _reduce_factor(wh, size)
    return (wh[0] // factor, wh[1] // factor) if factor > 1 else wh


def _reduce_factor(wh: tuple[int, int], size: int) -> int:
    short = min(wh)
    return short // (REDUCE_TO * size) if short > REDUCE_ABOVE * size else 1


def _reduce(im, size: int):
    """A loaded PIL image shrunk by an integer factor (box filter) when much larger than `size`."""
    factor = _reduce_factor(im.size, size)
    if factor <= 1:
        return im
    if im.mode.startswith("I;16"):
        im = im.convert("I")  # 16-bit precision kept; Image.reduce does not take I;16
    elif im.mode not in ("L", "LA", "RGB", "RGBA", "I", "F", "CMYK"):  # modes Image.reduce handles
        transparent = im.mode in ("PA", "RGBa", "La") or "transparency" in im.info
        im = im.convert("RGBA" if transparent else "RGB")
    return im.reduce(factor)


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


def frame_count(path: str | Path) -> int:
    """Frames of an animation or pages of a multi-page file (1 for most images, and for a camera's
    MPO JPEG, whose further pictures are previews of the first)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # as read_image: only the header is read
            with Image.open(path) as im:
                if im.format == "MPO" or not getattr(im, "is_animated", False):
                    return 1
                return int(im.n_frames)
    except Exception:  # read_image has already read it; this is only a count
        return 1


def load_image(path: str | Path, size: int) -> torch.Tensor:
    """The image at `path` as every `alit` command gives it to a model: [3, size, size] float32 in
    [0, 1] on the 8-bit grid (`fit`, then `to_8bit`). Use it, or `Preprocess(size)`, to feed
    `encode` / `rollout` what the model's length rule was calibrated on."""
    return to_8bit(fit(read_image(path, size), size))


class Preprocess:
    """The model's preprocessing as a transform: `Preprocess(tok.config.image_size)(x)` -> [3, S, S]
    float32 in [0, 1] on the 8-bit grid, for x a PIL image, a uint8 or float tensor [3, H, W]
    (float in [0, 1]), or a uint8 array [H, W, 3]. Equal to `load_image` on the same pixels; usable
    in a torchvision `Compose` or a Dataset."""

    def __init__(self, size: int):
        if not isinstance(size, int) or size < 1:
            raise ValueError(f"Preprocess needs the model's image size, a positive int, got {size!r}")
        self.size = size

    def __call__(self, image) -> torch.Tensor:
        return to_8bit(fit(as_tensor(image), self.size))

    def __repr__(self) -> str:
        return f"Preprocess({self.size})"


def as_tensor(image) -> torch.Tensor:
    """A PIL image, a tensor [3, H, W] (uint8, or float in [0, 1]) or an array [H, W, 3] / [H, W]
    -> float32 RGB [3, H, W] in [0, 1], read as `read_image` reads files."""
    if isinstance(image, torch.Tensor):
        if image.ndim != 3 or image.shape[0] != 3:
            raise ValueError(f"expected an image tensor [3, H, W], got shape {list(image.shape)}")
        if image.dtype == torch.uint8:
            return image.float() / 255
        if not image.is_floating_point():
            raise ValueError(f"expected a uint8 or float image tensor, got {image.dtype}")
        lo, hi = float(image.min()), float(image.max())
        if lo < 0 or hi > 1:
            raise ValueError(f"expected a float image in [0, 1], got values in [{lo:.3g}, {hi:.3g}]")
        return image.float()
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3):
            raise ValueError(f"expected a uint8 array [H, W, 3] or [H, W], got {image.dtype} {list(image.shape)}")
        rgb = image if image.ndim == 3 else np.repeat(image[..., None], 3, 2)
        return torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1))).float() / 255
    if hasattr(image, "mode") and hasattr(image, "convert"):  # a PIL image
        rgb = _rgb_array(ImageOps.exif_transpose(image))
        return torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))
    raise ValueError(f"expected a PIL image, a tensor [3, H, W] or a uint8 array, got {type(image).__name__}")


def find_images(inputs: list[str | Path], skipped: list[str] | None = None) -> tuple[list[Path], list[str]]:
    """Files named directly (whatever their suffix) and image files found under folders
    (recursively, by suffix, sorted). Returns (paths, problems): one line per input that is
    missing or a folder with no images in it. A path given twice is kept once. `skipped`, when
    given, receives one line per folder that held files without an image suffix (not hidden ones),
    naming them: they are not read."""
    paths, problems, seen = [], [], set()
    for item in map(Path, inputs):
        if item.is_dir():
            files = sorted(p for p in item.rglob("*") if p.is_file()
                           and not any(part.startswith(".") for part in p.relative_to(item).parts))
            found = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
            others = [p for p in files if p.suffix.lower() not in IMAGE_SUFFIXES]
            if not found:
                problems.append(f"{item}: no image files ({', '.join(IMAGE_SUFFIXES[:6])}, ...) in this folder")
            if others and skipped is not None:
                names = ", ".join(str(p.relative_to(item)) for p in others[:3])
                more = f" and {len(others) - 3} more" if len(others) > 3 else ""
                skipped.append(f"{item}: skipped {len(others)} file(s) without an image suffix ({names}{more}); "
                               f"name a file directly to read it anyway")
        elif item.exists():
            found = [item]
        else:
            problems.append(f"{item}: no such file or folder")
            continue
        for p in found:
            key = p.resolve()
            if key not in seen:
                seen.add(key)
                paths.append(p)
            elif skipped is not None and p == item:
                skipped.append(f"{p}: given more than once; read once")
    return paths, problems


def save_png(image: torch.Tensor, path: str | Path) -> Path:
    """Write [3, H, W] in [0, 1] as an 8-bit RGB PNG (values are clamped, then rounded)."""
    path = Path(path)
    pixels = (image.detach().float().clamp(0, 1) * 255).round().to(torch.uint8)  # [3, H, W]
    Image.fromarray(pixels.permute(1, 2, 0).cpu().numpy()).save(path)
    return path
