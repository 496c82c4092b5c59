"""The ALIT architecture on tiny configs: shapes, gradients, halting, configs, save/load."""
import json

import pytest
import torch

import alit
from alit.config import BaseConfig, ModelConfig
from alit.losses import distill_loss
from alit.model.halting import Halting
from alit.weights import save

from conftest import REFERENCE

VARIANTS = [("vqgan", True), ("vqgan", False), ("vae", True), ("vae", False)]


def images(tok, n=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    s = tok.config.image_size
    return torch.rand(n, 3, s, s, generator=g)


@pytest.mark.parametrize("base,quantize", VARIANTS)
def test_rollout_fields_have_the_contract_shapes(base, quantize):
    tok = alit.build("tiny", base=base, quantize=quantize)
    cfg = tok.config
    x = images(tok)
    with torch.no_grad():
        roll = tok.rollout(x)
    N, T = cfg.num_image_tokens, cfg.num_iters
    assert len(roll.latents) == len(roll.codes) == len(roll.reconstructions) == T
    assert roll.lengths == cfg.lengths == [8 * (i + 1) for i in range(T)]
    cb = cfg.base.latent_channels
    for i in range(T):
        L = cfg.tokens_per_iter * (i + 1)
        assert roll.latents[i].shape == (2, L, cfg.latent_dim)
        assert roll.codes[i].shape == (2, N, cb)
        assert roll.reconstructions[i].shape == x.shape
        if quantize:
            assert roll.ids[i].shape == (2, L) and roll.ids[i].dtype == torch.long
            assert int(roll.ids[i].max()) < cfg.codebook_size
        if base == "vqgan":
            assert roll.logits[i].shape == (2, N, cfg.base.codebook_size)
    assert (roll.ids is None) == (not quantize)
    assert (roll.logits is None) == (base == "vae")


def test_each_iteration_reencodes_all_latents():
    """The code of length 2 L0 is not the code of length L0 plus more tokens."""
    tok = alit.build("tiny")
    with torch.no_grad():
        roll = tok.rollout(images(tok), pixels=False)
    first, second = roll.latents[0], roll.latents[1][:, :8]
    assert not torch.allclose(first, second)


def test_quantised_latents_are_codebook_rows():
    tok = alit.build("tiny")
    with torch.no_grad():
        roll = tok.rollout(images(tok), pixels=False)
    rows = tok.latents_from_ids(roll.ids[3])
    torch.testing.assert_close(roll.latents[3], rows, atol=1e-6, rtol=0)


def test_num_iters_runs_a_prefix_of_the_rollout():
    tok = alit.build("tiny")
    x = images(tok)
    with torch.no_grad():
        full = tok.rollout(x, pixels=False)
        part = tok.rollout(x, num_iters=3, pixels=False)
    assert len(part.latents) == 3
    for i in range(3):
        assert torch.equal(part.ids[i], full.ids[i])
    with pytest.raises(ValueError, match="num_iters"):
        tok.rollout(x, num_iters=9)


@pytest.mark.parametrize("base", ["vqgan", "vae"])
def test_distill_gradients_reach_every_trainable_parameter(base):
    # a threshold every token passes: halting masks image tokens, so the mask token trains too
    tok = alit.build("tiny", base=base, halting="threshold",
                     halting_threshold=0.0 if base == "vqgan" else 1e9).train()
    tok.base.requires_grad_(False)
    loss = distill_loss(tok.rollout(images(tok), pixels=False))
    loss.total.backward()
    missing = [n for n, p in tok.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.any())]
    assert missing == []
    assert all(p.grad is None for p in tok.base.parameters())
    assert torch.isfinite(loss.total)


def test_halting_off_threshold_paper_vqgan():
    tok = alit.build("tiny", halting_threshold=0.0)
    x = images(tok)
    with torch.no_grad():
        off = tok.rollout(x, "off", pixels=False)
        thr = tok.rollout(x, "threshold", pixels=False)
        paper1 = tok.rollout(x, "paper", pixels=False)
        paper2 = tok.rollout(x, "paper", pixels=False)
    # halting acts between iterations: iteration 0 is untouched, later ones change
    assert torch.equal(off.codes[0], thr.codes[0])
    assert not torch.allclose(off.codes[1], thr.codes[1])
    assert all(h is None for h in off.halted)
    assert thr.halted[0].all()  # threshold 0: every token halts
    # the paper's stochastic halting is reproducible: same call, same result
    for a, b in zip(paper1.latents, paper2.latents):
        assert torch.equal(a, b)
    assert 0 < paper1.halted[0].float().mean() < 1


