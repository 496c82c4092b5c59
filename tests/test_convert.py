"""`alit convert`: the paper's checkpoint layouts in every wrapping, sizes inferred for every released
variant, refusal of files that would run code, one-line errors for wrong files, and round trips.

Fast tests use the tiny reference state dicts (the paper's key layout, small sizes) and the
full-size key manifests on the meta device; the full-size conversion of alit_small is `slow`.
"""
from __future__ import annotations

import argparse
import builtins
import json
import os
import pickle
import shutil

import pytest
import torch

import alit
from alit.convert import convert, convert_state, map_alit_key, paper_key, pick_state_dict
from alit.errors import AlitError
from alit.presets import KL16_VAE, MAGE_VQGAN
from alit.safe_pickle import read_checkpoint
from alit.weights import load_module

from conftest import REFERENCE, reference_tensors, run_alit

KEYS = REFERENCE / "official_checkpoint_keys"
COUNTS = json.loads((KEYS / "param_counts.json").read_text()) if KEYS.is_dir() else {}
RELEASED = {  # manifest -> the preset with the same architecture
    "alit_small_vqgan_quantized": "small",
    "alit_small_vqgan_continuous": "small-vqgan-continuous",
    "alit_base_vqgan_quantized": "base",
    "alit_semilarge_vqgan_quantized": "semilarge",
    "alit_small_vae_quantized": "small-vae-quantized",
    "alit_small_vae_continuous": "small-vae-continuous",
}
TINY = {"vqgan": REFERENCE / "vqgan_quantized_tiny", "vae": REFERENCE / "vae_continuous_tiny"}

pytestmark = pytest.mark.skipif(not KEYS.is_dir(), reason=f"no reference files at {REFERENCE}")


# --- building checkpoints like the paper's training scripts ---------------------------------------
def manifest(name: str) -> dict[str, list[int]]:
    return json.loads((KEYS / f"{name}.json").read_text())


def dtype_of(key: str) -> torch.dtype:
    return torch.int64 if key.endswith("num_batches_tracked") else torch.float32


def meta_state(shapes: dict[str, list[int]]) -> dict[str, torch.Tensor]:
    """Tensors with the manifest's shapes and no storage: sizes can be inferred for free."""
    return {k: torch.empty(s, dtype=dtype_of(k), device="meta") for k, s in shapes.items()}


def random_state(shapes: dict[str, list[int]], seed: int) -> dict[str, torch.Tensor]:
    """Random tensors of exactly these shapes, scaled so a forward pass stays finite."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for k, s in shapes.items():
        if dtype_of(k) == torch.int64:
            out[k] = torch.tensor(s[0] if s else 7, dtype=torch.int64).reshape(s)
        elif len(s) >= 2:
            fan_in = max(1, torch.Size(s[1:]).numel())
            out[k] = torch.randn(s, generator=g) / fan_in ** 0.5
        else:
            out[k] = (1.0 if k.endswith("weight") else 0.0) + 0.1 * torch.randn(s, generator=g)
    return out


def cheap_state(shapes: dict[str, list[int]]) -> dict[str, torch.Tensor]:
    """The right keys, shapes and dtypes at almost no cost (one stored element each): for parts
    that conversion drops, such as `gan_losses.*`."""
    return {k: torch.zeros(1, dtype=dtype_of(k)).reshape([1] * len(s)).expand(s) for k, s in shapes.items()}


def tiny_state(kind: str = "vqgan") -> dict[str, torch.Tensor]:
    """A reference case's state dict: the paper's exact key layout at a tiny size."""
    return reference_tensors(TINY[kind] / "state_dict.pt")


def gan_losses(kind: str = "vqgan") -> dict[str, torch.Tensor]:
    return cheap_state(json.loads((TINY[kind] / "gan_losses_manifest.json").read_text()))


def perturbed(state: dict, seed: int) -> dict[str, torch.Tensor]:
    """Another set of weights of the same layout (the `model` beside the `ema`)."""
    g = torch.Generator().manual_seed(seed)
    return {k: v + 0.01 * torch.randn(v.shape, generator=g) if v.is_floating_point() else v.clone()
            for k, v in state.items()}


def training_checkpoint(ema: dict, model: dict, extras: bool = True) -> dict:
    """What the paper's training scripts save (`misc.save_model` in the MAE style)."""
    ckpt = {"model": model, "ema": ema, "epoch": 3}
    if extras:
        n = 4
        ckpt["optimizer"] = {
            "state": {i: {"step": torch.tensor(10.0), "exp_avg": torch.zeros(3),
                          "exp_avg_sq": torch.zeros(3)} for i in range(n)},
            "param_groups": [{"lr": 1e-4, "betas": (0.9, 0.95), "weight_decay": 0.05, "eps": 1e-8,
                              "amsgrad": False, "params": list(range(n))}],
        }
        ckpt["scaler"] = {"scale": 65536.0, "growth_factor": 2.0, "backoff_factor": 0.5,
                          "growth_interval": 2000, "_growth_tracker": 0}
        ckpt["args"] = argparse.Namespace(
            batch_size=32, lr=1e-4, blr=None, epochs=200, model="alit_small", output_dir="./out",
            dist_url="env://", dynamic_halting=True, lambdas=[2.5, 2.0, 1.5], betas=(0.9, 0.95),
            device=torch.device("cpu"), resume="")
    return ckpt


