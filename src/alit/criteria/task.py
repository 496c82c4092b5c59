"""A length rule that follows a downstream task: the shortest code whose reconstruction a task model
judges as it judges the input (the paper's third claim: a classifier may be satisfied with fewer
tokens than a pixel-faithful reconstruction needs).

    rule = alit.TaskAgrees(classifier, transform=to_classifier_input)
    enc = tok.encode(images, criterion=rule)   # each image: the shortest length the classifier agrees on

A classifier (output [B, classes]) agrees when the input's top-1 class is among the
reconstruction's `top_k` classes (`top_k=1`: the same class). A dense model (any output shape,
`threshold=` given) agrees when the relative error of its output, ||f(rec) - f(x)|| / ||f(x)||
over each image's values, is below the threshold. The model's own preprocessing is its business:
`transform` maps what the rule holds (pixels in [0, 1], or latents) to the model's input.

Pixels: the model sees the reconstruction clamped to [0, 1], as `decode` returns it (and rounded to
8 bits when the commands wrap the rule in `EightBit`). Its answer about the input is computed once
per image and kept as the rule's memory across lengths (the `judge` protocol of `alit.criteria`).

Latents (pixel-free): a model with `takes = "latents"` (a probe saved by `alit probe --save`)
reads the bottleneck latents [B, L, d] at each length; no pixels are decoded. Its judgment of the
input is its judgment of the longest code, which `encode` has not reached when it judges the first
lengths: the rule makes it itself, with one rollout of the images without pixels (`tokenizer=`
names the tokenizer whose latents the model reads) and keeps it as its memory.

On the command line: `task:PATH[:K]`, PATH a TorchScript file, an exported program
(`torch.export.save`) or a saved probe, K the top-k.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from ..errors import AlitError
from ..task_model import load_task_model


class TaskAgrees:
    """The shortest length whose reconstruction `model` judges as it judges the input (see the module)."""

    name = "task"

    def __init__(self, model: nn.Module | Callable, top_k: int = 1, threshold: float | None = None,
                 transform: Callable[[torch.Tensor], torch.Tensor] | None = None, *,
                 takes: str | None = None, tokenizer=None, classes: list[str] | None = None):
        """model: any torch.nn.Module (a TorchScript module too) or callable, put in eval mode.
        top_k: a classifier agrees when the input's class is among the reconstruction's top_k.
        threshold: makes it a dense rule (relative output error below it); top_k is then unused.
        transform: pixels [B, 3, H, W] in [0, 1] (or latents) -> the model's input.
        takes: "pixels" or "latents"; default the model's own `takes` attribute, else "pixels".
        tokenizer: for a latent model, the tokenizer whose latents it reads (its longest code is the
            reference). classes: class names for reports (default: the model's own `classes`)."""
        if not callable(model):
            raise ValueError(f"TaskAgrees needs a torch.nn.Module or a callable, got {type(model).__name__}")
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise ValueError(f"TaskAgrees top_k must be an integer of at least 1, got {top_k!r}")
        if threshold is not None and not float(threshold) > 0:
            raise ValueError(f"TaskAgrees threshold (relative output error) must be above 0, got {threshold}")
        takes = takes or getattr(model, "takes", "pixels")
        if takes not in ("pixels", "latents"):
            raise ValueError(f"TaskAgrees takes 'pixels' or 'latents', got {takes!r}")
        self.model = _eval(model)
        self.top_k, self.threshold, self.transform, self.takes = top_k, threshold, transform, takes
        self.classes = classes if classes is not None else getattr(model, "classes", None)
        self.tokenizer = None
        if tokenizer is not None:
            self.bind(tokenizer)

    # --- what alit.criteria's callers read --------------------------------------------------------
    @property
    def needs_pixels(self) -> bool:
        return self.takes == "pixels"

    def bind(self, tokenizer) -> "TaskAgrees":
        """Name the tokenizer whose latents a latent model reads (checked against the probe's record)."""
        made_for = getattr(self.model, "model", None)
        if self.takes == "latents" and isinstance(made_for, str) and made_for != tokenizer.fingerprint():
            raise AlitError(f"this probe reads the latents of the model {made_for}, not of this one "
                            f"({tokenizer.fingerprint()}): train it on this model's latents (`alit probe --save`)")
        self.tokenizer = tokenizer
        return self

    def __call__(self, *args) -> torch.Tensor:
        """pixels: `rule(images, reconstructions[, previous])`; latents: `rule(inp)` (a CriterionInput)."""
        return self.judge(*(args[:1] if self.takes == "latents" else args[:2]), None)[0]

    def judge(self, *args) -> tuple[torch.Tensor, torch.Tensor]:
        """(accepted [b], the memory for the next length: the model's output on each input).
        pixels: `judge(images, reconstructions, memory)`; latents: `judge(inp, memory)`."""
        if self.takes == "latents":
            inp, memory = args
            reference = memory if memory is not None else self.reference_latents(inp.images)
            return self.agrees(reference, self.outputs(inp.latents)), reference
        images, reconstructions, memory = args
        reference = memory if memory is not None else self.outputs(images)
        return self.agrees(reference, self.outputs(reconstructions)), reference

    # --- the model's answers -----------------------------------------------------------------------
    @torch.no_grad()
    def outputs(self, x: torch.Tensor) -> torch.Tensor:
        """The model's output [b, ...] (float32) on pixels (clamped to [0, 1]) or latents [b, L, d]."""
        if self.takes == "pixels":
            x = x.clamp(0, 1)
        param = _first_tensor(self.model)
        if param is not None and param.device != x.device:
            self.model = self.model.to(x.device)  # the task runs where the images are
            param = _first_tensor(self.model)
        if param is not None and param.is_floating_point():
            x = x.to(param.dtype)
        else:
            x = x.float()
        if self.transform is not None:
            x = self.transform(x)
        return _as_tensor(self.model(x)).float()

    def reference_latents(self, images: torch.Tensor) -> torch.Tensor:
        """A latent model's output on the longest code of `images` (one rollout without pixels)."""
        if self.tokenizer is None:
            raise ValueError("a task model on latents judges against the longest code: give TaskAgrees "
                             "tokenizer= (the model whose latents it reads)")
        with torch.no_grad():
            roll = self.tokenizer.rollout(images, pixels=False)
        return self.outputs(roll.latents[-1])

    def agrees(self, reference: torch.Tensor, outputs: torch.Tensor) -> torch.Tensor:
        """bool [b]: the model judges the reconstruction (outputs) as the input (reference)."""
        if self.threshold is not None:
            return self.error(reference, outputs) < self.threshold
        if reference.ndim != 2:
            raise ValueError(f"a classifier returns [B, classes], this model returned {list(reference.shape)}; "
                             f"for a dense output give TaskAgrees threshold= (a relative error)")
        k = min(self.top_k, outputs.shape[1])
        target = reference.argmax(1)  # [b] the input's class
        return (outputs.topk(k, dim=1).indices == target[:, None]).any(1)

    @staticmethod
    def error(reference: torch.Tensor, outputs: torch.Tensor) -> torch.Tensor:
        """[b] relative error ||outputs - reference|| / ||reference|| over each image's values."""
        diff = (outputs - reference).flatten(1).norm(dim=1)
        return diff / reference.flatten(1).norm(dim=1).clamp_min(1e-12)

    def __repr__(self) -> str:
        how = f"relative error < {self.threshold:g}" if self.threshold is not None else (
            "same class" if self.top_k == 1 else f"input's class in top-{self.top_k}")
        return f"TaskAgrees({type(self.model).__name__} on {self.takes}, {how})"


def parse_task(spec: str, model=None) -> TaskAgrees:
    """`task:PATH[:K]` -> TaskAgrees(load_task_model(PATH), top_k=K), bound to `model` (the tokenizer)
    when given. PATH: a TorchScript file (taking images in [0, 1]) or a probe of `alit probe --save`."""
    usage = ("expected task:PATH[:K], PATH a TorchScript file or a probe saved by `alit probe --save`, "
             "K the top-k (default 1), e.g. task:classifier.pt:5")
    rest = spec.strip().partition(":")[2]
    path, k = rest, 1
    if not Path(rest).is_file() and ":" in rest:
        head, _, tail = rest.rpartition(":")
        try:
            path, k = head, int(tail)
        except ValueError:
            raise AlitError(f"bad criterion {spec!r}: {usage}") from None
    if not path:
        raise AlitError(f"bad criterion {spec!r}: {usage}")
    if k < 1:
        raise AlitError(f"bad criterion {spec!r}: the top-k K must be at least 1")
    if not Path(path).is_file():
        raise AlitError(f"criterion {spec!r}: {path}: no such task model file")
    try:
        rule = TaskAgrees(load_task_model(path), top_k=k)
    except ValueError as e:  # AlitError too
        raise AlitError(f"criterion {spec!r}: {e}") from None
    if model is not None and rule.takes == "latents":
        rule.bind(model)
    return rule


def _eval(model):
    """The model in eval mode; an exported program (torch.export) refuses eval() and is left as it is."""
    if isinstance(model, nn.Module):
        try:
            model.eval()
        except NotImplementedError:
            pass
    return model


def _first_tensor(model) -> torch.Tensor | None:
    """A parameter (else a buffer) of the model: where it runs and in which dtype; None for a function."""
    if not isinstance(model, nn.Module):
        return None
    return next(model.parameters(), next(model.buffers(), None))


def _as_tensor(out) -> torch.Tensor:
    """A model's output as one tensor: itself, the first of a tuple, or a dict's `logits` / `out`."""
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    if isinstance(out, dict):
        for key in ("logits", "out"):
            if isinstance(out.get(key), torch.Tensor):
                return out[key]
    raise ValueError(f"a task model must return a tensor (or a tuple / dict holding one under 'logits' or "
                     f"'out'), got {type(out).__name__}")
