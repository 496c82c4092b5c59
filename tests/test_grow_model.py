"""benchmarks/grow_model.py: deeper stacks whose new blocks start as identities, and can learn."""
from __future__ import annotations

import torch

import alit
from alit.weights import save
from conftest import load_script


def test_grown_model_computes_the_same_and_its_new_blocks_learn(tmp_path, capsys):
    torch.manual_seed(0)
    tok = alit.build("tiny", image_size=16, num_iters=2, encoder_depth=1, decoder_depth=1)
    save(tok.state_dict(), tok.config, tmp_path / "small")
    load_script("grow_model").main([str(tmp_path / "small"), "--decoder-depth", "3", "--encoder-depth", "2",
                    "--out", str(tmp_path / "grown")])
    assert "same outputs" in capsys.readouterr().out
    grown = alit.load(tmp_path / "grown")
    assert (grown.config.encoder_depth, grown.config.decoder_depth) == (2, 3)
    images = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        before, after = tok.rollout(images, "off"), grown.rollout(images, "off")
    for a, b in zip(before.codes + before.reconstructions, after.codes + after.reconstructions):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)  # fp32 rounding differs between CPUs' kernels (4.9e-6 seen)
    grown.train()
    roll = grown.rollout(images, "off", pixels=False)
    sum(((c - roll.targets.codes) ** 2).mean() for c in roll.codes).backward()
    for name in ("encoder.blocks.1.attn.proj.weight", "decoder.blocks.2.mlp.proj.weight"):
        assert grown.get_parameter(name).grad.abs().sum() > 0, name  # zero now, not stuck at zero
