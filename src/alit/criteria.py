"""How a length is chosen per image: criteria that say when a reconstruction is good enough.

A criterion is any callable `c(images, reconstructions) -> BoolTensor[B]`, True where an image is
good enough. `images` are the caller's own tensors (the images still in the batch),
`reconstructions` the raw base-decoder output at the current length, [B, 3, H, W], not clamped.
`AdaptiveTokenizer.encode(images, criterion=c)` gives each image the shortest length it accepts.

A criterion that declares `needs_pixels = False` is called as `c(inp)` instead, with a
`CriterionInput`: the latent decoder's own prediction at that length (logits, predicted code) and
the base tokenizer's answer (ids, code), so that no pixels are decoded. `ConfidenceAbove` and
`CodeErrorBelow` are such criteria; `inp.reconstructions` still decodes pixels on demand.

On the command line a criterion is written `NAME:VALUE`: `l1:0.07`, `psnr:30`, `mse:0.01`,
`ssim:0.5`, and the pixel-free `conf:0.6`, `code:0.05`. A pixel rule can add `+gain:G`
(`ssim:0.5+gain:0.001`, `Stalled`): a length is also accepted when its last block of tokens raised
the rule's score by less than G, so an image that never meets the rule stops where more tokens stop
helping it. Each value is checked against its range:
outside it, every image would get the same length. The classes take L1 and MSE thresholds above 0
(raw errors are unbounded), PSNR above 0 dB, SSIM and confidence in (0, 1), code error above 0;
`parse_criterion`, for the commands, which judge 8-bit reconstructions, also keeps L1 and MSE
below 1.

One scoring rule for what the commands report and choose (`alit reconstruct`, `eval`, `demo`,
`analyze`): a pixel criterion judges the reconstruction clamped and rounded to 8 bits, as it is
written to a PNG, against the 8-bit input (`EightBit`); the bundled model's `l1:` rule was
calibrated that way. `tok.encode(images)` with no budget and no criterion uses the model's own rule
judged the same way (`model_criterion`). A criterion passed to `encode` yourself judges the raw,
unclamped reconstruction (the paper's code does so for L1).
"""
from __future__ import annotations

import math
import re
from collections.abc import Callable

import torch

from .errors import AlitError
from .task import parse_task


class CriterionInput:
    """What a pixel-free criterion sees at one length, for the b images still in the batch.

    Everything comes from the rollout step already computed; only `reconstructions` costs a
    base-decoder pass, made the first time it is read.
    """

    def __init__(self, images: torch.Tensor, num_tokens: int, latents: torch.Tensor,
                 logits: torch.Tensor | None, codes: torch.Tensor, targets, *,
                 probs: torch.Tensor | None = None,
                 decode: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 reconstructions: torch.Tensor | None = None):
        self.images = images                # [b, 3, H, W] the caller's images
        self.num_tokens = num_tokens        # L, the length being judged
        self.latents = latents              # [b, L, d] what the decoder consumed
        self.logits = logits                # [b, N, K_base] the decoder's base-id logits (VQGAN), else None
        self.codes = codes                  # [b, N, Cb] the decoder's predicted base code
        self.target_codes = targets.codes   # [b, N, Cb] the base tokenizer's own code of the image
        self.target_ids = targets.ids       # [b, N] the base tokenizer's ids (VQGAN), else None
        self._probs = probs                 # [b, N, K_base] softmax(logits), when already computed
        self._decode = decode
        self._reconstructions = reconstructions

    @property
    def reconstructions(self) -> torch.Tensor:
        """Raw pixels [b, 3, H, W] at this length, decoded on first use."""
        if self._reconstructions is None:
            if self._decode is None:
                raise ValueError("no reconstructions here: the rollout was made with pixels=False")
            self._reconstructions = self._decode(self.codes)
        return self._reconstructions

    @property
    def gt_prob(self) -> torch.Tensor | None:
        """[b, N] the probability the decoder gives each base token's true id (VQGAN base; the
        signal halting uses), None for a VAE base."""
        if self.logits is None:
            return None
        if self._probs is None:
            self._probs = self.logits.softmax(-1, dtype=torch.float32)
        return self._probs.gather(-1, self.target_ids[..., None])[..., 0]

    @property
    def code_error(self) -> torch.Tensor:
        """[b, N] mean absolute error of the predicted base code over its channels."""
        return (self.codes.float() - self.target_codes.float()).abs().mean(-1)


def needs_pixels(criterion) -> bool:
    """Whether `criterion` is called with pixels, `c(images, reconstructions)` (the default), or
    with a `CriterionInput` (`needs_pixels = False`)."""
    return bool(getattr(criterion, "needs_pixels", True))


def looks_back(criterion) -> bool:
    """Whether `criterion` also judges the length before (`Stalled`): it is then called as
    `c(images, reconstructions, previous)`, previous None at the first length."""
    return bool(getattr(criterion, "looks_back", False))


def ask_criterion(criterion, *args) -> torch.Tensor:
    """criterion(*args) checked to be a bool tensor [b], on the device of the images."""
    images = args[0].images if isinstance(args[0], CriterionInput) else args[0]
    return criterion_answer(criterion(*args), images.shape[0], images.device)


def score_dtype(device: torch.device, asked: torch.dtype | None = None) -> torch.dtype:
    """What a pixel rule scores in: `asked`, else float64 on a CPU, as `alit eval` and `alit demo`
    score there (the rule sees the numbers in their tables), float32 on accelerators (fast, and MPS
    has no float64)."""
    return asked or (torch.float64 if device.type == "cpu" else torch.float32)


