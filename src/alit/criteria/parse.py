"""A criterion written on the command line, `NAME:VALUE` (`l1:0.07`, `ssim:0.5+gain:0.001`), and the
model's own rule (`config.criterion`)."""
from __future__ import annotations

import re

from ..errors import AlitError
from .protocol import needs_pixels
from .rules import CodeErrorBelow, ConfidenceAbove, EightBit, L1Below, MSEBelow, PSNRAbove, SSIMAbove, Stalled
from .task import parse_task

CRITERIA = {c.name: c for c in (L1Below, PSNRAbove, MSEBelow, SSIMAbove, ConfidenceAbove, CodeErrorBelow)}
PIXEL_FREE = tuple(name for name, c in CRITERIA.items() if not needs_pixels(c))


# the '+' before a gain, not an exponent's sign (psnr:1e+1 is a threshold; psnr:1e+1+gain:0.1 has a gain)
_GAIN_SPLIT = re.compile(r"(?<![0-9.][eE])\+")


def parse_criterion(spec: str, model=None):
    """`"l1:0.07"` -> L1Below(0.07); likewise `psnr:DB`, `mse:T`, `ssim:S` and the pixel-free `conf:P`
    (ConfidenceAbove) and `code:T` (CodeErrorBelow). Raises AlitError when malformed, out of
    range, or (given `model`) unusable with that model (`conf` needs a VQGAN base)."""
    usage = ("expected NAME:VALUE with NAME one of l1, psnr, mse, ssim, conf, code "
             "(e.g. l1:0.07, psnr:30, mse:0.01, ssim:0.5, conf:0.6, code:0.05), optionally followed by "
             "+gain:G for a pixel rule (e.g. ssim:0.5+gain:0.001)")
    if not isinstance(spec, str):
        raise AlitError(f"bad criterion {spec!r}: {usage}")
    if spec.strip().lower().startswith("task:"):  # a downstream model's judgment: task:PATH[:K] (criteria/task.py)
        return parse_task(spec, model)
    head, *tail = _GAIN_SPLIT.split(spec.strip(), maxsplit=1)
    if tail:
        return _stalled(spec, parse_criterion(head, model), tail[0], usage)
    name, sep, value = spec.strip().partition(":")
    if not sep or name.lower() not in CRITERIA:
        raise AlitError(f"bad criterion {spec!r}: {usage}")
    try:
        rule = CRITERIA[name.lower()](float(value))
    except ValueError as e:
        raise AlitError(f"bad criterion {spec!r}: {e if value.strip() else usage}") from None
    if isinstance(rule, (L1Below, MSEBelow)) and rule.threshold >= 1:
        raise AlitError(f"bad criterion {spec!r}: {name.lower()} thresholds are below 1 (the error of an 8-bit "
                        f"image in [0, 1] never reaches 1: every image would get the shortest length)")
    if model is not None and isinstance(rule, ConfidenceAbove) and not getattr(model, "is_vqgan", True):
        raise AlitError(f"criterion {spec!r}: conf judges the decoder's base-token ids, which a VAE-based "
                        f"model has none of; use code:T (or l1, psnr, mse, ssim)")
    return rule


def _stalled(spec: str, rule, tail: str, usage: str) -> Stalled:
    """`RULE+gain:G` -> Stalled(rule, G), or an AlitError saying what is wrong."""
    key, sep, value = tail.strip().partition(":")
    if key.strip().lower() != "gain" or not sep:
        raise AlitError(f"bad criterion {spec!r}: after '+' comes gain:G (e.g. +gain:0.001); {usage}")
    if not needs_pixels(rule):
        raise AlitError(f"bad criterion {spec!r}: a gain judges how much the reconstruction improved, so it "
                        f"goes with a pixel rule (l1, psnr, mse, ssim), not {rule.name}")
    try:
        return Stalled(rule, float(value))
    except ValueError as e:
        raise AlitError(f"bad criterion {spec!r}: {e if value.strip() else usage}") from None


def model_criterion(model, truncate: bool = False):
    """The model's own length rule (`config.criterion`), judged on 8-bit reconstructions (`EightBit`)
    when it judges pixels: what `tok.encode(images)` and the commands use by default."""
    spec = model.config.criterion
    try:
        rule = parse_criterion(spec, model)
    except AlitError as e:
        raise AlitError(f"the model's own length rule (config.json's criterion) is unusable: {e}") from None
    return EightBit.of(rule, truncate)
