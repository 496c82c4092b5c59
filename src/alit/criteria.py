"""How a length is chosen per image: criteria that say when a reconstruction is good enough.

A criterion is any callable `c(images, reconstructions) -> BoolTensor[B]`, True where an image is
good enough (DESIGN 2.1). `images` are the caller's own tensors (the images still in the batch),
`reconstructions` the raw base-decoder output at the current length, [B, 3, H, W], not clamped.
`AdaptiveTokenizer.encode(images, criterion=c)` gives each image the shortest length it accepts.

On the command line a criterion is written `NAME:VALUE`: `l1:0.07`, `psnr:30`, `mse:0.01`.
"""
from __future__ import annotations

import math

import torch

from .errors import AlitError


def l1_error(images: torch.Tensor, reconstructions: torch.Tensor) -> torch.Tensor:
    """Mean absolute pixel error per image [B] of the raw (unclamped) reconstruction: the paper's L1."""
    return (reconstructions - images).abs().flatten(1).mean(1)


def mse_error(images: torch.Tensor, reconstructions: torch.Tensor) -> torch.Tensor:
    """Mean squared pixel error per image [B] of the reconstruction clamped to [0, 1]."""
    return (reconstructions.clamp(0, 1) - images).pow(2).flatten(1).mean(1)


def psnr(images: torch.Tensor, reconstructions: torch.Tensor) -> torch.Tensor:
    """PSNR in dB per image [B] (peak 1) of the reconstruction clamped to [0, 1]; inf when exact."""
    return -10 * torch.log10(mse_error(images, reconstructions))


class L1Below:
    """The paper's rule: the raw reconstruction's mean absolute error is below `threshold`.

    The error is measured on the unclamped base-decoder output, as the paper's code does.
    """

    name = "l1"

    def __init__(self, threshold: float = 0.07):
        self.threshold = _positive(threshold, "L1Below threshold")

    def __call__(self, images: torch.Tensor, reconstructions: torch.Tensor) -> torch.Tensor:
        return l1_error(images, reconstructions) < self.threshold

    def __repr__(self) -> str:
        return f"L1Below({self.threshold:g})"


class MSEBelow:
    """The mean squared error of the reconstruction, clamped to [0, 1] as `decode` returns it, is
    below `threshold`."""

    name = "mse"

    def __init__(self, threshold: float):
        self.threshold = _positive(threshold, "MSEBelow threshold")

    def __call__(self, images: torch.Tensor, reconstructions: torch.Tensor) -> torch.Tensor:
        return mse_error(images, reconstructions) < self.threshold

    def __repr__(self) -> str:
        return f"MSEBelow({self.threshold:g})"


class PSNRAbove:
    """The PSNR of the reconstruction, clamped to [0, 1] as `decode` returns it, is above `db`."""

    name = "psnr"

    def __init__(self, db: float):
        db = float(db)
        if not math.isfinite(db):
            raise ValueError(f"PSNRAbove needs a finite number of dB, got {db}")
        self.db = db

    def __call__(self, images: torch.Tensor, reconstructions: torch.Tensor) -> torch.Tensor:
        return psnr(images, reconstructions) > self.db

    def __repr__(self) -> str:
        return f"PSNRAbove({self.db:g})"


CRITERIA = {c.name: c for c in (L1Below, PSNRAbove, MSEBelow)}


def parse_criterion(spec: str) -> L1Below | PSNRAbove | MSEBelow:
    """`"l1:0.07"` -> L1Below(0.07); likewise `psnr:DB` and `mse:T`. Raises AlitError when malformed."""
    usage = "expected NAME:VALUE with NAME one of l1, psnr, mse (e.g. l1:0.07, psnr:30, mse:0.01)"
    name, sep, value = spec.strip().partition(":")
    if not sep or name.lower() not in CRITERIA:
        raise AlitError(f"bad criterion {spec!r}: {usage}")
    try:
        return CRITERIA[name.lower()](float(value))
    except ValueError as e:
        raise AlitError(f"bad criterion {spec!r}: {e if value.strip() else usage}") from None


def first_accepted(criterion, images: torch.Tensor, reconstructions: list[torch.Tensor]) -> torch.Tensor:
    """Index [B] of the first reconstruction (one per length, shortest first) that the criterion
    accepts for each image; the last index where none does. This is `encode`'s rule, applied to a
    rollout that already holds every length."""
    B, device = images.shape[0], reconstructions[-1].device
    accepted = torch.stack([criterion_answer(criterion(images, r), B, device) for r in reconstructions[:-1]]
                           + [torch.ones(B, dtype=torch.bool, device=device)])  # [T, B]
    return accepted.int().argmax(0)  # argmax gives the first True


def criterion_answer(accepted, batch: int, device: torch.device) -> torch.Tensor:
    """A criterion's answer as a bool tensor [batch] on `device`, or a ValueError saying what is wrong."""
    if not isinstance(accepted, torch.Tensor) or accepted.dtype != torch.bool or accepted.shape != (batch,):
        got = (f"{accepted.dtype} tensor of shape {list(accepted.shape)}"
               if isinstance(accepted, torch.Tensor) else type(accepted).__name__)
        raise ValueError(f"a criterion must return a bool tensor of shape [{batch}] (one answer per "
                         f"image), got {got}")
    return accepted.to(device)


def _positive(value: float, what: str) -> float:
    value = float(value)
    if not value > 0 or not math.isfinite(value):
        raise ValueError(f"{what} must be a positive number, got {value}")
    return value
