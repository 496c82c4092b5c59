"""Training data: image folders (recursive, class sub-folders optional) and WebDataset shards.

`training_loader` gives, for one process, the batches of every (step, micro-step) from a first
step on; with an image folder they are a function of (seed, step) alone (see `sampler.py`).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import AlitError
from .folder import ImageFolder, collate, list_images, open_rgb
from .sampler import StepBatches
from .shards import Shards, is_shards, write_shards
from .transforms import RATIO, CenterCrop, RandomResizedCropFlip

__all__ = ["ImageFolder", "Shards", "StepBatches", "TrainingData", "list_images", "open_rgb",
           "preview_images", "training_data", "write_shards"]


@dataclass
class TrainingData:
    loader: torch.utils.data.DataLoader
    size: int | None          # images per epoch (None: unknown, shards without dataset_size)
    kind: str                 # "folder" or "shards"
    description: str


def training_data(spec: str | Path, image_size: int, *, batch_size: int, micro_batch: int, rank: int,
                  world: int, seed: int, first_step: int, last_step: int | None = None, workers: int = 4,
                  crop_scale=(0.8, 1.0), flip: bool = True, dataset_size: int | None = None,
                  cache: bool = False, crop_ratio=RATIO) -> TrainingData:
    """The batches this process trains on, from optimizer step `first_step` to `last_step`.

    cache: an image folder's workers keep every decoded image in memory (for small folders,
    where decoding would otherwise cost more than the training step)."""
    spec = str(spec)
    transform = RandomResizedCropFlip(image_size, crop_scale, flip, crop_ratio)
    common = dict(num_workers=workers, collate_fn=collate, pin_memory=torch.cuda.is_available(),
                  persistent_workers=False)
    if workers > 0:
        common["prefetch_factor"] = 4
    if is_shards(spec):
        start_epoch = 0
        if dataset_size:
            start_epoch = (first_step - 1) * batch_size // dataset_size
        data = Shards(spec, transform, seed, rank, world, start_epoch=start_epoch)
        loader = torch.utils.data.DataLoader(data, batch_size=micro_batch, **common)
        return TrainingData(loader, dataset_size, "shards", f"{len(data.urls)} shards ({spec})")
    if not Path(spec).exists():
        raise AlitError(f"{spec}: no such image folder or shard pattern")
    data = ImageFolder(spec, transform, cache=cache)
    sampler = StepBatches(len(data), batch_size, micro_batch, rank, world, seed, first_step, last_step)
    loader = torch.utils.data.DataLoader(data, batch_sampler=sampler, **common)
    classes = f", {len(data.classes)} class folders" if data.classes else ""
    return TrainingData(loader, len(data), "folder", f"{len(data)} images in {spec}{classes}")


def preview_images(spec: str | Path, image_size: int, count: int = 4) -> torch.Tensor | None:
    """A fixed batch [count, 3, S, S] of center crops for TensorBoard grids (None for shards)."""
    spec = str(spec)
    if is_shards(spec):
        return None
    files = list_images(spec)
    step = max(1, len(files) // count)
    crop, out = CenterCrop(image_size), []
    for f in files[::step]:
        try:
            out.append(crop(open_rgb(f)))
        except Exception:  # noqa: BLE001 - previews skip unreadable files silently; training names them
            continue
        if len(out) == count:
            break
    return torch.stack(out) if out else None
