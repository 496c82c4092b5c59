"""encode / decode / Encoding (DESIGN 2.1) on tiny random-weight models: per-image early exit,
fixed budgets, exact mixed-length decoding, save/load, model identity, determinism, bad inputs."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import alit
from alit.criteria import first_accepted, parse_criterion
from alit.errors import AlitError
from conftest import ForwardCalls

L0 = 8  # tiny: 8 tokens per iteration, 8 iterations, lengths 8..64


@pytest.fixture(scope="module")
def roll(tok, images):
    with torch.no_grad():
        return tok.rollout(images, pixels=False)


class NeedsIterations:
    """An honest criterion: each image is tagged by its constant pixel value, which says how many
    reconstructions it must see before it is good enough. It is called once per iteration."""

    def __init__(self, need_by_value: dict[float, int]):
        self.need_by_value = need_by_value
        self.calls, self.seen = 0, []

    def __call__(self, images, reconstructions):
        assert reconstructions.shape == images.shape
        self.calls += 1
        self.seen.append(images)
        need = torch.tensor([self.need_by_value[round(v, 3)] for v in images[:, 0, 0, 0].tolist()])
        return need <= self.calls


def tagged(values):
    return torch.stack([torch.full((3, 64, 64), v) for v in values])


def test_each_image_gets_exactly_the_iterations_it_needs(tok):
    values, need = [0.2, 0.4, 0.6, 0.8], [4, 1, 8, 2]  # shuffled on purpose
    x = tagged(values)
    crit = NeedsIterations(dict(zip(values, need)))
    with ForwardCalls(tok.encoder.blocks) as enc_passes, ForwardCalls(tok.base.decoder) as pixel_decodes:
        enc = tok.encode(x, criterion=crit)
    assert enc.lengths.tolist() == [L0 * n for n in need] == [32, 8, 64, 16]
    assert enc.iterations == 8
    # finished images leave the batch: 4 images, then 3, 2, 2, 1, ...
    assert enc_passes.batches == [4, 3, 2, 2, 1, 1, 1, 1]
    # the last iteration is the longest length: nothing to judge, no pixels decoded
    assert crit.calls == 7 and pixel_decodes.batches == [4, 3, 2, 2, 1, 1, 1]
    assert crit.seen[0] is x  # the caller's own tensor, then subsets of it
    assert [s[:, 0, 0, 0].tolist() for s in crit.seen[:4]] == [
        pytest.approx(v) for v in ([0.2, 0.4, 0.6, 0.8], [0.2, 0.6, 0.8], [0.2, 0.6], [0.2, 0.6])]
    # the chosen tokens are the rollout's at that length; padding is -1 / 0
    with torch.no_grad():
        roll = tok.rollout(x, pixels=False)
    for b, n in enumerate(need):
        L = L0 * n
        assert torch.equal(enc.ids[b, :L], roll.ids[n - 1][b])
        torch.testing.assert_close(enc.latents[b, :L], roll.latents[n - 1][b], atol=1e-6, rtol=0)
        assert (enc.ids[b, L:] == -1).all() and (enc.latents[b, L:] == 0).all()
    assert enc.ids.shape == (4, 64) and enc.latents.shape == (4, 64, tok.config.latent_dim)


def test_criterion_met_at_once_runs_one_iteration(tok, images, roll):
    with ForwardCalls(tok.encoder.blocks) as enc_passes:
        enc = tok.encode(images, criterion=lambda im, rec: torch.ones(len(im), dtype=torch.bool))
    assert enc.iterations == 1 and enc_passes.batches == [4]
    assert enc.lengths.tolist() == [L0] * 4
    assert torch.equal(enc.ids, roll.ids[0]) and torch.equal(enc.latents, roll.latents[0])


def test_fixed_length_runs_only_its_iterations_and_matches_rollout(tok, images, roll):
    with ForwardCalls(tok.encoder.blocks) as enc_passes, ForwardCalls(tok.base.decoder) as pixel_decodes:
        enc = tok.encode(images, num_tokens=24)
    assert enc_passes.batches == [4, 4, 4] and pixel_decodes.batches == []
    assert enc.iterations == 3 and enc.lengths.tolist() == [24] * 4
    assert torch.equal(enc.ids, roll.ids[2]) and torch.equal(enc.latents, roll.latents[2])


def test_per_image_budgets(tok, images, roll):
    budgets = torch.tensor([16, 64, 8, 40])
    with ForwardCalls(tok.encoder.blocks) as enc_passes:
        enc = tok.encode(images, num_tokens=budgets)
    assert enc.lengths.tolist() == budgets.tolist() and enc.iterations == 8
    assert enc_passes.batches == [4, 3, 2, 2, 2, 1, 1, 1]
    for b, L in enumerate(budgets.tolist()):
        assert torch.equal(enc.ids[b, :L], roll.ids[L // L0 - 1][b])
        torch.testing.assert_close(enc.latents[b, :L], roll.latents[L // L0 - 1][b], atol=1e-6, rtol=0)


def test_mixed_lengths_decode_as_each_image_alone(tok, images):
    enc = tok.encode(images, num_tokens=torch.tensor([64, 8, 24, 8]))
    out = tok.decode(enc, batched=False)
    assert out.shape == (4, 3, 64, 64) and out.min() >= 0 and out.max() <= 1
    for b in range(4):
        alone = tok.decode(enc[b])
        assert enc[b].lengths.tolist() == [enc.lengths[b].item()]
        assert enc[b].latents.shape[1] == enc.lengths[b]  # trimmed to its own length
        assert torch.equal(out[b:b + 1], alone)
    # the default decodes images of one length together: the same up to rounding, in the same order
    torch.testing.assert_close(tok.decode(enc), out, atol=1e-4, rtol=0)


def test_decode_matches_the_rollout_reconstruction(tok, images):
    enc = tok.encode(images[:1], num_tokens=16)
    with torch.no_grad():
        recon = tok.rollout(images[:1], num_iters=2).reconstructions[1]
    torch.testing.assert_close(tok.decode(enc), recon.clamp(0, 1), atol=1e-4, rtol=0)


def test_save_load_round_trip(tok, images, tmp_path):
    enc = tok.encode(images, num_tokens=torch.tensor([8, 32, 16, 32]))
    path = enc.save(tmp_path / "codes.safetensors")
    back = alit.Encoding.load(path)
    assert torch.equal(back.lengths, enc.lengths) and torch.equal(back.ids, enc.ids)
    assert back.latents is None  # a quantised model's file holds no latents: decode reads the ids
    assert back.iterations == enc.iterations and back.model == enc.model == tok.fingerprint()
    assert back.codebook_size == tok.config.codebook_size
    assert torch.equal(tok.decode(back), tok.decode(enc))
    with_model = alit.Encoding.load(path, model=tok)
    torch.testing.assert_close(with_model.latents, enc.latents, atol=1e-6, rtol=0)


def test_files_are_small(tok, images, tmp_path):
    from safetensors import safe_open

    enc = tok.encode(images, num_tokens=torch.tensor([8, 64, 16, 8]))
    path = enc.save(tmp_path / "codes.safetensors")
    with safe_open(str(path), framework="pt") as f:
        stored = {k: f.get_tensor(k) for k in f.keys()}
    # only the 96 tokens within the lengths, in int16 (1024 codes), and no latents
    assert set(stored) == {"lengths", "ids"}
    assert stored["ids"].dtype == torch.int16 and stored["ids"].shape == (96,)
    assert path.stat().st_size < 600
    assert alit.encoding.id_dtype(256) == torch.uint8 and alit.encoding.id_dtype(4096) == torch.int16
    assert alit.encoding.id_dtype(2 ** 16) == torch.int32


def test_load_checks_every_id(tok, images, tmp_path):
    from safetensors import safe_open
    from safetensors.torch import save_file

    path = tok.encode(images[:2], num_tokens=torch.tensor([8, 16])).save(tmp_path / "codes.safetensors")
    with safe_open(str(path), framework="pt") as f:
        meta, stored = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    for value, match in [(1024, r"token id 1024 is not in the codebook \[0, 1024\)"),
                         (-1, r"token id -1 is not in the codebook")]:
        ids = stored["ids"].clone()
        ids[3] = value
        save_file({**stored, "ids": ids}, str(tmp_path / "bad.safetensors"), metadata=meta)
        with pytest.raises(AlitError, match=match):
            alit.Encoding.load(tmp_path / "bad.safetensors")
    save_file({**stored, "ids": stored["ids"][:-1]}, str(tmp_path / "short.safetensors"), metadata=meta)
    with pytest.raises(AlitError, match="malformed Encoding"):
        alit.Encoding.load(tmp_path / "short.safetensors")


def test_bad_ids_are_errors_not_crashes(tok, images):
    enc = tok.encode(images[:2], num_tokens=8)
    ids = enc.ids.clone()
    ids[0, 3] = -1
    with pytest.raises(ValueError, match=r"-1 \(padding\) within an image's length"):
        alit.Encoding(enc.lengths, ids, None, 1, enc.model)
    ids[0, 3] = 5000  # no codebook size known here: decode checks against the model's
    rogue = alit.Encoding(enc.lengths, ids, None, 1, enc.model)
    with pytest.raises(ValueError, match=r"id 5000 within an image's length.*\[0, 1024\)"):
        tok.decode(rogue)
    with pytest.raises(ValueError, match=r"-1 past each image's length"):
        alit.Encoding(torch.tensor([8, 16]), torch.zeros(2, 16, dtype=torch.long), None, 2, enc.model)


def test_cat_and_to(tok, images):
    a = tok.encode(images[:2], num_tokens=torch.tensor([8, 16]))
    b = tok.encode(images[2:], num_tokens=torch.tensor([40, 8]))
    both = alit.Encoding.cat([a, b])
    assert both.lengths.tolist() == [8, 16, 40, 8] and both.ids.shape == (4, 40)
    assert both.iterations == 5 and both.codebook_size == 1024
    assert torch.equal(tok.decode(both, batched=False), torch.cat([tok.decode(a, batched=False), tok.decode(b, batched=False)]))
    assert torch.equal(both.to("cpu").ids, both.ids)
    torch.manual_seed(7)
    with pytest.raises(ValueError, match="different models"):
        alit.Encoding.cat([a, alit.build("tiny").encode(images[:1], num_tokens=8)])


def test_fingerprint_names_the_weights_not_their_dtype_or_rule(tok, images):
    enc = tok.encode(images[:2], num_tokens=16, dtype=torch.bfloat16)
    assert torch.equal(tok.decode(enc), tok.decode(enc))
    half = alit.build(tok.config)
    half.load_state_dict(tok.state_dict())
    half = half.to(torch.bfloat16)
    assert half.fingerprint() == tok.fingerprint()
    made_in_bf16 = half.encode(images[:2].bfloat16(), num_tokens=16)
    assert tok.decode(made_in_bf16).shape == (2, 3, 64, 64)  # bf16 tokens decode with the fp32 weights
    other_rule = alit.build(tok.config.replace(criterion="l1:0.2", halting="threshold"))
    other_rule.load_state_dict(tok.state_dict())
    assert other_rule.fingerprint() == tok.fingerprint()
    retrained = alit.build(tok.config)
    retrained.load_state_dict(tok.state_dict())
    with torch.no_grad():
        retrained.decoder.head[-1].bias.add_(0.01)
    assert retrained.fingerprint() != tok.fingerprint()


def test_save_into_a_missing_folder_is_one_line(tok, images, tmp_path):
    enc = tok.encode(images[:1], num_tokens=8)
    with pytest.raises(AlitError, match=r"nodir/x.safetensors: cannot write the Encoding \(no such folder\)"):
        enc.save(tmp_path / "nodir" / "x.safetensors")


def test_load_refuses_other_files(tmp_path):
    pickled = tmp_path / "pickled.pt"
    torch.save({"lengths": torch.tensor([8])}, pickled)
    with pytest.raises(AlitError, match="not a safetensors file"):
        alit.Encoding.load(pickled)
    with pytest.raises(AlitError, match="no such file"):
        alit.Encoding.load(tmp_path / "missing.safetensors")
    from safetensors.torch import save_file
    save_file({"x": torch.zeros(1)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(AlitError, match="not an alit Encoding"):
        alit.Encoding.load(tmp_path / "other.safetensors")


def test_rebuilt_from_ids_or_latents_decodes_the_same(tok, images):
    enc = tok.encode(images, num_tokens=torch.tensor([8, 64, 16, 8]))
    ids = enc.ids.clone()
    ids[ids < 0] = 0  # whatever lies past a length is ignored
    rebuilt = alit.Encoding.from_ids(ids, enc.lengths.tolist(), model=tok)
    assert torch.equal(rebuilt.ids, enc.ids) and rebuilt.iterations == 8
    torch.testing.assert_close(rebuilt.latents, enc.latents, atol=1e-6, rtol=0)
    assert torch.equal(tok.decode(rebuilt), tok.decode(enc))
    again = alit.Encoding.from_latents(enc.latents, enc.lengths, model=tok)
    assert torch.equal(again.ids, enc.ids)
    with pytest.raises(ValueError, match="not lengths of this model"):
        alit.Encoding.from_ids(ids, [8, 64, 16, 12], model=tok)
    with pytest.raises(ValueError, match=r"\[0, 1024\)"):
        alit.Encoding.from_ids(ids + 5000, enc.lengths, model=tok)


def test_decoding_with_another_model_is_an_error(tok, images):
    enc = tok.encode(images[:2], num_tokens=8)
    torch.manual_seed(123)
    other = alit.build("tiny")
    assert other.fingerprint() != tok.fingerprint()
    with pytest.raises(ValueError, match="made by another model"):
        other.decode(enc)
    continuous = alit.build("tiny", quantize=False)
    with pytest.raises(ValueError, match="another model"):
        continuous.decode(enc)


def test_continuous_model(images):
    torch.manual_seed(0)
    tok = alit.build("tiny-vae-continuous")
    enc = tok.encode(images, num_tokens=torch.tensor([16, 8, 8, 24]))
    assert enc.ids is None and enc.latents.shape == (4, 24, tok.config.latent_dim)
    with torch.no_grad():
        roll = tok.rollout(images, num_iters=3, pixels=False)
    torch.testing.assert_close(enc.latents[0, :16], roll.latents[1][0], atol=1e-6, rtol=0)
    out = tok.decode(enc, batched=False)
    assert torch.equal(out[3:], tok.decode(enc[3]))
    assert torch.equal(tok.decode(alit.Encoding.from_latents(enc.latents, enc.lengths, model=tok), batched=False), out)
    with pytest.raises(ValueError, match="continuous"):
        alit.Encoding.from_ids(torch.zeros(4, 24, dtype=torch.long), enc.lengths, model=tok)


def halting_model() -> alit.AdaptiveTokenizer:
    """A tiny model whose decoder gives every ground-truth base id about even odds, so that the
    paper's Bernoulli halting masks about half of the image tokens at every iteration."""
    torch.manual_seed(0)
    tok = alit.build("tiny", halting="paper", halting_threshold=0.3)
    with torch.no_grad():
        tok.base.codebook.copy_(tok.base.codebook[:1].expand_as(tok.base.codebook))  # every gt id is 0
        tok.decoder.head[-1].bias[0] = 5.5  # p(id 0) ~ e^5.5 / (e^5.5 + 255) ~ 0.5
    return tok


