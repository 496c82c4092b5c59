"""What an evaluation feeds the model: a checkpoint, and image files prepared by a named protocol.

Two preprocessing protocols, both giving 8-bit RGB images of the model's size S (config.image_size):

  resize-crop  (the default; the common protocol, and the paper's for its own photos and figures)
      resize the shorter side to S (bicubic, antialiased), then crop the central S x S square:
      `alit.images.fit`, exactly what `alit reconstruct` and `alit visualize` do.
  center-crop  (the paper's ImageNet evaluation: evaluate_rfid.py on a `val` folder)
      crop the central S x S square of the image at its own resolution, with no resizing. An image
      smaller than S on a side is padded with black, as torchvision's CenterCrop (which the paper
      uses) does; how many were padded is reported.

Either way the prepared image is rounded to 8 bits (as the paper's loader, which reads 8-bit files,
gives it) and that is what the model is given and what reconstructions are scored against.
Reconstructions are clamped to [0, 1] and made 8-bit before they are scored, as a saved PNG would
be: rounded to nearest under resize-crop; truncated (floor of 255 x) under center-crop, because
the paper's evaluation saves them with `astype(uint8)` and measures the saved files.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from ..errors import AlitError
from ..images import IMAGE_SUFFIXES, ImageReadError, find_images, fit, read_image
from ..resolve import NoSuchCheckpoint, known_names
from ..scoring import to_8bit
from ..tokenizer import load


@dataclass(frozen=True)
class Protocol:
    name: str
    description: str
    resize: bool     # resize the shorter side to S before the central crop
    truncate: bool   # reconstructions to 8 bits by truncation (the paper's) instead of rounding

    def prepare(self, image: torch.Tensor, size: int) -> tuple[torch.Tensor, bool]:
        """A decoded image [3, H, W] in [0, 1] -> ([3, S, S] on the 8-bit grid, whether it was padded)."""
        padded = False
        if self.resize:
            image = fit(image, size)
        else:
            _, h, w = image.shape
            padded = h < size or w < size
            if padded:  # torchvision's CenterCrop pads (zeros) evenly before it crops
                ph, pw = max(size - h, 0), max(size - w, 0)
                image = F.pad(image, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))
            _, h, w = image.shape
            top, left = int(round((h - size) / 2.0)), int(round((w - size) / 2.0))
            image = image[:, top:top + size, left:left + size].contiguous()
        return to_8bit(image), padded

    def finish(self, reconstructions: torch.Tensor) -> torch.Tensor:
        """Reconstructions -> clamped, on the 8-bit grid, as they are scored."""
        return to_8bit(reconstructions, truncate=self.truncate)


PROTOCOLS = {
    "resize-crop": Protocol(
        "resize-crop", "resize the shorter side to S (bicubic, antialiased), centre-crop S x S; "
        "8-bit input; reconstructions rounded to 8 bits", resize=True, truncate=False),
    "center-crop": Protocol(
        "center-crop", "centre-crop S x S at the image's own resolution, no resizing (black padding "
        "where a side is shorter than S, as torchvision's CenterCrop); 8-bit input; reconstructions "
        "truncated to 8 bits (the paper's evaluate_rfid.py)", resize=False, truncate=True),
}


def protocol(name: str) -> Protocol:
    if name not in PROTOCOLS:
        raise AlitError(f"unknown protocol {name!r}; choose from {', '.join(PROTOCOLS)}")
    return PROTOCOLS[name]


def load_model(spec: str | Path | None, device: str | torch.device | None = None, precision: str | None = None):
    """The commands' `--checkpoint`, `--device` and `--precision`: `alit.load` (a checkpoint folder or
    file, "default", "paper/<name>", "hf:org/name"; see `alit.resolve`) on the device asked for, with
    one-line errors that name the option. Not a loader of its own: the command line's wording of
    `alit.load`."""
    if spec is None:
        raise AlitError("--checkpoint CKPT is required (a folder made by `alit convert` or training)")
    device = default_device(device)  # a device this machine lacks fails before the model loads
    check_not_an_image(spec)
    try:
        tok = load(spec, precision=precision)
    except NoSuchCheckpoint:  # a moved run folder, a typo: say what --checkpoint takes
        raise AlitError(f"--checkpoint {spec}: no such checkpoint folder or file. --checkpoint PATH takes a model "
                        f"folder (model.safetensors + config.json: a training run or `alit convert`'s output; one "
                        f"that moved: its new PATH) or a model name: {known_names()} (`alit models` lists them)"
                        ) from None
    except AlitError as e:
        if str(spec) == "default":  # the bundled model, whatever the working directory holds
            raise AlitError(f"--checkpoint default: no bundled default model can be loaded in this install "
                            f"({e}); give a checkpoint folder instead") from None
        if str(spec) not in str(e):  # name the checkpoint the weights came from
            raise AlitError(f"--checkpoint {spec}: {e}") from None
        raise
    return tok.to(device)


def check_not_an_image(spec) -> None:
    """A one-line AlitError when a checkpoint argument names an image file (a swapped argument)."""
    path = Path(str(spec))
    if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
        raise AlitError(f"--checkpoint {spec}: an image, not a model; give a checkpoint folder "
                        f"(model.safetensors + config.json) or 'default' for the bundled model")


def default_device(device: str | torch.device | None) -> torch.device:
    """--device as a torch.device (default: cuda when available, else cpu); a one-line AlitError
    for a name torch does not know or a device this machine does not have."""
    if device is None or device == "":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise AlitError(f"--device {device!r}: not a torch device; use cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise AlitError(f"--device {device}: this machine has no CUDA GPU that torch can use "
                            f"(torch {torch.__version__}); use --device cpu")
        if dev.index is not None and dev.index >= count:
            raise AlitError(f"--device {device}: this machine has {count} CUDA GPU(s), cuda:0..cuda:{count - 1}")
    elif dev.type == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise AlitError(f"--device {device}: MPS (Apple GPU) is not available here; use --device cpu")
    elif dev.type != "cpu":
        raise AlitError(f"--device {device}: alit runs on cpu, cuda or mps, not {dev.type}")
    return dev


def parse_lengths(text: str, allowed: list[int]) -> list[int]:
    """"all" -> every length of the model; "32,64" -> [32, 64], each checked against `allowed`."""
    if text.strip() == "all":
        return list(allowed)
    try:
        lengths = sorted({int(t) for t in text.split(",") if t.strip()})
    except ValueError:
        raise AlitError(f"--lengths takes 'all' or comma-separated token counts, got {text!r}") from None
    bad = [n for n in lengths if n not in allowed]
    if not lengths or bad:
        raise AlitError(f"--lengths {text!r}: {bad or 'none'} not lengths of this model; choose from {allowed}")
    return lengths


def parse_floats(text: str, what: str) -> list[float]:
    try:
        values = [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        values = []
    if not values or not all(v > 0 for v in values):
        raise AlitError(f"{what} takes comma-separated positive numbers, got {text!r}")
    return values


def image_paths(sources: list, command: str, limit: int | None = None, log=None, on_problem=None) -> list[Path]:
    """The image files of `sources` (folders, searched recursively, and files: `alit.images.find_images`)
    that a command reads, the first `limit` of them: what every command that reads a folder starts
    with. Each folder's files without an image suffix are said on a warning line through `log`
    (default: stderr). A source that is missing or holds no image is an AlitError, or, given
    `on_problem`, one line to it (the command then goes on with the rest)."""
    log = log or (lambda line: print(line, file=sys.stderr))
    skipped = []
    paths, problems = find_images(sources, skipped=skipped)
    if problems and on_problem is None:
        raise AlitError("; ".join(problems))
    for line in skipped:
        log(f"{command}: warning: {line}")
    for line in problems:
        on_problem(line)
    if limit is not None and limit < 1:
        raise AlitError(f"--limit must be at least 1, got {limit}")
    return paths[:limit] if limit is not None else paths


@dataclass
class Batch:
    paths: list[Path]
    images: torch.Tensor   # [b, 3, S, S] on the 8-bit grid
    padded: int            # how many were padded (center-crop only)
    upscaled: list = None  # (path, (h, w)) of images smaller than S on a side, enlarged (resize-crop)


def batches(paths: list[Path], size: int, proto: Protocol, batch_size: int, on_error=None, bar=None):
    """Yield Batch objects of prepared images; an unreadable file goes to on_error(message) and is skipped.
    bar (`alit.progress.progress_bar`): advanced by every file of a batch, read or not, once the
    caller is done with the batch (when it asks for the next one)."""
    if batch_size < 1:
        raise AlitError(f"--batch-size must be at least 1, got {batch_size}")
    for start in range(0, len(paths), batch_size):
        kept, images, padded, upscaled = [], [], 0, []
        chunk = paths[start:start + batch_size]
        for path in chunk:
            try:
                # resize-crop may shrink a huge image while decoding; center-crop keeps every pixel
                raw = read_image(path, size if proto.resize else None)
                image, was_padded = proto.prepare(raw, size)
            except ImageReadError as e:
                if on_error is None:
                    raise
                on_error(str(e))
                continue
            if proto.resize and min(raw.shape[1:]) < size:
                upscaled.append((path, tuple(raw.shape[1:])))
            kept.append(path)
            images.append(image)
            padded += was_padded
        if kept:
            yield Batch(kept, torch.stack(images), padded, upscaled)
        if bar is not None:
            bar.update(len(chunk))


def upscale_warning(path, hw: tuple[int, int], size: int) -> str:
    """The one line said about an image smaller than the model's size (it is enlarged)."""
    return (f"{path} is {hw[1]}x{hw[0]} pixels, smaller than the model's {size}x{size}: enlarged "
            f"(its reconstruction is of a blurred image)")


def animated_warning(path, frames: int) -> str:
    """The one line said about an animation or a multi-page file (only its first frame is read)."""
    return f"{path} is animated ({frames} frames): only its first frame is read"


def image_names(paths: list[Path], root: Path | None = None) -> list[str]:
    """A display name per path: relative to root when given, else the file name."""
    names = []
    for p in paths:
        try:
            names.append(str(p.relative_to(root)) if root is not None else p.name)
        except ValueError:
            names.append(p.name)
    return names
