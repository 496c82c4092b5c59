"""Base tokenizers: numerical match with the official reference vectors (tiny configs), exact
checkpoint key layout at full size, and gradients reaching every parameter."""
from __future__ import annotations

import json

import pytest
import torch

from alit.base import KLVAE, VQGAN, build_base, check_images
from alit.config import BaseConfig

from conftest import REFERENCE, reference_tensors

CASES = {"vqgan": ("vqgan_quantized_tiny", "base_tokenizer.vqgan."),
         "vae": ("vae_continuous_tiny", "base_tokenizer.vae.")}

needs_reference = pytest.mark.skipif(not REFERENCE.is_dir(), reason=f"no reference vectors at {REFERENCE}")


def reference_base_config(base_tokenizer: dict) -> tuple[BaseConfig, int]:
    """The `base_tokenizer` section of a reference config.json -> (BaseConfig, image size)."""
    if base_tokenizer["id"] == "vqgan":
        vq = base_tokenizer["vqgan_config"]
        dd = vq["ddconfig"]
        assert vq["embed_dim"] == dd["z_channels"], "MAGE VQGAN has no quant_conv: code size = z_channels"
        cfg = BaseConfig(kind="vqgan", channels=dd["ch"], channel_mult=tuple(dd["ch_mult"]),
                         num_res_blocks=dd["num_res_blocks"], latent_channels=dd["z_channels"],
                         codebook_size=vq["n_embed"])
        return cfg, dd["resolution"]
    enc, dec = base_tokenizer["enc_kwargs"], base_tokenizer["dec_kwargs"]
    cfg = BaseConfig(kind="vae", channels=enc["ch"], channel_mult=tuple(base_tokenizer["ch_mult"]),
                     num_res_blocks=enc["num_res_blocks"], latent_channels=base_tokenizer["embed_dim"],
                     attn_resolutions=tuple(enc["attn_resolutions"]), decoder_channels=dec["ch"],
                     decoder_num_res_blocks=dec["num_res_blocks"])
    return cfg, enc["resolution"]


def load_case(kind: str):
    """(model with the reference weights in eval mode, images, reference outputs) for one case."""
    folder, prefix = CASES[kind]
    case = REFERENCE / folder
    cfg, image_size = reference_base_config(json.loads((case / "config.json").read_text())["base_tokenizer"])
    assert image_size == 64
    state = reference_tensors(case / "state_dict.pt")
    state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    model = build_base(cfg, image_size).eval()
    model.load_state_dict(state, strict=True)
    images = reference_tensors(case / "inputs.pt")["images"]  # [3, 3, 64, 64]
    outputs = reference_tensors(case / "outputs.pt")
    return model, images, outputs


def close(actual, expected, atol, rtol=1e-5):
    torch.testing.assert_close(actual, expected, atol=atol, rtol=rtol)


@needs_reference
@torch.no_grad()
def test_vqgan_matches_reference():
    model, images, ref = load_case("vqgan")
    assert isinstance(model, VQGAN)
    h = model.encode(images)  # [B, C, G, G]
    close(h, ref["base/encoder_out_h"], atol=1e-5)
    ids = model.quantize_ids(h)  # [B, G*G]
    assert ids.dtype == torch.long
    assert torch.equal(ids, ref["base/gt_indices"])
    B, C, G, _ = h.shape
    codes = model.codebook[ids].view(B, G, G, C).permute(0, 3, 1, 2)  # [B, C, G, G]
    close(model.decode(codes), ref["base/decode_codebook_gt"], atol=1e-4)


@needs_reference
@torch.no_grad()
def test_vae_matches_reference():
    model, images, ref = load_case("vae")
    assert isinstance(model, KLVAE)
    mean, logvar = model.moments(images)  # [B, e, G, G] each
    close(mean, ref["base/posterior_mean"], atol=1e-5)
    close(logvar, ref["base/posterior_logvar_clamped"], atol=1e-5)
    latents = model.encode(images)
    close(latents, ref["base/gt_latent_scaled"], atol=1e-5)
    close(model.decode(latents), ref["base/decode_gt_latent_scaled"], atol=1e-4)
    close(model.decode(mean), ref["base/decode_posterior_mean"], atol=1e-4)


def manifest(name: str) -> dict[str, list[int]]:
    return json.loads((REFERENCE / "official_checkpoint_keys" / name).read_text())


@needs_reference
@pytest.mark.parametrize("cfg, name", [
    (BaseConfig(), "base_vqgan_ckpt.json"),
    (BaseConfig(kind="vae", latent_channels=16, attn_resolutions=(16,)), "base_vae_kl16_ckpt.json"),
])
def test_full_size_matches_official_checkpoint_keys(cfg, name):
    with torch.device("meta"):  # shapes only: no memory, no init cost
        model = build_base(cfg, 256)
    ours = {k: list(v.shape) for k, v in model.state_dict().items()}
    official = manifest(name)
    assert set(ours) == set(official), (sorted(set(ours) - set(official)), sorted(set(official) - set(ours)))
    assert ours == official
    assert list(ours) == list(official)  # the same order, too