def test_same_call_same_result_in_every_halting_mode(images):
    tok = halting_model()
    budgets = torch.tensor([8, 64, 16, 32])
    with torch.no_grad():
        roll = tok.rollout(images, pixels=False)  # model default: "paper", fixed seed
    assert roll.halted[0].float().mean() > 0.2  # halting really happens
    first = tok.encode(images, num_tokens=budgets)
    # draws do not depend on which images are still in the batch: each image is as in the rollout
    for b, L in enumerate(budgets.tolist()):
        torch.testing.assert_close(first.latents[b, :L], roll.latents[L // L0 - 1][b], atol=1e-5, rtol=0)
    assert torch.equal(tok.encode(images, num_tokens=budgets).latents, first.latents)
    pair, budgets = images[:2], torch.tensor([8, 32])
    for mode in ("off", "threshold", "paper"):
        a = tok.encode(pair, num_tokens=budgets, halting=mode)
        b = tok.encode(pair, num_tokens=budgets, halting=mode)
        assert torch.equal(a.ids, b.ids) and torch.equal(a.latents, b.latents), mode
    crit = NeedsIterations(dict.fromkeys((0.25, 0.75), 3))
    c1 = tok.encode(tagged([0.25, 0.75]), criterion=crit)
    crit.calls = 0
    c2 = tok.encode(tagged([0.25, 0.75]), criterion=crit)
    assert c1.lengths.tolist() == [24, 24] and torch.equal(c1.latents, c2.latents)


def test_encode_takes_no_gradients(tok, images):
    x = images.clone().requires_grad_(True)
    enc = tok.encode(x, criterion=alit.L1Below(0.07))
    assert not enc.latents.requires_grad and not tok.decode(enc).requires_grad


@pytest.mark.parametrize("bad, match", [
    (torch.rand(2, 3, 32, 32), r"shape \[B, 3, 64, 64\]"),
    (torch.rand(2, 1, 64, 64), r"shape \[B, 3, 64, 64\]"),
    (torch.rand(3, 64, 64), r"shape \[B, 3, 64, 64\]"),
    ((torch.rand(2, 3, 64, 64) * 255).to(torch.uint8), "float images"),
    (torch.rand(2, 3, 64, 64) * 255, r"in \[0, 1\]"),
    (torch.full((2, 3, 64, 64), float("nan")), r"in \[0, 1\]"),
    (torch.rand(2, 3, 64, 64).numpy(), "torch.Tensor"),
])
def test_bad_images_raise(tok, bad, match):
    with pytest.raises(ValueError, match=match):
        tok.encode(bad, num_tokens=8)


def test_bad_arguments_raise(tok, images):
    with pytest.raises(ValueError, match="not both"):
        tok.encode(images, num_tokens=8, criterion=alit.L1Below(0.07))
    with pytest.raises(ValueError, match=r"choose from \[8, 16"):
        tok.encode(images, num_tokens=12)
    with pytest.raises(ValueError, match=r"\[0, 72\] is not a length"):
        tok.encode(images, num_tokens=torch.tensor([8, 0, 72, 8]))
    with pytest.raises(ValueError, match=r"shape \[4\]"):
        tok.encode(images, num_tokens=torch.tensor([8, 8]))
    with pytest.raises(ValueError, match=r"shape \[4\]"):
        tok.encode(images, num_tokens=torch.tensor([8.0, 8, 8, 8]))
    with pytest.raises(ValueError, match="must be callable"):
        tok.encode(images, criterion="l1:0.07")
    with pytest.raises(ValueError, match=r"bool tensor of shape \[4\]"):
        tok.encode(images, criterion=lambda im, rec: (rec - im).abs().mean())
    with pytest.raises(ValueError, match="expects an alit.Encoding"):
        tok.decode(images)


def test_shipped_criteria():
    images = torch.full((3, 3, 4, 4), 0.5)
    recons = images + torch.tensor([0.01, 0.1, 0.6])[:, None, None, None]  # the last one leaves [0, 1]
    assert alit.L1Below(0.07)(images, recons).tolist() == [True, False, False]
    assert alit.MSEBelow(0.001)(images, recons).tolist() == [True, False, False]
    assert alit.PSNRAbove(30)(images, recons).tolist() == [True, False, False]  # 40 dB, 20 dB, 6 dB
    assert alit.PSNRAbove(100)(images, images.clone()).all()  # exact: inf dB
    assert first_accepted(alit.L1Below(0.07), images, [recons, recons, images]).tolist() == [0, 2, 2]


def test_ssim_criterion_weighs_structure_over_a_uniform_offset():
    from alit.scoring import ssim

    g = torch.Generator().manual_seed(0)
    texture = F.interpolate(torch.rand(1, 3, 8, 8, generator=g), size=32, mode="bilinear") * 0.6 + 0.2
    offset = texture + 0.1                                              # L1 0.1, structure kept
    noisy = texture + (torch.rand(1, 3, 32, 32, generator=g) - 0.5) * 0.2  # L1 0.05, structure lost
    blank = torch.full_like(texture, 0.5)                               # no structure at all
    images, recons = texture.repeat(4, 1, 1, 1), torch.cat([texture, offset, noisy, blank])
    scores = ssim(images, recons)
    assert float(scores[0]) == pytest.approx(1.0) and scores[1] > 0.9 > scores[2] > scores[3]
    assert alit.L1Below(0.07)(images, recons).tolist() == [True, False, True, False]
    assert alit.SSIMAbove(0.9)(images, recons).tolist() == [True, True, False, False]
    assert alit.SSIMAbove(float(scores[2]) - 1e-6)(images, recons).tolist() == [True, True, True, False]
    big = alit.SSIMAbove(0.9)(images.repeat(20, 1, 1, 1), recons.repeat(20, 1, 1, 1))  # chunked: same answers
    assert big.tolist() == [True, True, False, False] * 20


def test_stalled_accepts_a_length_when_its_block_gained_little():
    images = torch.full((4, 3, 4, 4), 0.5)
    # the L1 error of each image at four lengths (a uniform offset): meets 0.05; stalls (gain 0.002
    # < 0.01) at the third length; gets worse at the second; keeps gaining 0.05 a block
    errors = torch.tensor([[0.30, 0.04, 0.03, 0.02], [0.30, 0.20, 0.198, 0.10],
                           [0.30, 0.31, 0.20, 0.10], [0.40, 0.35, 0.30, 0.25]])
    recons = [images + errors[:, i, None, None, None] for i in range(4)]
    assert first_accepted(alit.L1Below(0.05), images, recons).tolist() == [1, 3, 3, 3]
    assert first_accepted(alit.Stalled(alit.L1Below(0.05), gain=0.01), images, recons).tolist() == [1, 2, 1, 3]
    assert first_accepted(alit.Stalled(alit.L1Below(0.05), gain=0), images, recons).tolist() == [1, 3, 1, 3]
    # at the first length only the rule can accept: there is no length before to have gained over
    assert first_accepted(alit.Stalled(alit.L1Below(0.05), gain=1), images, recons).tolist() == [1, 1, 1, 1]
    ssim_rule = alit.Stalled(alit.SSIMAbove(0.5), gain=0.001)
    assert ssim_rule.name == "ssim" and ssim_rule.looks_back
    with pytest.raises(ValueError, match="score"):
        alit.Stalled(alit.ConfidenceAbove(0.5), gain=0.01)


class LooksBack(NeedsIterations):
    """NeedsIterations that also checks what a looking-back rule is given: None at the first length,
    then each image's own reconstruction at the length before, whichever images are still in the batch."""

    looks_back = True

    def __init__(self, need_by_value):
        super().__init__(need_by_value)
        self.before = {}  # tag -> the reconstruction it was judged on last

    def __call__(self, images, reconstructions, previous):
        tags = [round(v, 3) for v in images[:, 0, 0, 0].tolist()]
        if self.calls == 0:
            assert previous is None
        else:
            assert torch.equal(previous, torch.stack([self.before[t] for t in tags]))
        self.before.update(zip(tags, reconstructions))
        return super().__call__(images, reconstructions)


def test_encode_gives_a_rule_that_looks_back_each_images_reconstruction_before(tok):
    values, need = [0.2, 0.4, 0.6, 0.8], [4, 1, 8, 2]
    crit = LooksBack(dict(zip(values, need)))
    with ForwardCalls(tok.encoder.blocks) as enc_passes:
        enc = tok.encode(tagged(values), criterion=crit)
    assert enc.lengths.tolist() == [32, 8, 64, 16]
    assert enc_passes.batches == [4, 3, 2, 2, 1, 1, 1, 1] and crit.calls == 7  # finished images leave


@pytest.mark.parametrize("spec, expected", [("l1:0.07", "L1Below(0.07)"), ("psnr:30", "PSNRAbove(30)"),
                                            ("MSE:0.01", "MSEBelow(0.01)"), ("ssim:0.5", "SSIMAbove(0.5)"),
                                            ("ssim:0.4784+gain:0.001", "Stalled(SSIMAbove(0.4784), gain=0.001)"),
                                            (" l1:0.07 + GAIN:0 ", "Stalled(L1Below(0.07), gain=0)"),
                                            ("psnr:1e+1", "PSNRAbove(10)"),
                                            ("l1:5e-2+gain:1e+0", "Stalled(L1Below(0.05), gain=1)")])
def test_parse_criterion(spec, expected):
    assert repr(parse_criterion(spec)) == expected


@pytest.mark.parametrize("spec", ["l1", "l2:0.1", "l1:abc", "l1:-1", "psnr:inf", "ssim:1", "ssim:0", "",
                                  "ssim:0.5+gain", "ssim:0.5+gain:-0.1", "ssim:0.5+gain:x", "ssim:0.5+loss:0.1",
                                  "conf:0.6+gain:0.01", "ssim:2+gain:0.01", "ssim:0.5+", "ssim:0.5+0.001"])
def test_parse_bad_criterion(spec):
    with pytest.raises(AlitError, match="bad criterion"):
        parse_criterion(spec)