def l1_error(images: torch.Tensor, reconstructions: torch.Tensor) -> torch.Tensor:
    """Mean absolute pixel error per image [B] of the raw (unclamped) reconstruction: the paper's L1."""
    return (reconstructions - images).abs().flatten(1).mean(1)


def mse_error(images: torch.Tensor, reconstructions: torch.Tensor) -> torch.Tensor:
    """Mean squared pixel error per image [B] of the reconstruction clamped to [0, 1]."""
    return (reconstructions.clamp(0, 1) - images).pow(2).flatten(1).mean(1)


def psnr(images: torch.Tensor, reconstructions: torch.Tensor) -> torch.Tensor:
    """PSNR in dB per image [B] (peak 1) of the reconstruction clamped to [0, 1]; inf when exact."""
    return -10 * torch.log10(mse_error(images, reconstructions))


class ScoredRule:
    """A pixel rule that thresholds a score per image: `score(images, reconstructions)` [B], higher is
    better, and `passes(score)`. `Stalled` reads the score, once per length, to see what a block gained."""

    def __call__(self, images: torch.Tensor, reconstructions: torch.Tensor) -> torch.Tensor:
        return self.passes(self.score(images, reconstructions))


class L1Below(ScoredRule):
    """The paper's rule: the raw reconstruction's mean absolute error is below `threshold`.

    The error is measured on the unclamped base-decoder output, as the paper's code does.
    """

    name = "l1"

    def __init__(self, threshold: float = 0.07):
        self.threshold = _positive(threshold, "L1Below threshold")  # raw errors are unbounded

    def score(self, images: torch.Tensor, reconstructions: torch.Tensor) -> torch.Tensor:
        """[B], higher is better: minus the L1 error."""
        return -l1_error(images, reconstructions)

    def passes(self, score: torch.Tensor) -> torch.Tensor:
        return -score < self.threshold

    def __repr__(self) -> str:
        return f"L1Below({self.threshold:g})"


class MSEBelow(ScoredRule):
    """The mean squared error of the reconstruction, clamped to [0, 1] as `decode` returns it, is
    below `threshold`."""

    name = "mse"

    def __init__(self, threshold: float):
        self.threshold = _positive(threshold, "MSEBelow threshold")

    def score(self, images: torch.Tensor, reconstructions: torch.Tensor) -> torch.Tensor:
        """[B], higher is better: minus the MSE."""
        return -mse_error(images, reconstructions)

    def passes(self, score: torch.Tensor) -> torch.Tensor:
        return -score < self.threshold

    def __repr__(self) -> str:
        return f"MSEBelow({self.threshold:g})"


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
        from .eval.metrics import ssim

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
            return self(images, reconstructions, memory), reconstructions
        wide = self._wide(images.device)
        return self.criterion.judge(images.to(wide), self._png(reconstructions, wide), memory)

    def _wide(self, device: torch.device) -> torch.dtype:
        return score_dtype(device, self.dtype)

    def _png(self, reconstructions: torch.Tensor, wide: torch.dtype) -> torch.Tensor:
        scaled = reconstructions.to(wide).clamp(0, 1) * 255
        return (scaled.floor() if self.truncate else scaled.round()) / 255

    def __getattr__(self, name):  # threshold, db, name ... of the wrapped rule
        if name == "criterion":
            raise AttributeError(name)
        return getattr(self.criterion, name)

    def __repr__(self) -> str:
        return f"{self.criterion!r} on 8-bit reconstructions"


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
    if spec.strip().lower().startswith("task:"):  # a downstream model's judgment: task:PATH[:K] (alit.task)
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


def first_accepted(criterion, images: torch.Tensor, reconstructions) -> torch.Tensor:
    """Index [B] of the first length that the criterion accepts for each image; the last index
    where none does. This is `encode`'s rule, applied to a rollout that already holds every length.

    reconstructions: one per length, shortest first; or the Rollout itself, which a pixel-free
    criterion (`needs_pixels = False`) needs.
    """
    roll = None
    if hasattr(reconstructions, "codes"):  # a Rollout
        roll, reconstructions = reconstructions, reconstructions.reconstructions
    pixels = needs_pixels(criterion)
    if pixels and reconstructions is None:
        raise AlitError(f"{criterion!r} judges pixels: make the rollout with pixels=True")
    if not pixels and roll is None:
        raise AlitError(f"{criterion!r} judges the decoder's prediction, not pixels: pass the Rollout "
                        f"(first_accepted(criterion, images, roll)), not its reconstructions")
    T = len(reconstructions) if roll is None else len(roll.latents)
    B, device = images.shape[0], images.device
    answers = []
    back = looks_back(criterion)
    for i in range(T - 1):
        if pixels:
            previous = (reconstructions[i - 1] if i else None,) if back else ()
            answers.append(ask_criterion(criterion, images, reconstructions[i], *previous))
        else:
            inp = CriterionInput(images, roll.lengths[i], roll.latents[i],
                                 None if roll.logits is None else roll.logits[i], roll.codes[i],
                                 roll.targets, reconstructions=None if reconstructions is None
                                 else reconstructions[i])
            answers.append(ask_criterion(criterion, inp))
    accepted = torch.stack(answers + [torch.ones(B, dtype=torch.bool, device=device)])  # [T, B]
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