def tiny(kind: str, **changes) -> BaseConfig:
    """Two levels of width 32 and 64 (f = 2), 8 latent channels; the VAE attends at 16 px (level 1
    of a 32 px input)."""
    fields = dict(kind=kind, channels=32, channel_mult=(1, 2), num_res_blocks=1, latent_channels=8,
                  codebook_size=16, attn_resolutions=(16,) if kind == "vae" else ())
    return BaseConfig(**(fields | changes))


def assert_all_grads(model: torch.nn.Module):
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, f"no gradient reaches {missing}"


def test_vqgan_gradient_reaches_every_parameter():
    torch.manual_seed(0)
    model = VQGAN(tiny("vqgan"), 32)
    images = torch.rand(2, 3, 32, 32)
    h = model.encode(images)  # [2, 8, 16, 16]
    ids = model.quantize_ids(h)  # [2, 256]
    assert ids.shape == (2, 256)
    codes = model.codebook[ids].view(2, 16, 16, 8).permute(0, 3, 1, 2)  # [2, 8, 16, 16]
    # decode h for the encoder and decoder, the code distance for the codebook
    loss = model.decode(h).square().mean() + (codes - h).square().mean()
    loss.backward()
    assert_all_grads(model)


def test_vae_gradient_reaches_every_parameter():
    torch.manual_seed(0)
    # a posterior sample makes the log-variance half of quant_conv matter as well
    model = KLVAE(tiny("vae", sample_posterior=True), 32)
    assert len(model.encoder.down[0].attn) == 0 and len(model.encoder.down[1].attn) == 1
    images = torch.rand(2, 3, 32, 32)
    latents = model.encode(images, generator=torch.Generator().manual_seed(0))  # [2, 8, 16, 16]
    assert latents.shape == (2, 8, 16, 16)
    model.decode(latents).square().mean().backward()
    assert_all_grads(model)


def test_vae_posterior_sampling_follows_config_and_generator():
    torch.manual_seed(0)
    images = torch.rand(1, 3, 32, 32)
    model = KLVAE(tiny("vae"), 32).eval()
    mean, _ = model.moments(images)
    torch.testing.assert_close(model.encode(images), mean * 0.2325)
    sampled = KLVAE(tiny("vae", sample_posterior=True), 32).eval()
    sampled.load_state_dict(model.state_dict())
    a = sampled.encode(images, generator=torch.Generator().manual_seed(1))
    b = sampled.encode(images, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and not torch.allclose(a, mean * 0.2325)


def test_quantize_ids_takes_first_index_on_ties_and_row_major_grid():
    model = VQGAN(tiny("vqgan", codebook_size=4), 32)
    with torch.no_grad():
        model.quantize.embedding.weight.copy_(torch.eye(4, 8)[[0, 1, 1, 2]])  # rows 1 and 2 equal
    h = torch.zeros(1, 8, 2, 2)
    h[0, 1, 0, 1] = 1.0  # grid cell (0, 1) -> row 1 (tie with row 2)
    h[0, 2, 1, 0] = 1.0  # grid cell (1, 0) -> row 3
    h[0, 0, 1, 1] = 1.0  # grid cell (1, 1) -> row 0
    # cell (0, 0) is zero: equally far from every row -> 0
    assert model.quantize_ids(h).tolist() == [[0, 1, 3, 0]]


def test_build_base_and_input_checks():
    assert isinstance(build_base(tiny("vqgan"), 32), VQGAN)
    assert isinstance(build_base(tiny("vae"), 32), KLVAE)
    model = build_base(tiny("vqgan"), 32)
    with pytest.raises(ValueError, match="multiple"):
        model.encode(torch.rand(1, 3, 33, 33))
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        model.encode(torch.rand(1, 1, 32, 32))
    with pytest.raises(ValueError, match="float"):
        model.encode(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))
    with pytest.raises(ValueError, match="empty"):
        model.encode(torch.rand(0, 3, 32, 32))
    with pytest.raises(ValueError, match="codes"):
        model.decode(torch.rand(1, 4, 2, 2))


def test_one_image_check_serves_the_base_and_the_model():
    from alit.model import alit as model_module

    assert model_module.check_images is check_images
    check_images(torch.rand(1, 3, 32, 32), size=32, multiple=8)
    over = torch.rand(1, 3, 32, 32) + 1
    check_images(over, multiple=8, values=False)  # the base encoders skip the value scan (a device sync)
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        check_images(over, multiple=8)
    with pytest.raises(ValueError, match=r"shape \[B, 3, 64, 64\]"):
        check_images(over, size=64)
