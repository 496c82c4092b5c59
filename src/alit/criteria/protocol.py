"""How a criterion is asked: with pixels, `c(images, reconstructions)`, or with a `CriterionInput`
(`needs_pixels = False`); looking back at the length before (`looks_back`); its answer checked."""
from __future__ import annotations

from collections.abc import Callable

import torch

from ..errors import AlitError


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


def judge_at(criterion, images: torch.Tensor, seen, memory) -> tuple[torch.Tensor, object]:
    """One length's answer [b] (checked) and what to carry to the next length, for `encode` and
    `first_accepted` alike. seen: the raw reconstructions [b, 3, H, W] for a pixel rule, else the
    `CriterionInput`. memory: what this returned at the length before (None at the first). A rule
    with `judge` keeps its own (`Stalled`: its score; `TaskAgrees`: the model's output on the
    inputs), so nothing is computed twice; a rule that `looks_back` gets the reconstructions before."""
    if needs_pixels(criterion):
        if hasattr(criterion, "judge"):
            accepted, memory = criterion.judge(images, seen, memory)
        elif looks_back(criterion):
            accepted, memory = criterion(images, seen, memory), seen
        else:
            accepted, memory = criterion(images, seen), None
    elif hasattr(criterion, "judge"):
        accepted, memory = criterion.judge(seen, memory)
    else:
        accepted, memory = criterion(seen), None
    return criterion_answer(accepted, images.shape[0], images.device), memory


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
    answers, memory = [], None
    for i in range(T - 1):
        seen = reconstructions[i] if pixels else CriterionInput(
            images, roll.lengths[i], roll.latents[i], None if roll.logits is None else roll.logits[i],
            roll.codes[i], roll.targets, reconstructions=None if reconstructions is None else reconstructions[i])
        accepted, memory = judge_at(criterion, images, seen, memory)
        answers.append(accepted)
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