def save_pth(obj, path) -> str:
    torch.save(obj, path)
    return str(path)


def expected_ours(state: dict) -> dict[str, torch.Tensor]:
    """What conversion must keep: every non-`gan_losses` tensor under our name."""
    return {map_alit_key(k): v for k, v in state.items() if map_alit_key(k) is not None}


def assert_same_tensors(ours: dict, want: dict) -> None:
    assert set(ours) == set(want)
    for k, v in want.items():
        assert ours[k].dtype == torch.float32 and torch.equal(ours[k], v.float()), k


def one_line(e: pytest.ExceptionInfo) -> str:
    msg = str(e.value)
    assert "\n" not in msg and msg, msg
    return msg


def sample_images(tok, n: int = 1, seed: int = 0) -> torch.Tensor:
    s = tok.config.image_size
    return torch.rand(n, 3, s, s, generator=torch.Generator().manual_seed(seed))


def assert_rollout_shapes(tok, roll, n: int, iters: int | None = None) -> None:
    cfg = tok.config
    N, T, Cb = cfg.num_image_tokens, iters or cfg.num_iters, cfg.base.latent_channels
    assert len(roll.latents) == len(roll.codes) == len(roll.reconstructions) == T
    for i in range(T):
        L = cfg.tokens_per_iter * (i + 1)
        assert roll.latents[i].shape == (n, L, cfg.latent_dim)
        assert roll.codes[i].shape == (n, N, Cb)
        assert roll.reconstructions[i].shape == (n, 3, cfg.image_size, cfg.image_size)
        assert torch.isfinite(roll.reconstructions[i]).all()
        if cfg.quantize:
            assert roll.ids[i].shape == (n, L) and roll.ids[i].dtype == torch.long
        if cfg.base.kind == "vqgan":
            assert roll.logits[i].shape == (n, N, cfg.base.codebook_size)
    assert (roll.ids is None) == (not cfg.quantize)
    assert (roll.logits is None) == (cfg.base.kind == "vae")


