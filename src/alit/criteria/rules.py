"""The shipped rules: pixel rules that threshold a score (L1, MSE, PSNR, SSIM), `Stalled` (or more
tokens stopped helping), the pixel-free `ConfidenceAbove` and `CodeErrorBelow`, and `EightBit`, which
judges a pixel rule on the reconstruction as a PNG holds it."""
from __future__ import annotations

import math
from collections.abc import Callable

import torch

from ..scoring import l1_error, mse_error, psnr, ssim, to_8bit
from .protocol import CriterionInput, looks_back, needs_pixels, score_dtype


class ScoredRule:
    """A pixel rule that thresholds a score per image: `score(images, reconstructions)` [B], higher is
    better, and `passes(score)`. `Stalled` reads the score, once per length, to see what a block gained."""

    def __call__(self, images: torch.Tensor, reconstructions: torch.Tensor) -> torch.Tensor:
        return self.passes(self.score(images, reconstructions))


class ErrorBelow(ScoredRule):
    """A pixel rule that an error per image, `error(images, reconstructions)` [B], is below
    `threshold` (above 0: errors are unbounded); its score is minus the error."""

    error: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

    def __init__(self, threshold: float):
        self.threshold = _positive(threshold, f"{type(self).__name__} threshold")

    def score(self, images: torch.Tensor, reconstructions: torch.Tensor) -> torch.Tensor:
        """[B], higher is better: minus the error."""
        return -self.error(images, reconstructions)

    def passes(self, score: torch.Tensor) -> torch.Tensor:
        return -score < self.threshold

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.threshold:g})"


class L1Below(ErrorBelow):
    """The paper's rule: the raw reconstruction's mean absolute error is below `threshold`.

    The error is measured on the unclamped base-decoder output, as the paper's code does.
    """

    name = "l1"
    error = staticmethod(l1_error)

    def __init__(self, threshold: float = 0.07):
        super().__init__(threshold)


class MSEBelow(ErrorBelow):
    """The mean squared error of the reconstruction, clamped to [0, 1] as `decode` returns it, is
    below `threshold`."""

    name = "mse"
    error = staticmethod(mse_error)


class PSNRAbove(ScoredRule):
    """The PSNR of the reconstruction, clamped to [0, 1] as `decode` returns it, is above `db`."""

    name = "psnr"

    def __init__(self, db: float):
        db = float(db)
        if not (math.isfinite(db) and db > 0):  # PSNR of images in [0, 1] is never below 0 dB
            raise ValueError(f"PSNRAbove needs a positive, finite number of dB (e.g. 30), got {db}")
        self.db = db

    def score(self, images: torch.Tensor, reconstructions: torch.Tensor) -> torch.Tensor:
        """[B] the PSNR in dB."""
        return psnr(images, reconstructions)

    def passes(self, score: torch.Tensor) -> torch.Tensor:
        return score > self.db

    def __repr__(self) -> str:
        return f"PSNRAbove({self.db:g})"


class SSIMAbove(ScoredRule):
    """The SSIM of the reconstruction, clamped to [0, 1], is above `s` (0 < s < 1): torchmetrics'
    SSIM, as `alit eval` reports it (Gaussian 11x11 window, sigma 1.5, mean over channels).

    SSIM weighs local structure (contrast and correlation) over a uniform colour or brightness
    offset, which more tokens rarely remove; the bundled default model uses it because its lengths
    follow image complexity more closely under it than under L1 (benchmarks/results/default_model_log.md).
    """

    name = "ssim"

    def __init__(self, s: float):
        s = float(s)
        if not 0 < s < 1:  # 1 is an exact copy; at or below 0 nearly every image is accepted at once
            raise ValueError(f"SSIMAbove needs a number in (0, 1), got {s}")
        self.s = s

    def score(self, images: torch.Tensor, reconstructions: torch.Tensor) -> torch.Tensor:
        """[B] the SSIM."""
        asked = torch.float64 if images.dtype == torch.float64 else None  # float64 in: float64 out
        return ssim(images, reconstructions.clamp(0, 1), dtype=score_dtype(images.device, asked)).to(images.device)

    def passes(self, score: torch.Tensor) -> torch.Tensor:
        return score > self.s

    def __repr__(self) -> str:
        return f"SSIMAbove({self.s:g})"


