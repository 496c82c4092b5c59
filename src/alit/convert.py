"""The paper's checkpoints -> ours, through explicit key tables, with every size inferred and checked.

Accepted sources (docs/design.md 2.3): a released ALIT `.pth` (`{"model", "ema", "optimizer", "epoch",
"scaler", "args", ...}`), the MAGE VQGAN `.ckpt` (top level or its `state_dict`), the MAR KL-16
`.ckpt` (its `model`), or a bare state dict of any of them. Files are read by `safe_pickle`
(`torch.load(weights_only=True)` and an allow-list): a file that would run code is refused, unread.

Peak memory stays near one copy of the weights that are kept: zip-format files are memory-mapped,
nothing is read for the parts that are dropped (`gan_losses.*`, the other of `ema` / `model`,
optimizer state), the model used to check shapes lives on the meta device, and float32 tensors go
to the safetensors writer without a copy.
"""
from __future__ import annotations

import functools
import math
import re
from pathlib import Path

import torch

from .base import build_base
from .config import BaseConfig, ModelConfig
from .errors import AlitError
from .model.alit import ALIT
from .presets import heads_for
from .safe_pickle import read_checkpoint
from .weights import check_state, listing as _listing, on_meta, save

# The paper's ALIT key prefixes -> ours. Longest prefix wins.
ALIT_KEYS = {
    "patch_embed": "encoder.patch_embed",
    "encoder_class_embedding": "encoder.cls",
    "encoder_positional_embedding": "encoder.pos",
    "encoder_mask_token": "encoder.mask_token",
    "latent_tokens": "encoder.latent_tokens",
    "latent_token_positional_embedding": "encoder.latent_pos",
    "timestep_embedding": "encoder.step_emb",
    "encoder_ln_pre": "encoder.ln_pre",
    "encoder_ln_recursive": "encoder.ln_recur",
    "encoder_ln_post": "encoder.ln_post",
    "encoder.transformer": "encoder.blocks",
    "pre_quantizer_mlp": "encoder.to_latent",
    "quantize.embedding": "quantizer.codebook",
    "decoder_class_embedding": "decoder.cls",
    "decoder_mask_token": "decoder.mask_token",
    "decoder_positional_embedding": "decoder.pos",
    "decoder.decoder_embed": "decoder.from_latent",
    "decoder.latent_token_positional_embedding": "decoder.latent_pos",
    "decoder.ln_pre": "decoder.ln_pre",
    "decoder.transformer": "decoder.blocks",
    "decoder.ln_post": "decoder.ln_post",
    "decoder.ffn": "decoder.head",
    "base_tokenizer.vqgan": "base",  # only the prefix of the detected base kind is accepted
    "base_tokenizer.vae": "base",
}
# Inside a transformer block: nn.MultiheadAttention's packed projection -> ours.
BLOCK_KEYS = {
    "ln_1": "ln1",
    "ln_2": "ln2",
    "attn.in_proj_weight": "attn.qkv.weight",
    "attn.in_proj_bias": "attn.qkv.bias",
    "attn.out_proj": "attn.proj",
    "mlp.c_fc": "mlp.fc",
    "mlp.c_proj": "mlp.proj",
}
DROPPED_PREFIXES = ("gan_losses.",)  # training-only: LPIPS + discriminators
DROPPED_BASE_PREFIXES = ("loss.",)   # a base tokenizer's own training losses (taming / LDM layout)
DDP_PREFIX = "module."               # a state dict taken from a DistributedDataParallel wrapper
WEIGHT_ENTRIES = ("ema", "model", "state_dict")


def pick_weights(obj: dict, weights: str = "ema") -> tuple[str, dict[str, torch.Tensor]]:
    """(which entry, the state dict) of a training checkpoint, or ("state dict", obj) if bare.

    `ema` (the default) falls back to `model` and then `state_dict` when the file has no `ema`
    entry (the paper's released files carry one, other training scripts may not); an explicit
    `model` does not fall back. An entry that is present but holds no tensors is an error.
    """
    if weights not in ("ema", "model"):
        raise AlitError(f"--weights must be 'ema' or 'model', got {weights!r}")
    if _is_state(obj):
        return "state dict", _strip_ddp(obj)
    order = WEIGHT_ENTRIES if weights == "ema" else ("model",)
    for key in order:
        if key in obj:
            value = obj[key]
            if isinstance(value, dict) and _is_state(value):
                return key, _strip_ddp(value)
            what = (f"a dict with {_listing([repr(k) for k in value], 3)}" if isinstance(value, dict) and value
                    else type(value).__name__)
            raise AlitError(f"the file's {key!r} entry is not a state dict of tensors (found {what})")
    if weights == "model" and "ema" in obj:
        raise AlitError("the file has no 'model' weights, only 'ema'; use --weights ema")
    entries = [k for k in obj if isinstance(k, str)]
    raise AlitError(f"no state dict found: the file has entries {entries[:8]} but none of "
                    f"{', '.join(repr(k) for k in order)}, and is not itself a dict of tensors")


