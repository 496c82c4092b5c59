"""alit visualize: the decoder re-run that exposes attention weights, and the pages it draws."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import alit
from alit.cli import main
from alit.eval.visualize import decoder_attention, default_layer, token_maps
from test_eval_support import make_checkpoint, one_thread, write_images  # noqa: F401 (one_thread: autouse)


@pytest.mark.parametrize("variant", ["tiny", "tiny-vae-continuous"])
def test_rerun_reproduces_the_decoder_exactly(variant):
    torch.manual_seed(0)
    tok = alit.build(variant)
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        roll = tok.rollout(x, pixels=False)
        for latents in (roll.latents[0], roll.latents[-1]):
            out, weights = decoder_attention(tok.decoder, latents)
            assert torch.equal(out, tok.decoder(latents))  # bit for bit
            S = 1 + tok.config.num_image_tokens + latents.shape[1]
            assert len(weights) == tok.config.decoder_depth
            assert weights[0].shape == (2, tok.config.decoder_heads, S, S)
            torch.testing.assert_close(weights[-1].sum(-1), torch.ones(2, tok.config.decoder_heads, S))


def test_weights_are_the_ones_the_attention_applies():
    torch.manual_seed(0)
    tok = alit.build("tiny")
    block = tok.decoder.blocks[0]
    h = torch.randn(1, 10, tok.config.decoder_width)
    B, S, D = h.shape
    heads = block.attn.heads
    q, k, v = block.attn.qkv(h).view(B, S, 3, heads, D // heads).permute(2, 0, 3, 1, 4)
    w = torch.softmax(q @ k.transpose(-2, -1) / (D // heads) ** 0.5, -1)
    torch.testing.assert_close(block.attn.proj((w @ v).transpose(1, 2).reshape(B, S, D)), block.attn(h))


def _block_by_block(decoder, latents):
    """An independent re-run of the decoder's documented computation (DESIGN 1.2, step 4), every
    query row in every block, with explicit softmax attention: (output, per block weights)."""
    B, L, _ = latents.shape
    N = decoder.num_image_tokens
    x = decoder.ln_pre(torch.cat([decoder.queries(B), decoder.from_latent(latents) + decoder.latent_pos[:L]], 1))
    weights = []
    for block in decoder.blocks:
        h = block.ln1(x)
        S, D, heads = h.shape[1], h.shape[2], block.attn.heads
        q, k, v = block.attn.qkv(h).view(B, S, 3, heads, D // heads).permute(2, 0, 3, 1, 4)
        w = torch.softmax(q @ k.transpose(-2, -1) / (D // heads) ** 0.5, -1)  # [B, heads, S, S]
        weights.append(w)
        x = x + block.attn.proj((w @ v).transpose(1, 2).reshape(B, S, D))
        x = x + block.mlp(block.ln2(x))
    return decoder.head(decoder.ln_post(x[:, 1:1 + N])), weights


def test_weights_match_an_independent_block_by_block_rerun():
    torch.manual_seed(0)
    tok = alit.build("tiny")
    latents = torch.randn(2, 16, tok.config.latent_dim)
    with torch.no_grad():
        out, weights = decoder_attention(tok.decoder, latents)
        again, expected = _block_by_block(tok.decoder, latents)
    torch.testing.assert_close(again, out, rtol=1e-4, atol=1e-5)
    for w, e in zip(weights, expected):
        torch.testing.assert_close(w, e, rtol=1e-4, atol=1e-6)


def test_a_changed_attention_fails_loudly(monkeypatch):
    torch.manual_seed(0)
    tok = alit.build("tiny")
    latents = torch.randn(1, 8, tok.config.latent_dim)
    attn = tok.decoder.blocks[0].attn

    def other_scale(x, rows=None):  # an attention whose weights are not softmax(q k^T / sqrt(d))
        B, S, D = x.shape
        q, k, v = attn.qkv(x).view(B, S, 3, attn.heads, D // attn.heads).permute(2, 0, 3, 1, 4)
        y = torch.nn.functional.scaled_dot_product_attention(q, k, v, scale=1.0)
        return attn.proj(y.transpose(1, 2).reshape(B, S, D))

    monkeypatch.setattr(attn, "forward", other_scale)
    with pytest.raises(RuntimeError, match="do not reproduce"):
        decoder_attention(tok.decoder, latents)


def test_token_maps_and_default_layer():
    assert default_layer(8) == 6 and default_layer(2) == 1 and default_layer(12) == 9
    torch.manual_seed(0)
    tok = alit.build("tiny")
    image = torch.rand(3, 64, 64)
    r = token_maps(tok, image)
    G = tok.config.grid_size
    assert r["layer"] == 1 and r["lengths"] == tok.config.lengths
    assert [m.shape for m in r["maps"]] == [(L, G, G) for L in tok.config.lengths]
    # the maps are columns of the chosen block's head-averaged attention
    with torch.no_grad():
        latents = tok.rollout(image[None]).latents[2]
        _, weights = decoder_attention(tok.decoder, latents)
    N = tok.config.num_image_tokens
    expected = weights[1][0].mean(0)[1:1 + N, 1 + N:].T.reshape(-1, G, G)
    torch.testing.assert_close(r["maps"][2], expected)
    assert token_maps(tok, image, "mean")["maps"][0].shape == (8, G, G)


def test_visualize_cli(tmp_path, capsys):
    ckpt = make_checkpoint(tmp_path / "ckpt")
    image = write_images(tmp_path / "images", n=2)[1]
    out = tmp_path / "vis"
    assert main(["visualize", str(image), "--checkpoint", str(ckpt), "--out", str(out), "--layer", "0"]) == 0
    assert "decoder block 0" in capsys.readouterr().out
    info = json.loads((out / "visualize.json").read_text())
    assert info["layer"] == 0 and info["lengths"] == list(range(8, 65, 8))
    for t in range(8):
        for kind in ("attention", "assignment", "reconstruction"):
            assert (out / f"iter{t}_{kind}.png").is_file()
    maps = np.load(out / "attention.npz")
    assert maps["iter7"].shape == (64, 8, 8)
    assert main(["visualize", str(image), "--checkpoint", str(ckpt), "--out", str(out), "--layer", "5"]) == 2
    assert "--layer must be a block index in 0..1" in capsys.readouterr().err