# --- sizes inferred for every released variant (meta device: no memory, no time) -----------------
@pytest.mark.parametrize("name", sorted(RELEASED))
def test_released_layouts_infer_the_paper_configuration(name):
    shapes = manifest(name)
    ours, cfg = convert_state(meta_state(shapes))
    counts, built = COUNTS[name], COUNTS[name]["construction"]
    # the same architecture as our preset, behaving as the paper's code does
    assert cfg == alit.preset(RELEASED[name]).replace(halting="paper", unscale_vae_code=False)
    assert (cfg.encoder_width, cfg.encoder_depth, cfg.encoder_heads) == (built["width"], built["layers"],
                                                                         built["heads"])
    assert (cfg.decoder_width, cfg.decoder_depth, cfg.decoder_heads) == (built["width"], built["layers"],
                                                                         built["heads"])
    assert cfg.quantize == built["quantize_latent"] and cfg.factorize == built["factorize_latent"]
    assert (cfg.num_iters, cfg.tokens_per_iter) == (built["max_rollout_iters"], built["num_init_latent_tokens"])
    assert cfg.halting_threshold == built["dynamic_halting_threshold"]
    assert cfg.base.kind == ("vae" if "_vae_" in name else "vqgan")
    # exactly the non-gan_losses tensors are kept, and they are all the model's parameters
    assert len(ours) == counts["num_keys_without_gan_losses"]
    assert sum(v.numel() for v in ours.values()) == counts["parameters_without_gan_losses"]
    with torch.device("meta"):
        model = alit.AdaptiveTokenizer(cfg)
    assert sum(p.numel() for p in model.parameters()) == counts["parameters_without_gan_losses"]
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == \
        {k: tuple(v.shape) for k, v in ours.items()}


@pytest.mark.parametrize("name", sorted(RELEASED))
def test_key_tables_invert_exactly(name):
    """paper -> ours -> paper is the identity, so messages can name the paper's keys."""
    for k in manifest(name):
        new = map_alit_key(k)
        if new is None:
            assert k.startswith("gan_losses.")
        else:
            assert paper_key(new, "vae" if "_vae_" in name else "vqgan") == k


@pytest.mark.parametrize("name,base", [("base_vqgan_ckpt", MAGE_VQGAN), ("base_vae_kl16_ckpt", KL16_VAE)])
def test_base_layouts_infer_the_paper_base(name, base):
    ours, cfg = convert_state(meta_state(manifest(name)))
    assert cfg == base
    assert len(ours) == COUNTS[name]["num_keys"]
    assert sum(v.numel() for v in ours.values()) == COUNTS[name]["parameters"]


# --- every wrapping of the tiny reference weights ------------------------------------------------
LAYOUTS = {
    "training checkpoint": lambda ema, model: training_checkpoint(ema, model),
    "model and ema only": lambda ema, model: training_checkpoint(ema, model, extras=False),
    "ema only": lambda ema, model: {"ema": ema, "epoch": 3},
    "bare state dict": lambda ema, model: ema,
    "state_dict entry": lambda ema, model: {"state_dict": ema, "global_step": 10},
    "DistributedDataParallel prefix": lambda ema, model: {"ema": {f"module.{k}": v for k, v in ema.items()},
                                                          "model": model},
}


@pytest.mark.parametrize("with_gan", [True, False], ids=["with gan_losses", "without gan_losses"])
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_every_checkpoint_layout_converts_to_the_ema_weights(tmp_path, layout, with_gan):
    ema = tiny_state("vqgan")
    model = perturbed(ema, seed=1)
    if with_gan:
        ema, model = {**ema, **gan_losses()}, {**model, **gan_losses()}
    src = save_pth(LAYOUTS[layout](ema, model), tmp_path / "ckpt.pth")
    dst = convert(src, tmp_path / "out", heads=4)
    meta = json.loads((dst / "config.json").read_text())
    assert meta["type"] == "alit" and meta["config"]["encoder_heads"] == 4
    tok = alit.load(dst)
    assert isinstance(tok, alit.AdaptiveTokenizer) and not tok.training
    assert_same_tensors(tok.state_dict(), expected_ours(tiny_state("vqgan")))