class Stalled:
    """A pixel rule, or more tokens stopped helping: a length is accepted when `rule` accepts it, or
    when its last block of tokens raised the rule's score (`rule.score`: SSIM, PSNR, minus L1 or
    MSE) by less than `gain` over the length before it. Written `ssim:0.48+gain:0.001`.

    An image whose reconstruction never meets `rule` then stops where its quality levels off instead
    of taking the longest length, so the lengths of hard images differ too (the bundled default
    model's rule; benchmarks/results/default_model_log.md, section 12). Being judged against the
    length before, it is called as `c(images, reconstructions, previous)` (`looks_back`), with
    `previous` None at the first length, which only `rule` can accept.
    """

    looks_back = True

    def __init__(self, rule, gain: float):
        if not isinstance(rule, ScoredRule):
            raise ValueError(f"a gain needs a rule with a score (l1, mse, psnr or ssim), got {rule!r}")
        gain = float(gain)
        if not (math.isfinite(gain) and gain >= 0):  # below 0 no block would ever count as stalled
            raise ValueError(f"Stalled needs a gain of at least 0 (e.g. 0.001), got {gain}")
        self.rule, self.gain = rule, gain
        self.name = rule.name

    def __call__(self, images: torch.Tensor, reconstructions: torch.Tensor,
                 previous: torch.Tensor | None) -> torch.Tensor:
        before = None if previous is None else self.rule.score(images, previous)
        return self.judge(images, reconstructions, before)[0]

    def judge(self, images: torch.Tensor, reconstructions: torch.Tensor,
              before: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(accepted [B], the score [B] at this length), given the score at the length before (None
        at the first): what `encode` calls, so that each length is scored once."""
        score = self.rule.score(images, reconstructions)  # once: it both passes and gains
        if before is None:
            return self.rule.passes(score), score
        return self.rule.passes(score) | (score - before < self.gain), score

    def __repr__(self) -> str:
        return f"Stalled({self.rule!r}, gain={self.gain:g})"


class ConfidenceAbove:
    """Pixel-free: the latent decoder's mean probability of the base tokenizer's ids, over the
    image's N base tokens, is above `p` (0 < p < 1). VQGAN-based models only.

    It reads the prediction the rollout step has already made, so a length is judged without a
    pixel decode. How `p` maps to reconstruction error depends on the model: calibrate it against
    `L1Below` (`benchmarks/calibrate_confidence.py`).
    """

    name = "conf"
    needs_pixels = False

    def __init__(self, p: float):
        p = float(p)
        if not 0 < p < 1:
            raise ValueError(f"ConfidenceAbove needs a probability in (0, 1), got {p}")
        self.p = p

    def __call__(self, inp: CriterionInput) -> torch.Tensor:
        gt_prob = inp.gt_prob
        if gt_prob is None:
            raise ValueError("ConfidenceAbove needs a VQGAN-based model (a VAE base has no ids); "
                             "use CodeErrorBelow")
        return gt_prob.mean(1) > self.p

    def __repr__(self) -> str:
        return f"ConfidenceAbove({self.p:g})"


class CodeErrorBelow:
    """Pixel-free: the mean absolute error between the latent decoder's predicted base code and the
    base tokenizer's own code is below `threshold` (VQGAN: soft code against the code vectors of
    the true ids; VAE: predicted against encoded latent, the signal VAE halting uses)."""

    name = "code"
    needs_pixels = False

    def __init__(self, threshold: float):
        self.threshold = _positive(threshold, "CodeErrorBelow threshold")

    def __call__(self, inp: CriterionInput) -> torch.Tensor:
        return inp.code_error.mean(1) < self.threshold

    def __repr__(self) -> str:
        return f"CodeErrorBelow({self.threshold:g})"


class EightBit:
    """A pixel criterion judged on what a PNG holds: the reconstruction clamped to [0, 1] and
    rounded to 8 bits (truncated with `truncate=True`, as the paper's ImageNet evaluation saves
    them). The commands' one scoring rule; `tok.encode(images)` uses it with the model's own rule.
    A pixel-free criterion is returned as it is by `EightBit.of`."""

    def __init__(self, criterion, truncate: bool = False, dtype: torch.dtype | None = None):
        if not needs_pixels(criterion):
            raise ValueError(f"{criterion!r} judges no pixels: use it as it is")
        self.criterion, self.truncate, self.dtype = criterion, truncate, dtype

    @classmethod
    def of(cls, criterion, truncate: bool = False):
        return cls(criterion, truncate) if needs_pixels(criterion) else criterion

    def __call__(self, images: torch.Tensor, reconstructions: torch.Tensor, *previous) -> torch.Tensor:
        # previous: the reconstructions at the length before, for a rule that `looks_back` (Stalled)
        wide = self._wide(images.device)
        return self.criterion(images.to(wide), *(None if r is None else self._png(r, wide)
                                                 for r in (reconstructions, *previous)))

    def judge(self, images: torch.Tensor, reconstructions: torch.Tensor, memory):
        """As `Stalled.judge` (memory: the score at the length before) when the wrapped rule has it;
        else memory is the reconstructions at the length before, returned anew."""
        if not hasattr(self.criterion, "judge"):
            if not looks_back(self.criterion):
                return self(images, reconstructions), None
            return self(images, reconstructions, memory), reconstructions
        wide = self._wide(images.device)
        return self.criterion.judge(images.to(wide), self._png(reconstructions, wide), memory)

    def _wide(self, device: torch.device) -> torch.dtype:
        return score_dtype(device, self.dtype)

    def _png(self, reconstructions: torch.Tensor, wide: torch.dtype) -> torch.Tensor:
        return to_8bit(reconstructions.to(wide), self.truncate)

    def __getattr__(self, name):  # threshold, db, name ... of the wrapped rule
        if name == "criterion":
            raise AttributeError(name)
        return getattr(self.criterion, name)

    def __repr__(self) -> str:
        return f"{self.criterion!r} on 8-bit reconstructions"


def _positive(value: float, what: str) -> float:
    value = float(value)
    if not value > 0 or not math.isfinite(value):
        raise ValueError(f"{what} must be a positive number, got {value}")
    return value
