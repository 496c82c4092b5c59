"""The paper's checkpoints -> ours, through explicit key tables, with every size inferred and checked.

Accepted sources (DESIGN 2.3): a released ALIT `.pth` (`{"model", "ema", "optimizer", "epoch",
"scaler", "args", ...}`), the MAGE VQGAN `.ckpt` (top level or its `state_dict`), the MAR KL-16
`.ckpt` (its `model`), or a bare state dict of any of them. Files are read with
`torch.load(weights_only=True)` and an allow-list: a file that would run code is refused, unread.
"""
from __future__ import annotations

import argparse
import math
import pickle
import re
from pathlib import Path

import torch

from .config import BaseConfig, ModelConfig
from .errors import AlitError
from .presets import heads_for

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
    "base_tokenizer.vqgan": "base",
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
SAFE_GLOBALS = [argparse.Namespace]


# --- reading a foreign file safely ----------------------------------------------------------------
def read_checkpoint(path: str | Path) -> dict:
    """torch.load with weights_only=True and our allow-list; unsafe files get a one-line AlitError."""
    path = Path(path)
    if not path.is_file():
        raise AlitError(f"{path}: no such checkpoint file")
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=_zipped(path))
    except pickle.UnpicklingError as e:
        found = re.search(r"GLOBAL ([\w.]+ [\w.]+|[\w.]+)", str(e))
        what = found.group(1).replace(" ", ".") if found else "an object outside the allow-list"
        raise AlitError(f"{path}: refused: loading it would import or run {what}; only tensors, "
                        f"plain containers and argparse.Namespace are allowed") from None
    except Exception as e:  # a truncated or foreign file
        raise AlitError(f"{path}: not a readable PyTorch checkpoint ({type(e).__name__}: "
                        f"{str(e).splitlines()[0] if str(e) else 'no detail'})") from None
    if not isinstance(obj, dict):
        raise AlitError(f"{path}: expected a dict of tensors, found {type(obj).__name__}")
    return obj