def test_injected_draws_decide_paper_halting():
    tok = alit.build("tiny", halting_threshold=0.0)
    x = images(tok)
    N, T = tok.config.num_image_tokens, tok.config.num_iters
    none = [torch.zeros(2, N) for _ in range(T)]
    every = [torch.ones(2, N) for _ in range(T)]
    with torch.no_grad():
        off = tok.rollout(x, "off", pixels=False)
        r_none = tok.rollout(x, Halting("paper", 0.0, draws=none), pixels=False)
        r_every = tok.rollout(x, Halting("paper", 0.0, draws=every), pixels=False)
        thr = tok.rollout(x, "threshold", pixels=False)
    assert torch.equal(r_none.codes[-1], off.codes[-1])
    assert torch.equal(r_every.codes[-1], thr.codes[-1])
    with pytest.raises(ValueError, match="draws"):
        tok.rollout(x, Halting("paper", 0.0, draws=none[:2]), pixels=False)


def test_vae_paper_halting_is_a_no_op_and_threshold_is_not():
    tok = alit.build("tiny", base="vae", halting_threshold=1e9)
    x = images(tok)
    with torch.no_grad():
        off = tok.rollout(x, "off", pixels=False)
        paper = tok.rollout(x, "paper", pixels=False)
        thr = tok.rollout(x, "threshold", pixels=False)
    assert torch.equal(off.codes[-1], paper.codes[-1])
    assert not torch.allclose(off.codes[-1], thr.codes[-1])


def test_vae_code_is_unscaled_before_decoding_unless_paper_behaviour():
    tok = alit.build("tiny", base="vae")
    paper = alit.build(tok.config.replace(unscale_vae_code=False))
    paper.load_state_dict(tok.state_dict())
    codes = torch.randn(1, tok.config.num_image_tokens, tok.config.base.latent_channels)
    with torch.no_grad():
        ours = tok.codes_to_images(codes)
        theirs = paper.codes_to_images(codes / tok.config.base.scale_factor)
    torch.testing.assert_close(ours, theirs)


def test_varied_configuration_fields_build_and_run():
    """Every size in a reference config.json is configuration: widths, depths, heads, L0, T, d, K, base."""
    cfg = ModelConfig(
        image_size=32, patch_size=4, encoder_width=96, encoder_depth=3, encoder_heads=3,
        decoder_width=64, decoder_depth=1, decoder_heads=2, tokens_per_iter=5, num_iters=3,
        latent_dim=6, codebook_size=37, max_latent_positions=20,
        base=BaseConfig(kind="vqgan", channels=32, channel_mult=(1, 2, 1), num_res_blocks=2,
                        latent_channels=64, codebook_size=7))
    tok = alit.build(cfg)
    with torch.no_grad():
        roll = tok.rollout(torch.rand(3, 3, 32, 32))
    assert roll.lengths == [5, 10, 15]
    assert roll.logits[2].shape == (3, 64, 7)
    assert roll.reconstructions[2].shape == (3, 3, 32, 32)
    vae = alit.build(cfg.replace(quantize=False, factorize=False, decoder_width=96, decoder_heads=4,
                                 base=BaseConfig(kind="vae", channels=32, channel_mult=(1, 1, 2),
                                                 latent_channels=4, attn_resolutions=(8,))))
    with torch.no_grad():
        roll = vae.rollout(torch.rand(1, 3, 32, 32))
    assert roll.latents[0].shape == (1, 5, 96)  # unfactorised: the encoder width


@pytest.mark.parametrize("name,key", [("small", "alit_small_vqgan_quantized"),
                                      ("small-vqgan-continuous", "alit_small_vqgan_continuous"),
                                      ("base", "alit_base_vqgan_quantized"),
                                      ("semilarge", "alit_semilarge_vqgan_quantized"),
                                      ("small-vae-quantized", "alit_small_vae_quantized"),
                                      ("small-vae-continuous", "alit_small_vae_continuous")])
def test_presets_have_the_paper_parameter_counts(name, key):
    counts = json.loads((REFERENCE / "official_checkpoint_keys" / "param_counts.json").read_text())
    with torch.device("meta"):
        tok = alit.AdaptiveTokenizer(alit.preset(name))
    total = sum(p.numel() for p in tok.parameters())
    assert total == counts[key]["parameters_without_gan_losses"]