def pick_state_dict(obj: dict, weights: str = "ema") -> dict[str, torch.Tensor]:
    """The weights inside a training checkpoint (`ema` or `model`), or the dict itself if bare."""
    return pick_weights(obj, weights)[1]


def _is_state(d: dict) -> bool:
    return bool(d) and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in d.items())


def _strip_ddp(state: dict) -> dict:
    if all(k.startswith(DDP_PREFIX) for k in state):
        return {k[len(DDP_PREFIX):]: v for k, v in state.items()}
    return state


# --- what kind of weights, and what sizes ---------------------------------------------------------
def detect_kind(state: dict) -> str:
    """'alit', 'vqgan' or 'vae'."""
    if "encoder_positional_embedding" in state or "latent_tokens" in state:
        return "alit"
    if "quantize.embedding.weight" in state and "encoder.conv_in.weight" in state:
        return "vqgan"
    if "quant_conv.weight" in state and "encoder.conv_in.weight" in state:
        return "vae"
    raise AlitError(f"unrecognised weights: neither an ALIT model nor a VQGAN / KL-VAE "
                    f"(first keys: {list(state)[:5]})")


def _need(state: dict, key: str, what: str, ndim: int, prefix: str = "") -> torch.Tensor:
    """state[key], which must have ndim dimensions; names the key with `prefix` in messages."""
    if key not in state:
        raise AlitError(f"missing key {prefix + key!r} (needed for {what})")
    t = state[key]
    if t.ndim != ndim or 0 in t.shape:
        raise AlitError(f"{prefix + key} has shape {list(t.shape)}, expected {ndim} non-empty "
                        f"dimensions (it gives {what})")
    return t


def _count(state: dict, prefix: str) -> int:
    """How many numbered children `prefix{i}.` has: the highest index + 1 (a gap shows up later
    as missing keys of that index)."""
    pat = re.compile(re.escape(prefix) + r"(\d+)\.")
    return max((int(m.group(1)) + 1 for k in state if (m := pat.match(k))), default=0)


