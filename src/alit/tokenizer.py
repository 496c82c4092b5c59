"""The user-facing tokenizer: the ALIT model plus building, and loading by name or path.

`load` is the loader of a name or path. It is two steps, each in one module: `alit.resolve` turns
a name, hub id or path into a local path (downloading and converting on first use),
`alit.weights.load_module` builds the module that path holds. Neither imports this module, so there
is no import circle.
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass
from pathlib import Path

import torch

from . import hub
from .config import ModelConfig
from .criteria import CriterionInput, judge_at, model_criterion, needs_pixels
from .encoding import Encoding, model_fingerprint
from .model.alit import ALIT, Rollout, check_images, pick_precision
from .model.halting import Halting
from .precision import check_precision, compute_in
from .presets import preset
from .resolve import resolve
from .weights import Origin, load_module, origin


class AdaptiveTokenizer(ALIT):
    """An ALIT model with the public API of docs/design.md 2.1 (`rollout`; `encode` / `decode`)."""

    # what `encode` / `decode` compute in when a call names none ("fp32", "tf32", "bf16", "fp16";
    # `alit.precision`); None: the caller's own context (autocast, TF32 flags) as it is
    precision: str | None = None
    # the checkpoint it was loaded from (`alit.load`, `from_pretrained`), for `save_pretrained`'s card;
    # None when built here
    origin: Origin | None = None

    @torch.no_grad()
    def encode(self, images: torch.Tensor, num_tokens: int | torch.Tensor | None = None, criterion=None, *,
               halting: str | Halting | None = None, generator: torch.Generator | None = None,
               precision: str | torch.dtype | None = None, dtype: torch.dtype | None = None,
               _compact: bool = True) -> Encoding:
        """Tokens of each image, at a fixed budget or at the shortest length a criterion accepts.

        images: float [B, 3, H, W] in [0, 1] at `config.image_size` (computed on the model's device).
        num_tokens: an int, or a LongTensor [B] with a budget per image; each one of `config.lengths`.
        criterion: `c(images, reconstructions) -> BoolTensor[B]` (see `alit.criteria`); each image
            gets the shortest length it accepts, the longest when none does. With neither argument,
            the model's own rule (`config.criterion`, judged on 8-bit reconstructions as the `alit`
            commands judge it: `alit.criteria.model_criterion`). A criterion with
            `needs_pixels = False` (`alit.ConfidenceAbove`, `alit.CodeErrorBelow`) is called as
            `c(inp)` with an `alit.CriterionInput` instead, and no pixels are decoded for it; one
            with `looks_back = True` (`alit.Stalled`) as `c(images, reconstructions, previous)`,
            with the reconstructions at the length before (None at the first).
        halting: as `rollout` (None: the model's default). generator: VAE posterior sampling.
        precision: "fp32", "tf32", "bf16" or "fp16" (`alit.precision`: the weights stay as they are;
            ids are chosen in float32; latents are returned in the model's dtype); None: the
            tokenizer's own (`tok.precision`, set by `alit.load(..., precision=)`), and when that is
            None too, the caller's context. dtype: the older spelling (torch.bfloat16 ...).

        The recurrence stops once every image has its length, and an image leaves the batch as soon
        as it has one, so it costs nothing more; `enc.iterations` is the most any image needed.
        Pixels are decoded only for a criterion that needs them: a fixed budget, or a pixel-free
        criterion, never runs the base decoder, and a fixed budget without halting never runs the
        latent decoder either. Each image gets the tokens `rollout` gives it at its length (halting
        draws of the "paper" mode included: they do not depend on the batch).
        _compact=False (for benchmarks) keeps finished images in the batch until all are done.
        """
        if num_tokens is not None and criterion is not None:
            raise ValueError("encode takes one of num_tokens= (a budget: an int or a LongTensor [B]) "
                             "and criterion= (e.g. alit.L1Below(0.07)), not both (neither: the model's own rule)")
        if num_tokens is None and criterion is None:
            criterion = model_criterion(self)
        if criterion is not None and not callable(criterion):
            raise ValueError(f"criterion must be callable as c(images, reconstructions), got "
                             f"{type(criterion).__name__}")
        check_images(images, self.config.image_size)
        param = next(self.parameters())
        device = param.device
        images = images.to(device, param.dtype)  # the caller's own tensor when it already matches
        with compute_in(self._precision(precision, dtype), device):
            return self._encode(images, num_tokens, criterion, halting, generator, _compact)

    def rollout(self, images: torch.Tensor, halting: str | Halting | None = None, *, grad: bool | None = None,
                **kwargs) -> Rollout:
        """`ALIT.rollout` (every length at once; see there) in the tokenizer's precision unless one is
        given, without an autograd graph unless asked:
        grad=None builds one only in training mode (`tok.train()`), grad=True always (when autograd
        is enabled), grad=False never. An evaluation batch then needs a fraction of the memory."""
        if kwargs.get("precision") is None and kwargs.get("dtype") is None:
            kwargs["precision"] = self.precision  # the tokenizer's own, as encode and decode
        with torch.set_grad_enabled(torch.is_grad_enabled() and (self.training if grad is None else grad)):
            return super().rollout(images, halting, **kwargs)

    def _encode(self, images, num_tokens, criterion, halting, generator, compact: bool) -> Encoding:
        device = images.device
        B, L0, T = images.shape[0], self.config.tokens_per_iter, self.config.num_iters
        if num_tokens is not None:
            need = self._budgets(num_tokens, B).to(device)  # [B] iterations each image needs
            T = int(need.max())
        halt = _BatchStableHalting.of(self.resolve_halting(halting, device), B, device)
        if generator is None and not self.is_vqgan and self.config.base.sample_posterior:
            generator = torch.Generator(device=device).manual_seed(0)  # same call, same result

        lengths = torch.zeros(B, dtype=torch.long, device=device)
        latents = images.new_zeros(B, T * L0, self.config.latent_dim)  # [B, Lmax, d]
        ids = None if self.quantizer is None else torch.full((B, T * L0), -1, dtype=torch.long, device=device)
        finished = torch.zeros(B, dtype=torch.bool, device=device)  # read only without compaction
        state = self.start(images, generator)
        active = torch.arange(B, device=device)  # caller's rows still in the batch
        subset = images  # the caller's images still in the batch
        memory = None  # what a criterion that looks back keeps of the length before, per active image
        placed = Lmax = 0
        for t in range(T):
            last = t == T - 1
            # the decoder's prediction is needed only to judge a length (tokens need no decoder)
            judged = criterion is not None and not last
            step = self.iterate(state, t, halt, last=last, decode=judged)
            L = L0 * (t + 1)
            if last:
                done = torch.ones(len(active), dtype=torch.bool, device=device)
            elif num_tokens is not None:
                done = need[active] == t + 1
            else:
                done, memory = self._judge(criterion, subset, step, state, L, memory)
            if not compact:
                done = done & ~finished  # every row stays in the batch: skip those placed before
            # finished rows first, the rest in their order: index tensors, so nothing below syncs
            order = torch.argsort((~done).to(torch.uint8), stable=True)
            k = len(active) if last and compact else int(done.sum())  # the iteration's one host sync
            if k:
                rows, idx = active[order[:k]], order[:k]
                lengths[rows] = L
                latents[rows, :L] = step.latents[idx].to(latents.dtype)
                if ids is not None:
                    ids[rows, :L] = step.ids[idx]
                finished[rows] = True
                placed, Lmax = placed + k, L
            if placed == B:
                break
            if compact and k:
                # finished images leave the batch: later iterations run on the rest only
                keep = order[k:]
                state.select(keep)
                active, subset = active[keep], subset[keep]
                memory = None if memory is None else memory[keep]
                halt.rows = active
        return Encoding(lengths, None if ids is None else ids[:, :Lmax], latents[:, :Lmax], t + 1,
                        model_fingerprint(self), None if ids is None else self.config.codebook_size)

    def _judge(self, criterion, images: torch.Tensor, step, state, num_tokens: int, memory):
        """(the criterion's answer [b] for the images still in the batch at this length, what a
        criterion that looks back keeps for the next length (its scores, or else these
        reconstructions); None for the others)."""
        if needs_pixels(criterion):
            seen = self.codes_to_images(step.codes)  # [b, 3, H, W] raw
        else:
            seen = CriterionInput(images, num_tokens, step.latents, step.logits, step.codes, state.targets,
                                  probs=step.probs, decode=self.codes_to_images)
        return judge_at(criterion, images, seen, memory)

    @torch.no_grad()
    def decode(self, enc: Encoding, *, batched: bool = True, precision: str | torch.dtype | None = None,
               dtype: torch.dtype | None = None) -> torch.Tensor:
        """Images [B, 3, H, W] clamped to [0, 1], in the model's dtype, from an Encoding this model made.

        A quantised model decodes the ids (through its codebook), a continuous one the latents.
        Images of one length are decoded together (equal to decoding each alone up to float
        rounding: batched kernels round differently); batched=False decodes each image alone, so
        that the result is bit-for-bit what it is alone, whatever else is in the batch.
        precision / dtype: as `encode`.
        """
        if not isinstance(enc, Encoding):
            raise ValueError(f"decode expects an alit.Encoding (from encode, Encoding.load or "
                             f"Encoding.from_ids), got {type(enc).__name__}")
        enc.check_model(self)
        with compute_in(self._precision(precision, dtype), next(self.parameters()).device):
            return self._decode(enc, batched)

    def _decode(self, enc: Encoding, batched: bool) -> torch.Tensor:
        param = next(self.parameters())
        if enc.ids is not None:
            latents = self.latents_from_ids(enc.ids.to(param.device).clamp(min=0))  # [B, Lmax, d]
        else:
            latents = enc.latents.to(param.device, param.dtype)
        lengths = enc.lengths.tolist()
        if batched:
            groups = [[i for i, n in enumerate(lengths) if n == L] for L in sorted(set(lengths))]
        else:
            groups = [[i] for i in range(len(lengths))]
        pieces = []
        for rows in groups:
            _, codes = self.decode_latents(latents[rows, :lengths[rows[0]]])  # [b, N, Cb]
            pieces.append(self.codes_to_images(codes).clamp(0, 1).to(param.dtype))  # autocast: bf16
        order = [i for rows in groups for i in rows]  # the caller's row of each decoded image
        inverse = torch.empty(len(order), dtype=torch.long)
        inverse[order] = torch.arange(len(order))
        return torch.cat(pieces)[inverse.to(param.device)]  # [B, 3, H, W]

    # --- by name: the paper's models, the Hugging Face Hub, folders -------------------------------
    @classmethod
    def from_pretrained(cls, repo_or_dir: str | Path, revision: str | None = None,
                        dtype: torch.dtype | str | None = None, *,
                        precision: str | None = None) -> "AdaptiveTokenizer":
        """A tokenizer from a local folder, a Hugging Face Hub repository ("org/name", at a
        `revision`), or any name `alit.load` takes ("default", "paper/...", "hf:org/name").
        dtype, precision: as `alit.load`."""
        folder = resolve(repo_or_dir, revision, hub_ids=True, expect="alit")
        return _loaded(folder, cls, dtype, precision)

    def save_pretrained(self, folder: str | Path, **card) -> Path:
        """Write config.json, model.safetensors and a README.md model card into folder.
        card: recipe= (YAML text or file), figures= (dict, or `alit demo` / `alit eval` JSON), name=."""
        return hub.save_pretrained(self, folder, origin=self.origin, **card)

    def push_to_hub(self, repo_id: str, *, private: bool | None = None, token: str | None = None,
                    revision: str | None = None, commit_message: str = "Upload alit model", **card) -> str:
        """Upload this model (save_pretrained's files) to a Hugging Face Hub repository, created
        when missing; returns the commit URL. Needs `pip install 'alit[hub]'` and a token."""
        return hub.push_to_hub(self, repo_id, private=private, token=token, revision=revision,
                               commit_message=commit_message, origin=self.origin, **card)

    def fingerprint(self) -> str:
        """The identity an Encoding records: a hash of the config and a sample of every weight
        (computed once, and again only after the weights change)."""
        return model_fingerprint(self)

    def _precision(self, precision, dtype) -> str | None:
        """The precision a call asks for, else the tokenizer's own."""
        asked = pick_precision(precision, dtype)
        return self.precision if asked is None else asked

    def _budgets(self, num_tokens, B: int) -> torch.Tensor:
        """num_tokens (int or [B]) -> iterations per image [B], each a length of this model."""
        allowed = self.config.lengths
        if isinstance(num_tokens, numbers.Integral) and not isinstance(num_tokens, bool):
            num_tokens = torch.full((B,), int(num_tokens), dtype=torch.long)
        elif not (isinstance(num_tokens, torch.Tensor) and num_tokens.shape == (B,)
                  and not num_tokens.is_floating_point() and num_tokens.dtype != torch.bool):
            got = (f"{num_tokens.dtype} tensor of shape {list(num_tokens.shape)}"
                   if isinstance(num_tokens, torch.Tensor) else repr(num_tokens))
            raise ValueError(f"num_tokens must be an int or an integer tensor of shape [{B}] (one budget "
                             f"per image), got {got}")
        bad = sorted({int(n) for n in num_tokens.tolist()} - set(allowed))
        if bad:
            raise ValueError(f"num_tokens {bad[0] if len(bad) == 1 else bad} is not a length of this model; "
                             f"choose from {allowed}")
        return num_tokens.long() // self.config.tokens_per_iter


@dataclass
class _BatchStableHalting(Halting):
    """Halting whose random draws do not depend on which images are still in the batch.

    Draws are made for the caller's whole batch (rows that have left hold p = 0) and the rows still
    present are kept, so `encode` halts each image's tokens exactly as `rollout` would.
    """

    rows: torch.Tensor | None = None  # caller's rows still in the batch
    batch: int = 0                    # the caller's batch size

    @classmethod
    def of(cls, h: Halting, batch: int, device: torch.device) -> "_BatchStableHalting":
        return cls(h.mode, h.threshold, h.generator, h.draws, torch.arange(batch, device=device), batch)

    def _draw(self, t: int, p: torch.Tensor) -> torch.Tensor:
        full = p.new_zeros(self.batch, p.shape[1])  # [B_caller, N]
        full[self.rows] = p.detach()
        return super()._draw(t, full)[self.rows]


def build(preset_or_config: str | ModelConfig = "tiny", **overrides) -> AdaptiveTokenizer:
    """A tokenizer with random weights, from a preset name or a ModelConfig (eval mode)."""
    if isinstance(preset_or_config, ModelConfig):
        config = preset_or_config.replace(**overrides) if overrides else preset_or_config
    else:
        config = preset(preset_or_config, **overrides)
    return AdaptiveTokenizer(config).eval()


def load(path_or_name: str | Path, dtype: torch.dtype | str | None = None, *,
         revision: str | None = None, precision: str | None = None) -> AdaptiveTokenizer:
    """A tokenizer in eval mode from a name or a checkpoint (see `alit.resolve`):
    "default" (the bundled model), "paper/<name>" (the paper's released models, downloaded and
    converted on first use), "hf:org/name" (the Hugging Face Hub, at `revision`), or a checkpoint
    folder or file (ours: `alit convert` or training make one).

    precision: what `encode` / `decode` compute in ("fp32", "tf32", "bf16", "fp16"; `alit.precision`),
    the weights staying float32; ids are chosen in float32 under every precision.
    dtype: cast the weights instead, e.g. torch.bfloat16 (or "bf16"): half the memory, everything
    computed in that precision but the choice of ids.
    """
    return _loaded(resolve(path_or_name, revision, expect="alit"), AdaptiveTokenizer, dtype, precision)


def _loaded(folder: Path, cls: type[AdaptiveTokenizer], dtype, precision) -> AdaptiveTokenizer:
    """The tokenizer of a resolved local checkpoint, with its origin, precision and dtype."""
    tok = load_module(folder, expect="alit", alit_class=cls)
    tok.origin = origin(folder)
    tok.precision = check_precision(precision)
    return tok if dtype is None else tok.to(as_dtype(dtype))


DTYPES = {"fp32": torch.float32, "float32": torch.float32, "bf16": torch.bfloat16,
          "bfloat16": torch.bfloat16, "fp16": torch.float16, "float16": torch.float16}


def as_dtype(dtype: torch.dtype | str) -> torch.dtype:
    """torch.float32 / torch.bfloat16 / torch.float16, or one of their names ("fp32", "bf16", ...)."""
    if isinstance(dtype, str) and dtype.lower() in DTYPES:
        return DTYPES[dtype.lower()]
    if dtype in (torch.float32, torch.bfloat16, torch.float16):
        return dtype
    raise ValueError(f"dtype must be torch.float32, torch.bfloat16 or torch.float16 (or one of "
                     f"{', '.join(DTYPES)}), got {dtype!r}")