def test_weights_model_and_ema_pick_their_own_tensors(tmp_path):
    ema = tiny_state("vqgan")
    model = perturbed(ema, seed=1)
    src = save_pth(training_checkpoint({**ema, **gan_losses()}, {**model, **gan_losses()}), tmp_path / "c.pth")
    from_ema = alit.load(convert(src, tmp_path / "ema", heads=4))
    from_model = alit.load(convert(src, tmp_path / "model", heads=4, weights="model"))
    assert_same_tensors(from_ema.state_dict(), expected_ours(ema))
    assert_same_tensors(from_model.state_dict(), expected_ours(model))
    assert "[model]" in json.loads((tmp_path / "model" / "config.json").read_text())["source"]


def test_weights_model_does_not_fall_back_to_ema(tmp_path):
    src = save_pth({"ema": tiny_state("vqgan"), "epoch": 1}, tmp_path / "c.pth")
    with pytest.raises(AlitError, match="only 'ema'; use --weights ema") as e:
        convert(src, tmp_path / "out", heads=4, weights="model")
    one_line(e)


@pytest.mark.parametrize("kind,quantize", [("vqgan", True), ("vqgan", False), ("vae", True), ("vae", False)])
def test_every_variant_converts_loads_and_runs(tmp_path, kind, quantize):
    state = tiny_state(kind)
    if quantize and "quantize.embedding.weight" not in state:
        state["quantize.embedding.weight"] = torch.nn.functional.normalize(torch.randn(128, 12), dim=1)
    if not quantize:
        state.pop("quantize.embedding.weight", None)
    src = save_pth(training_checkpoint(state, perturbed(state, 2)), tmp_path / "c.pth")
    tok = alit.load(convert(src, tmp_path / "out", heads=4))
    assert tok.config.quantize == quantize and tok.config.base.kind == kind
    assert tok.config.halting == "paper" and tok.config.unscale_vae_code is False
    with torch.no_grad():
        roll = tok.rollout(sample_images(tok, n=1), num_iters=2)  # all 8: the round trip and slow tests
    assert_rollout_shapes(tok, roll, n=1, iters=2)


def test_half_precision_weights_are_stored_as_float32(tmp_path):
    state = {k: v.half() for k, v in tiny_state("vqgan").items()}
    tok = alit.load(convert(save_pth({"ema": state}, tmp_path / "c.pth"), tmp_path / "out", heads=4))
    assert_same_tensors(tok.state_dict(), expected_ours(state))


# --- round trip: conversion gives the model the reference verifier checks ------------------------
def test_converted_model_reproduces_the_reference_outputs(tmp_path):
    from alit.verify import Case

    case = Case(TINY["vqgan"])
    src = save_pth(training_checkpoint({**tiny_state(), **gan_losses()}, perturbed(tiny_state(), 3)),
                   tmp_path / "released.pth")
    tok = alit.load(convert(src, tmp_path / "out", heads=4))
    assert tok.config == case.model.config
    x = case.images[:1]
    with torch.no_grad():
        ours, theirs = tok.rollout(x, halting="off"), case.model.rollout(x, halting="off")
    for i in range(tok.config.num_iters):
        assert torch.equal(ours.ids[i], theirs.ids[i])
        assert torch.equal(ours.latents[i], theirs.latents[i])
        assert torch.equal(ours.reconstructions[i], theirs.reconstructions[i])
    ref = reference_tensors(TINY["vqgan"] / "outputs.pt")
    assert torch.equal(ours.ids[-1], ref["iter7/quantizer_indices"][:1])
    torch.testing.assert_close(ours.reconstructions[-1], ref["iter7/reconstructed_imgs"][:1], atol=1e-4, rtol=1e-5)


def test_a_lone_safetensors_file_loads_from_its_embedded_config(tmp_path):
    dst = convert(save_pth(tiny_state(), tmp_path / "c.pth"), tmp_path / "out", heads=4)
    lone = tmp_path / "elsewhere" / "tiny.safetensors"
    lone.parent.mkdir()
    shutil.copy(dst / "model.safetensors", lone)
    a, b = alit.load(dst), alit.load(lone)
    assert a.config == b.config
    assert alit.load(dst / "model.safetensors").config == a.config
    assert alit.load(dst / "config.json").config == a.config


