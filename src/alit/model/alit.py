"""ALIT: the adaptive-length tokenizer, one recurrent rollout giving every token length at once."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ..base import build_base, check_images
from ..config import ModelConfig
from ..precision import check_precision, compute_in
from .decoder import LatentDecoder
from .encoder import RecurrentEncoder
from .halting import Halting
from .latent_norm import LatentStandardizer
from .quantizer import VectorQuantizer


@dataclass
class Targets:
    """What the frozen base tokenizer says about a batch of images."""

    features: torch.Tensor       # [B, Cb, G, G]: VQGAN pre-quantisation features / VAE scaled latents
    codes: torch.Tensor          # [B, N, Cb]: the code the decoder must predict
    ids: torch.Tensor | None     # [B, N]: VQGAN ground-truth ids, None for the VAE

    def select(self, keep: torch.Tensor) -> "Targets":
        return Targets(self.features[keep], self.codes[keep], None if self.ids is None else self.ids[keep])


@dataclass
class Step:
    """One rollout iteration's outputs.

    logits, codes and probs are None when the iteration ran without its latent decoder
    (`ALIT.iterate(..., decode=False)`: nothing needed the prediction).
    """

    latents: torch.Tensor            # [B, L, d] what the decoder consumes
    ids: torch.Tensor | None         # [B, L] latent token ids (quantised models)
    logits: torch.Tensor | None      # [B, N, K_base] (VQGAN base)
    codes: torch.Tensor | None       # [B, N, Cb] soft code (VQGAN) / predicted latent (VAE)
    quantizer_loss: torch.Tensor     # scalar (0 without quantiser)
    halted: torch.Tensor | None      # [B, N] bool, tokens masked before the next iteration
    probs: torch.Tensor | None = None  # [B, N, K_base] softmax(logits), float32 (VQGAN base)


@dataclass
class Rollout:
    """Every length at once: each list is indexed by iteration (length L0 * (i + 1))."""

    latents: list[torch.Tensor]
    ids: list[torch.Tensor] | None
    logits: list[torch.Tensor] | None
    codes: list[torch.Tensor]
    reconstructions: list[torch.Tensor] | None  # [B, 3, H, W] raw, unclamped; None if pixels=False
    targets: Targets
    quantizer_losses: list[torch.Tensor] = field(default_factory=list)
    halted: list[torch.Tensor | None] = field(default_factory=list)

    @property
    def lengths(self) -> list[int]:
        return [z.shape[1] for z in self.latents]


class RolloutState:
    """The encoder sequence between iterations, plus the base targets of the same images."""

    def __init__(self, x: torch.Tensor, targets: Targets):
        self.x = x            # [B, 1+N+L, W]
        self.targets = targets

    def select(self, keep: torch.Tensor) -> None:
        """Drop images from the batch (keep: bool [B] or indices)."""
        self.x = self.x[keep]
        self.targets = self.targets.select(keep)


class ALIT(nn.Module):
    """Base 2D tokenizer + recurrent encoder + (optional) latent quantiser + latent decoder.

    Training switches are the caller's: `rollout(..., quantize=False)` bypasses the quantiser (a
    warm-up), `set_grad_checkpointing()` recomputes the transformer blocks in backward.
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.base = build_base(config.base, config.image_size)
        self.encoder = RecurrentEncoder(config)
        self.quantizer = (VectorQuantizer(config.codebook_size, config.latent_dim, config.commitment)
                          if config.quantize else None)
        self.latent_norm = (LatentStandardizer(config.num_iters, config.max_tokens, config.latent_dim)
                            if config.latent_norm else None)
        out_dim = config.base.codebook_size if self.is_vqgan else config.base.latent_channels
        self.decoder = LatentDecoder(config, out_dim)
        self.apply(_init_weights)
        if self.encoder.feedback is not None:  # error feedback starts as a no-op
            nn.init.zeros_(self.encoder.feedback.weight)
            nn.init.zeros_(self.encoder.feedback.bias)

    @property
    def is_vqgan(self) -> bool:
        return self.config.base.kind == "vqgan"

    # --- the base tokenizer ------------------------------------------------------------------
    def targets(self, images: torch.Tensor, generator: torch.Generator | None = None) -> Targets:
        # the fp32 base encoder keeps NCHW: channels-last rounding moves its features enough (~1e-5
        # after the token LayerNorm) to leave the reference tolerances
        low = _lower_precision(images)
        images = _channels_last(images, self.base.encoder, low, low)
        if self.is_vqgan:
            h = self.base.encode(images)  # [B, Cb, G, G]
            ids = self.base.quantize_ids(h)  # [B, N]
            return Targets(h, F.embedding(ids, self.base.codebook), ids)
        z = self.base.encode(images, generator=generator)  # [B, Cb, G, G], scaled
        return Targets(z, z.flatten(2).transpose(1, 2), None)

    def codes_to_images(self, codes: torch.Tensor) -> torch.Tensor:
        """Predicted base code [B, N, Cb] -> raw pixels [B, 3, H, W] through the base decoder."""
        G = self.config.grid_size
        z = codes.transpose(1, 2).reshape(codes.shape[0], -1, G, G)  # [B, Cb, G, G]
        if not self.is_vqgan and self.config.unscale_vae_code:
            z = z / self.config.base.scale_factor
        z = _channels_last(z, self.base.decoder, True, True)  # the code's view is channels-last already
        return self.base.decode(z).contiguous()  # [B, 3, H, W]

    # --- one rollout iteration, in pieces that encode() also uses ----------------------------
    def start(self, images: torch.Tensor, generator: torch.Generator | None = None) -> RolloutState:
        images = images.to(dtype=self.dtype)  # a bfloat16 model takes bfloat16 pixels; no copy otherwise
        targets = self.targets(images, generator)
        tokens = self.encoder.image_tokens(images, targets.features)  # [B, N, W]
        x = self.encoder.start(tokens)  # [B, 1+N+L0, W]
        return RolloutState(x, targets)

    def bottleneck(self, factorized: torch.Tensor, t: int = 0, *, quantize: bool = True):
        """Factorised latents [B, L, d] of iteration t -> (decoder latents, ids or None, quantiser loss).

        quantize=False (a training warm-up, `quantizer_warmup` of train/distill.py): the decoder
        reads the quantiser's normalised inputs themselves; ids as usual, no quantiser loss.
        """
        if self.latent_norm is not None:
            factorized = self.latent_norm(factorized, t)
        if self.quantizer is None:
            return factorized, None, factorized.new_zeros(())
        q = self.quantizer(factorized)
        if not quantize:
            return F.normalize(factorized, dim=-1), q.ids, factorized.new_zeros(())
        return q.latents, q.ids, q.loss

    def decode_latents(self, latents: torch.Tensor):
        """Latents [B, L, d] -> (base logits [B, N, K] or None, predicted code [B, N, Cb])."""
        logits, _, codes = self._decode_latents(latents)
        return logits, codes

    def _decode_latents(self, latents: torch.Tensor):
        """As `decode_latents`, plus the softmax (float32) of the logits, so nothing computes it twice."""
        out = self.decoder(latents)
        if not self.is_vqgan:
            return None, None, out
        probs = out.softmax(-1, dtype=torch.float32)  # [B, N, K]
        # the soft code trains the decoder only: no gradient reaches the base codebook
        codebook = self.base.codebook.detach()
        codes = probs.to(codebook.dtype) @ codebook  # [B, N, Cb]
        return out, probs, codes

    def iterate(self, state: RolloutState, t: int, halting: Halting, last: bool = False, *,
                decode: bool = True, grow: bool | None = None, quantize: bool = True) -> Step:
        """Run iteration t on the state (advancing it to t + 1 unless last).

        decode=False: skip the latent decoder unless halting or error feedback needs its
        prediction; the Step then has no logits, probs or codes. Tokens alone need no decoder.
        grow=False: leave iteration t + 1's latent seed for the caller to append (`encoder.grow`),
        halting after t as usual; None: grow unless last. quantize: as in `bottleneck`.
        """
        x = self.encoder.blocks(state.x)  # [B, 1+N+L, W]
        factorized = self.encoder.latents(x)  # [B, L, d]
        latents, ids, qloss = self.bottleneck(factorized, t, quantize=quantize)
        # the paper's code also halts after the last iteration; that changes no output
        halts = halting.mode != "off" and not last
        feeds = self.encoder.feedback is not None and not last
        logits = probs = codes = None
        if decode or halts or feeds:
            logits, probs, codes = self._decode_latents(latents)
        # the code error [B, N, Cb]: what error feedback adds, and what halts a VAE-based model
        error = codes - state.targets.codes if feeds or (halts and probs is None) else None
        if feeds:
            x = self.encoder.feed(x, error)
        halted = None
        if halts:
            gt_prob = err = None
            if probs is not None:
                gt_prob = probs.gather(-1, state.targets.ids[..., None])[..., 0]  # [B, N]
            else:
                err = error.abs().mean(-1)  # [B, N]
            halted = halting.mask(t, gt_prob, err)
            if halted is not None:
                x = self.encoder.halt(x, halted)
        grow = not last if grow is None else grow
        state.x = self.encoder.grow(x, t + 1) if grow else x
        return Step(latents, ids, logits, codes, qloss, halted, probs)

    def resolve_halting(self, halting: str | Halting | None, device: torch.device) -> Halting:
        if isinstance(halting, Halting):
            return halting
        mode = self.config.halting if halting is None else halting
        gen = None
        if mode == "paper":
            # a fixed seed: the same call on the same images gives the same result
            gen = torch.Generator(device=device).manual_seed(0)
        return Halting(mode, self.config.halting_threshold, gen)

    # --- the public contract -------------------------------------------------------------------
    def rollout(self, images: torch.Tensor, halting: str | Halting | None = None, *,
                num_iters: int | None = None, pixels: bool = True,
                generator: torch.Generator | None = None, quantize: bool = True,
                precision: str | torch.dtype | None = None, dtype: torch.dtype | None = None) -> Rollout:
        """Every length at once (docs/design.md 2.1). images: float [B, 3, H, W] in [0, 1].

        halting: "off", "threshold", "paper", a `Halting` (for injected draws), or None for the
        model's default. num_iters: run only the first iterations. pixels: decode images too.
        generator: VAE posterior sampling, when the base samples. quantize=False: the decoder reads
        the quantiser's normalised inputs (a training warm-up; ids as usual, no quantiser loss).
        precision: "fp32", "tf32",
        "bf16" or "fp16" (`alit.precision`; the weights stay as they are; outputs of autocast
        layers are then in that precision); None: the caller's context. dtype: the same, as
        torch.float32 / torch.bfloat16 / torch.float16 (older spelling).
        """
        check_images(images, self.config.image_size)
        with compute_in(pick_precision(precision, dtype), images.device):
            return self._rollout(images, halting, num_iters, pixels, generator, quantize)

    def _rollout(self, images, halting, num_iters, pixels, generator, quantize) -> Rollout:
        T = self.config.num_iters if num_iters is None else num_iters
        if not 1 <= T <= self.config.num_iters:
            raise ValueError(f"num_iters must be in 1..{self.config.num_iters}, got {T}")
        halt = self.resolve_halting(halting, images.device)
        state = self.start(images, generator)
        steps = [self.iterate(state, t, halt, last=t == T - 1, quantize=quantize) for t in range(T)]
        recons = [self.codes_to_images(s.codes) for s in steps] if pixels else None
        quantized = self.quantizer is not None
        return Rollout(
            latents=[s.latents for s in steps],
            ids=[s.ids for s in steps] if quantized else None,
            logits=[s.logits for s in steps] if self.is_vqgan else None,
            codes=[s.codes for s in steps],
            reconstructions=recons,
            targets=state.targets,
            quantizer_losses=[s.quantizer_loss for s in steps],
            halted=[s.halted for s in steps],
        )

    def latents_from_ids(self, ids: torch.Tensor) -> torch.Tensor:
        if self.quantizer is None:
            raise ValueError("this model has continuous latents: it has no token ids")
        return self.quantizer.lookup(ids)

    def set_grad_checkpointing(self, enable: bool = True) -> int:
        """Recompute the encoder's and decoder's transformer blocks in backward (as timm's models):
        less activation memory for ~1/3 more compute, the same gradients and state-dict keys.
        Returns the number of blocks the switch covers."""
        stacks = (self.encoder.blocks, self.decoder.blocks)
        for blocks in stacks:
            blocks.grad_checkpointing = enable
        return sum(len(blocks) for blocks in stacks)

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of the weights (float32 unless the model was cast, e.g. `tok.to(torch.bfloat16)`)."""
        return self.encoder.pos.dtype


def pick_precision(precision: str | torch.dtype | None, dtype: torch.dtype | None) -> str | None:
    """The precision asked for by either spelling (`precision=` or the older `dtype=`), not both."""
    if precision is not None and dtype is not None:
        raise ValueError("give precision= (\"fp32\", \"tf32\", \"bf16\", \"fp16\") or dtype=, not both")
    return check_precision(precision if dtype is None else dtype)


# Convolutions are faster in channels-last layout on the CPU, weights included: oneDNN then
# reorders nothing (measured on an AVX2 CPU: the fp32 pixel decoder 1.18x; bfloat16, which has no
# fast NCHW kernel there, 20-80x, since with NCHW weights a norm returning NCHW sends every later
# conv down the slow path). Other devices keep their layout.
CHANNELS_LAST_DEVICES = ("cpu",)


def _channels_last(x: torch.Tensor, convs: nn.Module, inputs: bool, weights: bool) -> torch.Tensor:
    """On a CPU: x channels-last if `inputs`; the conv weights under `convs` channels-last if
    `weights`, else as built (NCHW). Elsewhere x unchanged."""
    if x.device.type not in CHANNELS_LAST_DEVICES:
        return x
    fmt = torch.channels_last if weights else torch.contiguous_format
    for m in convs.modules():
        if isinstance(m, nn.Conv2d) and not m.weight.is_contiguous(memory_format=fmt):
            m.weight.data = m.weight.data.contiguous(memory_format=fmt)
    return x.contiguous(memory_format=torch.channels_last) if inputs else x


def _lower_precision(x: torch.Tensor) -> bool:
    """Whether x is, or will be computed, in less than float32 (a cast model, or autocast)."""
    if x.dtype != torch.float32:
        return True
    try:
        return torch.is_autocast_enabled(x.device.type)
    except TypeError:  # torch < 2.4 takes no device type
        return torch.is_autocast_cpu_enabled() if x.device.type == "cpu" else torch.is_autocast_enabled()


def _init_weights(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