def _zipped(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(4) == b"PK\x03\x04"  # mmap needs the zip format of torch.save


def pick_state_dict(obj: dict, weights: str = "ema") -> dict[str, torch.Tensor]:
    """The weights inside a training checkpoint (`ema` or `model`), or the dict itself if bare."""
    if weights not in ("ema", "model"):
        raise AlitError(f"--weights must be 'ema' or 'model', got {weights!r}")
    for key in (weights, "model" if weights == "ema" else "ema", "state_dict"):
        if isinstance(obj.get(key), dict) and _is_state(obj[key]):
            return obj[key]
    if _is_state(obj):
        return obj
    raise AlitError(f"no state dict found: the file has keys {sorted(obj)[:8]} but none of "
                    f"'ema', 'model', 'state_dict' holds tensors")


def _is_state(d: dict) -> bool:
    return bool(d) and all(isinstance(v, torch.Tensor) for v in d.values())


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


def _need(state: dict, key: str, what: str) -> torch.Tensor:
    if key not in state:
        raise AlitError(f"missing key {key!r} (needed for {what})")
    return state[key]


def _count(state: dict, prefix: str) -> int:
    pat = re.compile(re.escape(prefix) + r"(\d+)\.")
    return len({int(m.group(1)) for k in state if (m := pat.match(k))})


def infer_base_config(state: dict, kind: str, image_size: int = 256) -> BaseConfig:
    """Every size of a base tokenizer from its tensors (keys without the wrapper prefix)."""
    ch = _need(state, "encoder.conv_in.weight", "the base width").shape[0]
    levels = _count(state, "encoder.down.")
    mult = []
    for i in range(levels):
        out = _need(state, f"encoder.down.{i}.block.0.conv1.weight", "the channel multipliers").shape[0]
        mult.append(out // ch)
    blocks = _count(state, "encoder.down.0.block.")
    if kind == "vqgan":
        z = _need(state, "encoder.conv_out.weight", "z_channels").shape[0]
        k = _need(state, "quantize.embedding.weight", "the base codebook").shape[0]
        return BaseConfig(kind="vqgan", channels=ch, channel_mult=tuple(mult), num_res_blocks=blocks,
                          latent_channels=z, codebook_size=k)
    e = _need(state, "post_quant_conv.weight", "the VAE latent channels").shape[0]
    attn = tuple(image_size // 2 ** i for i in range(levels) if f"encoder.down.{i}.attn.0.q.weight" in state)
    dec_ch = _need(state, "decoder.conv_out.weight", "the VAE decoder width").shape[1] // mult[0]
    dec_blocks = _count(state, "decoder.up.0.block.") - 1
    return BaseConfig(kind="vae", channels=ch, channel_mult=tuple(mult), num_res_blocks=blocks,
                      latent_channels=e, attn_resolutions=attn,
                      decoder_channels=None if dec_ch == ch else dec_ch,
                      decoder_num_res_blocks=None if dec_blocks == blocks else dec_blocks)


def infer_config(state: dict, heads: int | None = None, decoder_heads: int | None = None) -> ModelConfig:
    """A ModelConfig for a paper-layout ALIT state dict, behaving as the paper's code does."""
    pos = _need(state, "encoder_positional_embedding", "the encoder width")
    width, n = pos.shape[1], pos.shape[0] - 1
    grid = math.isqrt(n)
    if grid * grid != n:
        raise AlitError(f"encoder_positional_embedding has {n} image positions, not a square grid")
    patch = _need(state, "patch_embed.weight", "the patch size")
    p, cb = patch.shape[-1], width - patch.shape[0]
    kind = "vqgan" if any(k.startswith("base_tokenizer.vqgan.") for k in state) else "vae"
    prefix = f"base_tokenizer.{kind}."
    base_state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    if not base_state:
        raise AlitError("missing the base tokenizer weights (no 'base_tokenizer.vqgan.*' or "
                        "'base_tokenizer.vae.*' keys)")
    base = infer_base_config(base_state, kind, grid * p)
    dwidth = _need(state, "decoder_positional_embedding", "the decoder width").shape[1]
    depth = _count(state, "encoder.transformer.")
    ddepth = _count(state, "decoder.transformer.")
    heads = heads or heads_for(width, depth)
    decoder_heads = decoder_heads or heads_for(dwidth, ddepth) or heads
    if heads is None:
        raise AlitError(f"cannot infer the number of attention heads for width {width}, depth "
                        f"{depth} (not a paper preset); pass --heads N")
    factorize = "decoder.decoder_embed.weight" in state
    quantize = "quantize.embedding.weight" in state
    steps = _need(state, "timestep_embedding", "the iteration count")
    return ModelConfig(
        image_size=grid * p, patch_size=p,
        encoder_width=width, encoder_depth=depth, encoder_heads=heads,
        decoder_width=dwidth, decoder_depth=ddepth, decoder_heads=decoder_heads,
        tokens_per_iter=steps.shape[1], num_iters=steps.shape[0],
        latent_dim=state["pre_quantizer_mlp.weight"].shape[0] if factorize else width,
        factorize=factorize, quantize=quantize,
        codebook_size=state["quantize.embedding.weight"].shape[0] if quantize else 4096,
        max_latent_positions=_need(state, "decoder.latent_token_positional_embedding",
                                   "the decoder latent positions").shape[0],
        halting="paper", halting_threshold=0.55 if kind == "vqgan" else 0.025,
        unscale_vae_code=False, base=base,
    )


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


def map_state(state: dict, kind: str, config: ModelConfig | None = None) -> dict[str, torch.Tensor]:
    """Rename a paper-layout state dict into ours (an ALIT model, or a base tokenizer alone)."""
    if kind != "alit":
        return {k: v for k, v in state.items() if not k.startswith("loss.")}
    out = {}
    for k, v in state.items():
        new = map_alit_key(k)
        if new is None:
            continue
        if new.startswith("encoder.to_latent") and config is not None and not config.factorize:
            continue  # the paper keeps this Linear even when latents are not factorised
        out[new] = v
    return out


def check_state(state: dict, expected: dict[str, torch.Size | tuple]) -> None:
    """One-line AlitError naming what is missing, unexpected or mis-shaped."""
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [f"{k} {list(state[k].shape)} (expected {list(expected[k])})"
              for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k])]
    problems = []
    for name, items in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", shapes)):
        if items:
            more = f" and {len(items) - 3} more" if len(items) > 3 else ""
            problems.append(f"{len(items)} {name}: {', '.join(items[:3])}{more}")
    if problems:
        raise AlitError("weights do not fit the model: " + "; ".join(problems))


def convert_state(state: dict, heads: int | None = None, decoder_heads: int | None = None,
                  image_size: int = 256):
    """A foreign state dict -> (our state dict, config). config is a ModelConfig for ALIT weights
    or a BaseConfig for a base tokenizer alone."""
    from .model.alit import ALIT
    from .base import build_base

    kind = detect_kind(state)
    if kind == "alit":
        config = infer_config(state, heads, decoder_heads)
        with torch.device("meta"):
            expected = {k: v.shape for k, v in ALIT(config).state_dict().items()}
    else:
        config = infer_base_config(state, kind, image_size)
        with torch.device("meta"):
            expected = {k: v.shape for k, v in build_base(config, image_size).state_dict().items()}
    ours = map_state(state, kind, config if kind == "alit" else None)
    check_state(ours, expected)
    return ours, config


def convert(src: str | Path, dst: str | Path, heads: int | None = None, weights: str = "ema",
            image_size: int = 256) -> Path:
    """Convert a checkpoint file into our format (a folder with model.safetensors + config.json)."""
    from .weights import save

    state = pick_state_dict(read_checkpoint(src), weights)
    ours, config = convert_state(state, heads=heads, image_size=image_size)
    return save(ours, config, dst, source=str(src), image_size=image_size)
