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
`ssim:0.5`, the pixel-free `conf:0.6`, `code:0.05`, and `task:PATH[:K]`, a downstream model's
judgment (`TaskAgrees`, task.py). A pixel rule can add `+gain:G`
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
from .parse import CRITERIA, PIXEL_FREE, model_criterion, parse_criterion
from .protocol import (CriterionInput, ask_criterion, criterion_answer, first_accepted, judge_at, looks_back,
                       needs_pixels, score_dtype)
from .rules import (CodeErrorBelow, ConfidenceAbove, EightBit, ErrorBelow, L1Below, MSEBelow, PSNRAbove, ScoredRule,
                    SSIMAbove, Stalled)

__all__ = ["CRITERIA", "PIXEL_FREE", "CodeErrorBelow", "ConfidenceAbove", "CriterionInput", "EightBit", "ErrorBelow",
           "L1Below", "MSEBelow", "PSNRAbove", "SSIMAbove", "ScoredRule", "Stalled", "ask_criterion",
           "criterion_answer", "first_accepted", "judge_at", "looks_back", "model_criterion", "needs_pixels",
           "parse_criterion", "score_dtype"]