# --- base tokenizer checkpoints -------------------------------------------------------------------
@pytest.mark.parametrize("kind,wrap", [("vqgan", "top level"), ("vqgan", "state_dict"), ("vae", "model")])
def test_tiny_base_checkpoints_convert_to_a_base_folder(tmp_path, kind, wrap):
    prefix = f"base_tokenizer.{kind}."
    base = {k[len(prefix):]: v for k, v in tiny_state(kind).items() if k.startswith(prefix)}
    obj = base if wrap == "top level" else {wrap: base, "epoch": 1}
    if kind == "vae":  # the LDM checkpoints carry their training loss too; it is dropped
        obj[wrap]["loss.logvar"] = torch.zeros(())
    dst = convert(save_pth(obj, tmp_path / "base.ckpt"), tmp_path / "out", image_size=64)
    meta = json.loads((dst / "config.json").read_text())
    assert meta["type"] == "base" and meta["image_size"] == 64
    module = load_module(dst)
    assert not module.training
    got = module.state_dict()
    assert set(got) == {k for k in base if not k.startswith("loss.")}
    assert all(torch.equal(got[k], base[k]) for k in got)
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert module.decode(module.encode(x)).shape == x.shape
    with pytest.raises(AlitError, match="holds a base tokenizer, but an ALIT model is needed") as e:
        alit.load(dst)
    one_line(e)


@pytest.mark.parametrize("name,wrap", [("base_vqgan_ckpt", None), ("base_vae_kl16_ckpt", "model")])
def test_full_size_base_checkpoints_convert(tmp_path, name, wrap):
    """The released base tokenizers at their real size (54 M / 66 M parameters, a few seconds)."""
    state = cheap_state(manifest(name))  # real shapes; one value per tensor keeps this fast
    state = {k: v.contiguous() for k, v in state.items()}
    src = save_pth(state if wrap is None else {wrap: state}, tmp_path / "base.ckpt")
    dst = convert(src, tmp_path / "out")
    module = load_module(dst)
    assert sum(p.numel() for p in module.parameters()) == COUNTS[name]["parameters"]
    assert module.cfg == (MAGE_VQGAN if "vqgan" in name else KL16_VAE)


# --- files that would run code are refused, unread -----------------------------------------------
class RunsShell:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class WritesFile:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return builtins.exec, (f"open({self.marker!r}, 'w').write('pwned')",)


PAYLOADS = {"os.system": (RunsShell, "posix.system" if os.name == "posix" else "nt.system"),
            "builtins.exec": (WritesFile, "builtins.exec")}
WRITERS = {
    "torch.save": lambda obj, path: torch.save(obj, path),
    "torch.save legacy": lambda obj, path: torch.save(obj, path, _use_new_zipfile_serialization=False),
    "pickle protocol 2": lambda obj, path: path.write_bytes(pickle.dumps(obj, protocol=2)),
    "pickle protocol 5": lambda obj, path: path.write_bytes(pickle.dumps(obj, protocol=5)),
}


@pytest.mark.parametrize("writer", sorted(WRITERS))
@pytest.mark.parametrize("payload", sorted(PAYLOADS))
def test_a_pickle_that_would_run_code_is_refused(tmp_path, payload, writer):
    cls, imported = PAYLOADS[payload]
    marker = tmp_path / "MARKER"
    src = tmp_path / "evil.pth"
    WRITERS[writer]({"model": {"w": torch.zeros(2)}, "args": cls(marker)}, src)
    with pytest.raises(AlitError, match="refused: loading it would import") as e:
        read_checkpoint(src)
    assert imported in one_line(e)
    assert not marker.exists()
    with pytest.raises(AlitError):
        convert(src, tmp_path / "out")
    assert not marker.exists() and not (tmp_path / "out").exists()


