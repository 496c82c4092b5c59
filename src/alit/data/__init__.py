"""Training data: image folders (recursive, class sub-folders optional) and WebDataset shards.

`training_data` gives, for one process, the batches of every (step, micro-step) from a first
step on; with an image folder they are a function of (seed, step) alone (see `sampler.py`).
"""
from __future__ import annotations

import signal
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import AlitError
from .folder import ImageFolder, collate, list_images, open_rgb
from .sampler import StepBatches
from .shards import Shards, is_shards, write_shards
from .transforms import RATIO, CenterCrop, RandomResizedCropFlip

__all__ = ["BatchPlan", "DataOptions", "ImageFolder", "Shards", "StepBatches", "TrainingData", "list_images",
           "open_rgb", "preview_images", "training_data", "write_shards"]


@dataclass(frozen=True)
class BatchPlan:
    """Which images one process reads: the global batch of every optimizer step from `first_step`
    (to `last_step`, None: endless), in micro-batches of `micro_batch` over `world` processes."""

    batch_size: int
    micro_batch: int
    rank: int = 0
    world: int = 1
    seed: int = 0
    first_step: int = 1
    last_step: int | None = None


@dataclass(frozen=True)
class DataOptions:
    """How the images are read and augmented (a recipe's data keys)."""

    workers: int = 4                  # DataLoader worker processes
    crop_scale: tuple[float, float] = (0.8, 1.0)  # RandomResizedCrop area range
    crop_ratio: tuple[float, float] = RATIO       # its aspect-ratio range
    flip: bool = True
    dataset_size: int | None = None   # images per epoch of shards (None: unknown)
    cache: bool = False               # an image folder's workers keep decoded images in memory


@dataclass
class TrainingData:
    loader: torch.utils.data.DataLoader
    size: int | None          # images per epoch (None: unknown, shards without dataset_size)
    kind: str                 # "folder" or "shards"
    description: str


def training_data(spec: str | Path, image_size: int, plan: BatchPlan,
                  options: DataOptions = DataOptions()) -> TrainingData:
    """The batches this process trains on, from optimizer step `plan.first_step` to `plan.last_step`."""
    spec = str(spec)
    transform = RandomResizedCropFlip(image_size, options.crop_scale, options.flip, options.crop_ratio)
    common = dict(num_workers=options.workers, collate_fn=collate, pin_memory=torch.cuda.is_available(),
                  persistent_workers=False)
    if options.workers > 0:
        common.update(prefetch_factor=4, worker_init_fn=_leave_signals_to_the_trainer)
    if is_shards(spec):
        start_epoch = 0
        if options.dataset_size:
            start_epoch = (plan.first_step - 1) * plan.batch_size // options.dataset_size
        data = Shards(spec, transform, plan.seed, plan.rank, plan.world, start_epoch=start_epoch)
        loader = torch.utils.data.DataLoader(data, batch_size=plan.micro_batch, **common)
        return TrainingData(loader, options.dataset_size, "shards", f"{len(data.urls)} shards ({spec})")
    if not Path(spec).exists():
        raise AlitError(f"{spec}: no such image folder or shard pattern")
    data = ImageFolder(spec, transform, cache=options.cache)
    sampler = StepBatches(len(data), plan.batch_size, plan.micro_batch, plan.rank, plan.world, plan.seed,
                          plan.first_step, plan.last_step)
    loader = torch.utils.data.DataLoader(data, batch_sampler=sampler, **common)
    classes = f", {len(data.classes)} class folders" if data.classes else ""
    return TrainingData(loader, len(data), "folder", f"{len(data)} images in {spec}{classes}")


def _leave_signals_to_the_trainer(worker_id: int) -> None:
    """Workers ignore Ctrl-C and SIGTERM: the training process decides (it finishes the step and
    writes a checkpoint); the workers end with it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


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