def infer_base_config(state: dict, kind: str, image_size: int = 256, prefix: str = "") -> BaseConfig:
    """Every size of a base tokenizer from its tensors (keys without the wrapper `prefix`, which
    is only used to name keys in messages)."""
    def need(key, what, ndim):
        return _need(state, key, what, ndim, prefix)

    ch = need("encoder.conv_in.weight", "the base width", 4).shape[0]
    levels = _count(state, "encoder.down.")
    if levels == 0:
        raise AlitError(f"missing key {prefix + 'encoder.down.0.block.0.conv1.weight'!r} "
                        f"(needed for the base encoder levels)")
    mult = []
    for i in range(levels):
        out = need(f"encoder.down.{i}.block.0.conv1.weight", "the channel multipliers", 4).shape[0]
        if out % ch:
            raise AlitError(f"{prefix}encoder.down.{i}.block.0.conv1.weight has {out} output channels, "
                            f"not a multiple of the base width {ch}")
        mult.append(out // ch)
    blocks = _count(state, "encoder.down.0.block.")
    try:
        if kind == "vqgan":
            z = need("encoder.conv_out.weight", "z_channels", 4).shape[0]
            k = need("quantize.embedding.weight", "the base codebook", 2).shape[0]
            return BaseConfig(kind="vqgan", channels=ch, channel_mult=tuple(mult), num_res_blocks=blocks,
                              latent_channels=z, codebook_size=k)
        e = need("post_quant_conv.weight", "the VAE latent channels", 4).shape[0]
        attn = tuple(image_size // 2 ** i for i in range(levels)
                     if f"encoder.down.{i}.attn.0.q.weight" in state)
        dec_ch = need("decoder.conv_out.weight", "the VAE decoder width", 4).shape[1] // mult[0]
        dec_blocks = _count(state, "decoder.up.0.block.") - 1
        return BaseConfig(kind="vae", channels=ch, channel_mult=tuple(mult), num_res_blocks=blocks,
                          latent_channels=e, attn_resolutions=attn,
                          decoder_channels=None if dec_ch == ch else dec_ch,
                          decoder_num_res_blocks=None if dec_blocks == blocks else dec_blocks)
    except ValueError as err:
        if isinstance(err, AlitError):
            raise
        raise AlitError(f"the base tokenizer's tensors give an invalid configuration: {err}") from None


def infer_config(state: dict, heads: int | None = None, decoder_heads: int | None = None) -> ModelConfig:
    """A ModelConfig for a paper-layout ALIT state dict, behaving as the paper's code does."""
    for name, value in (("--heads", heads), ("decoder heads", decoder_heads)):
        if value is not None and value < 1:
            raise AlitError(f"{name} must be a positive number, got {value}")
    pos = _need(state, "encoder_positional_embedding", "the encoder width", 2)
    width, n = pos.shape[1], pos.shape[0] - 1
    grid = math.isqrt(n)
    if grid * grid != n:
        raise AlitError(f"encoder_positional_embedding has {n} image positions, not a square grid")
    p = _need(state, "patch_embed.weight", "the patch size", 4).shape[-1]
    bases = [k for k in ("vqgan", "vae") if any(key.startswith(f"base_tokenizer.{k}.") for key in state)]
    if not bases:
        raise AlitError("missing the base tokenizer weights (no 'base_tokenizer.vqgan.*' or "
                        "'base_tokenizer.vae.*' keys)")
    if len(bases) > 1:
        raise AlitError("the weights hold both 'base_tokenizer.vqgan.*' and 'base_tokenizer.vae.*' keys; "
                        "an ALIT model has one base tokenizer")
    kind = bases[0]
    prefix = f"base_tokenizer.{kind}."
    base_state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    base = infer_base_config(base_state, kind, grid * p, prefix)
    dwidth = _need(state, "decoder_positional_embedding", "the decoder width", 2).shape[1]
    depth = _count(state, "encoder.transformer.")
    ddepth = _count(state, "decoder.transformer.")
    if depth == 0 or ddepth == 0:
        side = "encoder" if depth == 0 else "decoder"
        raise AlitError(f"missing the {side} transformer (no '{side}.transformer.0.*' keys)")
    heads = heads or heads_for(width, depth)
    if heads is None:
        raise AlitError(f"cannot infer the number of attention heads for width {width}, depth "
                        f"{depth} (not a paper preset); pass --heads N")
    decoder_heads = decoder_heads or heads_for(dwidth, ddepth) or heads
    for side, w, h in (("encoder", width, heads), ("decoder", dwidth, decoder_heads)):
        if w % h:
            raise AlitError(f"{h} heads do not divide the {side} width {w}; pass a --heads that does")
    factorize = "decoder.decoder_embed.weight" in state
    quantize = "quantize.embedding.weight" in state
    steps = _need(state, "timestep_embedding", "the iteration count", 3)
    latent_dim = _need(state, "pre_quantizer_mlp.weight", "the latent width", 2).shape[0] if factorize else width
    codebook = _need(state, "quantize.embedding.weight", "the codebook size", 2).shape[0] if quantize else 4096
    positions = _need(state, "decoder.latent_token_positional_embedding", "the decoder latent positions", 2)
    try:
        return ModelConfig(
            image_size=grid * p, patch_size=p,
            encoder_width=width, encoder_depth=depth, encoder_heads=heads,
            decoder_width=dwidth, decoder_depth=ddepth, decoder_heads=decoder_heads,
            tokens_per_iter=steps.shape[1], num_iters=steps.shape[0],
            latent_dim=latent_dim, factorize=factorize, quantize=quantize, codebook_size=codebook,
            max_latent_positions=positions.shape[0],
            halting="paper", halting_threshold=0.55 if kind == "vqgan" else 0.025,
            unscale_vae_code=False, base=base,
        )
    except ValueError as e:
        raise AlitError(f"the tensors give an invalid model configuration: {e}") from None


# --- key mapping ---------------------------------------------------------------------------------
def map_alit_key(key: str) -> str | None:
    """The paper's key -> ours; None for a key we drop; AlitError for an unknown one."""
    if key.startswith(DROPPED_PREFIXES):
        return None
    for src in sorted(ALIT_KEYS, key=len, reverse=True):
        if key == src or key.startswith(src + "."):
            rest = key[len(src):]
            if src.endswith("transformer"):
                m = re.match(r"\.(\d+)\.(.+)$", rest)
                if m is None:
                    break
                inner = m.group(2)
                for b_src, b_dst in BLOCK_KEYS.items():
                    if inner == b_src or inner.startswith(b_src + "."):
                        return f"{ALIT_KEYS[src]}.{m.group(1)}.{b_dst}{inner[len(b_src):]}"
                break
            return ALIT_KEYS[src] + rest
    raise AlitError(f"unexpected key {key!r}: not part of the paper's ALIT layout")


def paper_key(key: str, base_kind: str = "vqgan") -> str:
    """Ours -> the paper's name (the inverse of map_alit_key), to name keys in messages."""
    m = re.match(r"(encoder|decoder)\.blocks\.(\d+)\.(.+)$", key)
    if m:
        side, index, inner = m.groups()
        for b_src, b_dst in BLOCK_KEYS.items():
            if inner == b_dst or inner.startswith(b_dst + "."):
                inner = b_src + inner[len(b_dst):]
                break
        return f"{side}.transformer.{index}.{inner}"
    if key.startswith("base."):
        return f"base_tokenizer.{base_kind}.{key[len('base.'):]}"
    inverse = {dst: src for src, dst in ALIT_KEYS.items() if not src.startswith("base_tokenizer.")}
    for dst in sorted(inverse, key=len, reverse=True):
        if key == dst or key.startswith(dst + "."):
            return inverse[dst] + key[len(dst):]
    return key


def map_state(state: dict, kind: str, config: ModelConfig | None = None) -> dict[str, torch.Tensor]:
    """Rename a paper-layout state dict into ours (an ALIT model, or a base tokenizer alone)."""
    if kind != "alit":
        return {k: v for k, v in state.items() if not k.startswith(DROPPED_BASE_PREFIXES)}
    base_kind = config.base.kind if config is not None else None
    out, unknown = {}, []
    for k, v in state.items():
        try:
            new = map_alit_key(k)
        except AlitError:
            unknown.append(k)
            continue
        if new is None:
            continue
        if base_kind is not None and k.startswith("base_tokenizer.") and \
                not k.startswith(f"base_tokenizer.{base_kind}."):
            unknown.append(k)
            continue
        if new.startswith("encoder.to_latent") and config is not None and not config.factorize:
            continue  # the paper keeps this Linear even when latents are not factorised
        out[new] = v
    if unknown:
        raise AlitError(f"{_listing(unknown)} {'is' if len(unknown) == 1 else 'are'} not part of the "
                        f"paper's ALIT layout (unexpected key{'s' if len(unknown) > 1 else ''})")
    return out


def _as_model_dtypes(state: dict, dtypes: dict[str, torch.dtype], show) -> dict[str, torch.Tensor]:
    """Floating tensors in the model's dtype (float32: free for the paper's float32 weights,
    exact for float16 / bfloat16, rounded for float64); any other dtype must match exactly."""
    out = {}
    for k, v in state.items():
        want = dtypes[k]
        if v.dtype != want:
            if not (v.is_floating_point() and want.is_floating_point):
                raise AlitError(f"{show(k)} holds {str(v.dtype).replace('torch.', '')} values, "
                                f"expected {str(want).replace('torch.', '')}")
            v = v.to(want)
        out[k] = v
    return out


def convert_state(state: dict, heads: int | None = None, decoder_heads: int | None = None,
                  image_size: int = 256):
    """A foreign state dict -> (our state dict, config). config is a ModelConfig for ALIT weights
    or a BaseConfig for a base tokenizer alone."""
    state = _strip_ddp(state)
    kind = detect_kind(state)
    if kind == "alit":
        config = infer_config(state, heads, decoder_heads)
        reference = on_meta(lambda: ALIT(config)).state_dict()
        show = functools.partial(paper_key, base_kind=config.base.kind)
    else:
        if image_size < 1:
            raise AlitError(f"--image-size must be positive, got {image_size}")
        config = infer_base_config(state, kind, image_size)
        if image_size % config.downsample:
            raise AlitError(f"--image-size {image_size} is not a multiple of the base tokenizer's "
                            f"downsampling {config.downsample}")
        reference = on_meta(lambda: build_base(config, image_size)).state_dict()
        show = _same  # a base tokenizer's keys are the same in both layouts
    ours = map_state(state, kind, config if kind == "alit" else None)
    check_state(ours, {k: v.shape for k, v in reference.items()}, show)
    ours = _as_model_dtypes(ours, {k: v.dtype for k, v in reference.items()}, show)
    return ours, config


def _same(key: str) -> str:
    return key


def convert(src: str | Path, dst: str | Path, heads: int | None = None, weights: str = "ema",
            image_size: int = 256, source: str | None = None) -> Path:
    """Convert a checkpoint file into our format (a folder with model.safetensors + config.json).

    heads: attention heads when width and depth are not a paper preset. weights: "ema" or
    "model" of a training checkpoint. image_size: for a base tokenizer alone (an ALIT model's
    image size is inferred from its tensors). source: what config.json records as the origin
    (default: the file's path).
    """
    entry, state = pick_weights(read_checkpoint(src), weights)
    ours, config = convert_state(state, heads=heads, image_size=image_size)
    source = source or str(src)
    source = source if entry == "state dict" else f"{source} [{entry}]"
    return save(ours, config, dst, source=source, image_size=image_size)