def test_the_cli_refuses_code_in_one_line_and_exit_status_2(tmp_path):
    marker = tmp_path / "MARKER"
    src = tmp_path / "evil.pth"
    torch.save({"ema": tiny_state(), "args": RunsShell(marker)}, src)
    r = run_alit("convert", src, "--out", tmp_path / "out")
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("alit convert: error: ") and "posix.system" in lines[0]
    assert "Traceback" not in r.stderr and not marker.exists() and not (tmp_path / "out").exists()


def test_allowed_pickle_content_is_read(tmp_path):
    """The training scripts' `args` Namespace, optimizer and scaler state all load."""
    ckpt = training_checkpoint(tiny_state(), tiny_state())
    obj = read_checkpoint(save_pth(ckpt, tmp_path / "c.pth"))
    assert obj["args"].model == "alit_small" and obj["epoch"] == 3
    assert pick_state_dict(obj).keys() == ckpt["ema"].keys()


# --- wrong files: one line naming what is wrong --------------------------------------------------
def edited(change):
    state = tiny_state()
    change(state)
    return state


def _drop(key):
    return lambda s: s.pop(key)


def _set(key, value):
    return lambda s: s.__setitem__(key, value)


WRONG_STATES = {
    "missing key": (_drop("encoder_ln_post.weight"), r"1 missing: encoder_ln_post\.weight$"),
    "missing block key": (_drop("decoder.transformer.1.mlp.c_fc.bias"),
                          r"1 missing: decoder\.transformer\.1\.mlp\.c_fc\.bias$"),
    "missing base key": (_drop("base_tokenizer.vqgan.decoder.conv_out.bias"),
                         r"1 missing: base_tokenizer\.vqgan\.decoder\.conv_out\.bias$"),
    "unexpected key": (_set("encoder_ln_extra.weight", torch.ones(64)),
                       r"encoder_ln_extra\.weight is not part of the paper's ALIT layout"),
    "unexpected block key": (_set("encoder.transformer.0.attn.q_proj.weight", torch.ones(64, 64)),
                             r"encoder\.transformer\.0\.attn\.q_proj\.weight is not part"),
    "unexpected base key": (_set("base_tokenizer.vqgan.encoder.extra.weight", torch.ones(3)),
                            r"1 unexpected: base_tokenizer\.vqgan\.encoder\.extra\.weight"),
    "second base tokenizer": (_set("base_tokenizer.vae.quant_conv.weight", torch.ones(16, 16, 1, 1)),
                              "both 'base_tokenizer.vqgan.\\*' and 'base_tokenizer.vae.\\*'"),
    "mis-shaped tensor": (_set("encoder.transformer.1.attn.out_proj.weight", torch.ones(64, 32)),
                          r"1 mis-shaped: encoder\.transformer\.1\.attn\.out_proj\.weight \[64, 32\] "
                          r"\(expected \[64, 64\]\)"),
    "mis-shaped codebook": (_set("quantize.embedding.weight", torch.ones(128, 10)),
                            r"1 mis-shaped: quantize\.embedding\.weight \[128, 10\] \(expected \[128, 12\]\)"),
    "size-giving tensor of wrong rank": (_set("encoder_positional_embedding", torch.ones(17 * 64)),
                                         r"encoder_positional_embedding has shape \[1088\], expected 2"),
    "not a square grid": (_set("encoder_positional_embedding", torch.ones(16, 64)),
                          "15 image positions, not a square grid"),
    "integer weights": (_set("encoder_ln_pre.weight", torch.ones(64, dtype=torch.int64)),
                        "encoder_ln_pre.weight holds int64 values, expected float32"),
    "no base tokenizer": (lambda s: [s.pop(k) for k in list(s) if k.startswith("base_tokenizer.")],
                          "missing the base tokenizer weights"),
}