def test_config_round_trip_and_unknown_fields():
    cfg = alit.preset("tiny", base="vae")
    assert ModelConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ValueError, match="unknown ModelConfig field"):
        ModelConfig.from_dict({**cfg.to_dict(), "widht": 3})
    with pytest.raises(ValueError, match="patch_size"):
        ModelConfig(image_size=64, patch_size=16, base=alit.presets.TINY_VQGAN)
    with pytest.raises(ValueError, match="decoder_width == encoder_width"):
        cfg.replace(quantize=False, factorize=False, decoder_width=64)
    with pytest.raises(ValueError, match="divisible"):
        cfg.replace(encoder_heads=3)
    with pytest.raises(ValueError, match="unknown preset"):
        alit.build("huge")


def test_save_load_gives_identical_outputs(tmp_path):
    tok = alit.build("tiny")
    save(tok.state_dict(), tok.config, tmp_path / "ckpt")
    back = alit.load(tmp_path / "ckpt")
    assert back.config == tok.config and not back.training
    x = images(tok)
    with torch.no_grad():
        a, b = tok.rollout(x), back.rollout(x)
    assert torch.equal(a.reconstructions[-1], b.reconstructions[-1])
    assert torch.equal(a.ids[-1], b.ids[-1])


@pytest.mark.parametrize("bad,match", [
    (torch.rand(2, 3, 32, 32), r"shape \[B, 3, 64, 64\]"),
    (torch.rand(2, 1, 64, 64), r"shape \[B, 3, 64, 64\]"),
    (torch.randint(0, 255, (1, 3, 64, 64), dtype=torch.uint8), "float"),
    (torch.rand(1, 3, 64, 64) * 255, r"in \[0, 1\]"),
    (torch.rand(1, 3, 64, 64) - 0.5, r"in \[0, 1\]"),
])
def test_bad_images_raise_value_error(bad, match):
    tok = alit.build("tiny")
    with pytest.raises(ValueError, match=match):
        tok.rollout(bad)


def test_grad_checkpointing_keeps_gradients_and_keys():
    """A switch on the model (as timm's): the same state-dict keys and the same gradients."""
    small = dict(image_size=16, num_iters=2, encoder_width=64, decoder_width=64, encoder_heads=2,
                 decoder_heads=2, halting="threshold", halting_threshold=0.0)  # every token halts
    tok, plain = alit.build("tiny", **small), alit.build("tiny", **small)
    plain.load_state_dict(tok.state_dict())
    blocks = tok.config.encoder_depth + tok.config.decoder_depth
    assert tok.set_grad_checkpointing() == blocks and tok.set_grad_checkpointing(True) == blocks  # idempotent
    assert list(tok.state_dict()) == list(plain.state_dict())
    x = images(tok)
    for m in (plain, tok):
        m.train().base.requires_grad_(False)
        distill_loss(m.rollout(x, pixels=False)).total.backward()
    for (n, p), q in zip(plain.named_parameters(), tok.parameters()):
        assert (p.grad is None) == (q.grad is None), n
        if p.grad is not None:
            assert torch.equal(p.grad, q.grad), n
    with torch.no_grad():  # no graph, nothing to recompute: the plain forward
        assert torch.equal(tok.rollout(x).reconstructions[-1], plain.rollout(x).reconstructions[-1])
    assert tok.set_grad_checkpointing(False) == blocks
    assert not tok.encoder.blocks.grad_checkpointing and not tok.decoder.blocks.grad_checkpointing


def test_quantize_false_feeds_the_decoder_the_quantizer_inputs():
    """The quantiser warm-up of stage 1 is a keyword of the call, not a switch on the model."""
    tok = alit.build("tiny")
    x = images(tok)
    with torch.no_grad():
        plain = tok.rollout(x, pixels=False)
        bypass = tok.rollout(x, pixels=False, quantize=False)
        state = tok.start(x)
        z = tok.encoder.latents(tok.encoder.blocks(state.x))  # iteration 0's quantiser inputs
    assert torch.equal(bypass.latents[0], torch.nn.functional.normalize(z, dim=-1))
    assert not torch.allclose(bypass.latents[0], plain.latents[0])
    assert torch.equal(bypass.ids[0], plain.ids[0])  # ids as usual
    assert all(q == 0 for q in bypass.quantizer_losses) and all(q > 0 for q in plain.quantizer_losses)
    assert not hasattr(tok, "bypass_quantizer")
