"""The latent standardiser's running averages recomputed over a folder of photos, after training.

Here rather than in `alit.model.latent_norm`, which the model imports: reading photos as `alit demo`
reads them needs `alit.eval.inputs`, which sits above the model."""
from __future__ import annotations

from torch import nn

from ..images import find_images
from ..model.latent_norm import update_statistics
from .inputs import batches, protocol


def recalibrate(model: nn.Module, photos: str, batch_size: int = 32) -> int:
    """`update_statistics` over the image files in the folder `photos`, read as `alit demo` reads
    them (resize-crop to the model's size): what to do after training, on the training photos (never
    the held-out ones), before a model is scored or exported. Returns the number of photos seen."""
    paths, _ = find_images([photos])
    return update_statistics(model, (b.images for b in batches(paths, model.config.image_size,
                                                                 protocol("resize-crop"), batch_size)))