@pytest.mark.parametrize("what", sorted(WRONG_STATES))
def test_wrong_weights_are_named_in_one_line(tmp_path, what):
    change, pattern = WRONG_STATES[what]
    src = save_pth({"ema": edited(change), "epoch": 1}, tmp_path / "c.pth")
    with pytest.raises(AlitError, match=pattern) as e:
        convert(src, tmp_path / "out", heads=4)
    one_line(e)
    assert not (tmp_path / "out").exists()


def test_unknown_heads_ask_for_heads(tmp_path):
    src = save_pth(tiny_state(), tmp_path / "c.pth")
    with pytest.raises(AlitError, match=r"width 64, depth 2 \(not a paper preset\); pass --heads N") as e:
        convert(src, tmp_path / "out")
    one_line(e)
    with pytest.raises(AlitError, match="5 heads do not divide the encoder width 64"):
        convert(src, tmp_path / "out", heads=5)
    with pytest.raises(AlitError, match="--heads must be a positive number"):
        convert(src, tmp_path / "out", heads=0)


def _png(path):
    from PIL import Image

    Image.new("RGB", (8, 8), (200, 10, 10)).save(path, format="PNG")


def _truncated(path):
    torch.save({"ema": tiny_state()}, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


WRONG_FILES = {
    "random bytes": (lambda p: p.write_bytes(torch.randint(0, 256, (4096,), generator=torch.Generator()
                                                           .manual_seed(0), dtype=torch.uint8).numpy().tobytes()),
                     "not a readable PyTorch checkpoint"),
    "PNG image": (_png, r"not a PyTorch checkpoint \(it is a PNG image\)"),
    "truncated checkpoint": (_truncated, "truncated, damaged or of another kind"),
    "truncated legacy checkpoint": (
        lambda p: (torch.save({"ema": tiny_state()}, p, _use_new_zipfile_serialization=False),
                   p.write_bytes(p.read_bytes()[:100_000])),
        "truncated, damaged or of another kind"),
    "empty file": (lambda p: p.write_bytes(b""), "the file is empty"),
    "JSON file": (lambda p: p.write_text('{"ema": 1}'), "it is a JSON / text file"),
    "a list": (lambda p: torch.save([torch.zeros(1)], p), "expected a dict of tensors, found list"),
    "no weights inside": (lambda p: torch.save({"epoch": 3, "optimizer": {"state": {}}}, p),
                          r"no state dict found: the file has entries \['epoch', 'optimizer'\]"),
    "ema is not a state dict": (lambda p: torch.save({"ema": {"decay": 0.999}, "model": tiny_state()}, p),
                                "'ema' entry is not a state dict of tensors"),
    "unrelated weights": (lambda p: torch.save({"fc.weight": torch.zeros(2, 2)}, p),
                          "unrecognised weights: neither an ALIT model nor a VQGAN / KL-VAE"),
}


@pytest.mark.parametrize("what", sorted(WRONG_FILES))
def test_wrong_files_are_named_in_one_line(tmp_path, what):
    make, pattern = WRONG_FILES[what]
    src = tmp_path / "file.pth"
    make(src)
    with pytest.raises(AlitError, match=pattern) as e:
        convert(src, tmp_path / "out", heads=4)
    one_line(e)
    assert not (tmp_path / "out").exists()


def test_wrong_source_and_destination_paths(tmp_path):
    with pytest.raises(AlitError, match="no such checkpoint file"):
        convert(tmp_path / "nope.pth", tmp_path / "out")
    with pytest.raises(AlitError, match="is a folder; give the checkpoint file"):
        convert(tmp_path, tmp_path / "out")
    src = save_pth(tiny_state(), tmp_path / "c.pth")
    (tmp_path / "taken").write_text("x")
    with pytest.raises(AlitError, match="exists and is not a folder") as e:
        convert(src, tmp_path / "taken", heads=4)
    one_line(e)
    dst = convert(src, tmp_path / "out", heads=4)
    with pytest.raises(AlitError, match="already converted: load it with alit.load"):
        convert(dst, tmp_path / "again")
    convert(src, dst, heads=4)  # converting again into the same folder replaces it
    assert sorted(p.name for p in dst.iterdir()) == ["config.json", "model.safetensors"]


def test_wrong_folders_for_load_are_named_in_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(AlitError, match="not an alit checkpoint \\(no config.json\\)") as e:
        alit.load(tmp_path / "empty")
    one_line(e)
    src = save_pth(tiny_state(), tmp_path / "empty" / "released.pth")
    with pytest.raises(AlitError, match="convert them with `alit convert SRC --out DIR`"):
        alit.load(tmp_path / "empty")
    with pytest.raises(AlitError, match="convert them with `alit convert .*released.pth --out DIR`"):
        alit.load(src)
    with pytest.raises(AlitError, match="no such checkpoint"):
        alit.load(tmp_path / "missing")

    dst = convert(src, tmp_path / "out", heads=4)
    weights = (dst / "model.safetensors").read_bytes()
    (dst / "model.safetensors").write_bytes(weights[: len(weights) // 2])
    with pytest.raises(AlitError, match="unreadable safetensors file, truncated or damaged") as e:
        alit.load(dst)
    one_line(e)
    (dst / "model.safetensors").write_bytes(weights)
    config = (dst / "config.json").read_text()
    (dst / "config.json").write_text(config[:40])
    with pytest.raises(AlitError, match="not valid JSON"):
        alit.load(dst)
    (dst / "config.json").write_text(config.replace('"encoder_width"', '"encoder_widht"'))
    with pytest.raises(AlitError, match="invalid config .*encoder_widht") as e:
        alit.load(dst)
    one_line(e)
    (dst / "config.json").write_text(config.replace('"decoder_depth": 2', '"decoder_depth": 3'))
    with pytest.raises(AlitError, match="missing: decoder.blocks.2"):
        alit.load(dst)


def test_the_cli_reports_wrong_weights_in_one_line(tmp_path):
    src = save_pth({"ema": tiny_state()}, tmp_path / "c.pth")
    r = run_alit("convert", src, "--out", tmp_path / "out")
    assert r.returncode == 2 and not (tmp_path / "out").exists()
    assert r.stderr.strip().splitlines() == [
        "alit convert: error: cannot infer the number of attention heads for width 64, depth 2 "
        "(not a paper preset); pass --heads N"]


# --- the full-size release --------------------------------------------------------------------------
@pytest.mark.slow
def test_full_size_alit_small_converts_loads_and_runs(tmp_path):
    name = "alit_small_vqgan_quantized"
    shapes = manifest(name)
    keep = {k: s for k, s in shapes.items() if not k.startswith("gan_losses.")}
    gan = cheap_state({k: s for k, s in shapes.items() if k.startswith("gan_losses.")})
    ema, model = random_state(keep, seed=0), random_state(keep, seed=1)
    src = save_pth(training_checkpoint({**ema, **gan}, {**model, **gan}), tmp_path / "alit_small.pth")
    del model

    tok = alit.load(convert(src, tmp_path / "ema"))
    assert tok.config == alit.preset("small").replace(halting="paper", unscale_vae_code=False)
    assert sum(p.numel() for p in tok.parameters()) == COUNTS[name]["parameters_without_gan_losses"]
    assert_same_tensors(tok.state_dict(), expected_ours(ema))
    x = sample_images(tok, n=1)
    with torch.no_grad():
        roll = tok.rollout(x)
    assert_rollout_shapes(tok, roll, n=1)
    assert roll.latents[-1].shape == (1, 256, 12) and roll.logits[0].shape == (1, 256, 1024)
    assert roll.codes[0].shape == (1, 256, 256) and roll.reconstructions[0].shape == (1, 3, 256, 256)

    other = alit.load(convert(src, tmp_path / "model", weights="model"))
    mine = tok.state_dict()
    for k, v in other.state_dict().items():
        assert not torch.equal(v, mine[k]), k
