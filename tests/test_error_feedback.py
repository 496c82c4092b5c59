"""`error_feedback` (ours, off in the paper's models): the decoder's code error after iteration t is
projected into the encoder's image tokens before iteration t + 1. It starts as a no-op, the later
latents then depend on what the decoder got wrong, and every path that encodes agrees with the
rollout."""
from __future__ import annotations

import torch

import alit
from alit.train.finetune import truncated_step
from alit.weights import save
from conftest import load_script

L0 = 8


def small(feedback: bool) -> alit.AdaptiveTokenizer:
    torch.manual_seed(0)
    return alit.build("tiny", image_size=32, num_iters=4, error_feedback=feedback).eval()


def images(n: int = 4) -> torch.Tensor:
    return torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def trained_feedback(tok: alit.AdaptiveTokenizer) -> alit.AdaptiveTokenizer:
    """As if trained: a projection large enough to move the later tokens."""
    with torch.no_grad():
        tok.encoder.feedback.weight.normal_(0, 1.0, generator=torch.Generator().manual_seed(2))
    return tok


def test_off_by_default_and_a_no_op_at_initialisation():
    assert alit.build("tiny").config.error_feedback is False
    plain, fed = small(False), small(True)
    assert plain.encoder.feedback is None
    assert fed.encoder.feedback.weight.abs().sum() == 0 and fed.encoder.feedback.bias.abs().sum() == 0
    fed.load_state_dict(plain.state_dict(), strict=False)
    x = images()
    with torch.no_grad():
        a, b = plain.rollout(x, "off"), fed.rollout(x, "off")
    for t in range(4):
        assert torch.equal(a.ids[t], b.ids[t])
        torch.testing.assert_close(a.reconstructions[t], b.reconstructions[t], rtol=0, atol=1e-6)


def test_later_latents_depend_on_the_decoder_only_with_feedback():
    x = images()
    for feedback in (False, True):
        tok = small(feedback)
        if feedback:
            trained_feedback(tok)
        with torch.no_grad():
            before = tok.rollout(x, "off", pixels=False)
            gen = torch.Generator().manual_seed(3)
            for w in tok.decoder.parameters():  # another decoder, the same encoder
                w.add_(torch.randn(w.shape, generator=gen))
            after = tok.rollout(x, "off", pixels=False)
        # iteration 0 never sees the decoder; iteration 1 sees its error only through the feedback
        torch.testing.assert_close(before.latents[0], after.latents[0], rtol=0, atol=0)
        moved = (before.latents[1] - after.latents[1]).abs().max().item()
        assert (moved > 1e-3) if feedback else (moved == 0), (feedback, moved)


def test_encode_at_any_length_or_rule_gives_the_rollouts_tokens():
    tok = trained_feedback(small(True))
    x = images()
    with torch.no_grad():
        roll = tok.rollout(x, "off", pixels=False)
    assert not torch.equal(roll.ids[3], small(False).rollout(x, "off", pixels=False).ids[3])
    budgets = torch.tensor([8, 32, 16, 24])  # images leave the batch as their budgets are met
    enc = tok.encode(x, num_tokens=budgets)
    for b, L in enumerate(budgets.tolist()):
        assert torch.equal(enc.ids[b, :L], roll.ids[L // L0 - 1][b])
    calls = []

    def rule(imgs, recons):  # image b is good enough after b + 1 lengths
        calls.append(len(imgs))
        return torch.tensor([len(calls) > b for b in range(4)][-len(imgs):])

    enc = tok.encode(x, criterion=rule)
    assert enc.lengths.tolist() == [8, 16, 24, 32] and calls == [4, 3, 2]
    for b in range(4):
        assert torch.equal(enc.ids[b, :8 * (b + 1)], roll.ids[b][b])


def test_training_reaches_the_projection_through_later_iterations():
    tok = trained_feedback(small(True)).train()
    x = images(2)
    for t, learns in ((0, False), (2, True)):
        tok.zero_grad(set_to_none=True)
        roll = tok.rollout(x, "off", num_iters=t + 1, pixels=False)
        ((roll.codes[t] - roll.targets.codes) ** 2).mean().backward()
        grad = tok.encoder.feedback.weight.grad
        assert (grad is not None and grad.abs().sum() > 0) == learns, t
    # stage 2's truncated rollout computes the same values with feedback on
    with torch.no_grad():
        codes, _ = truncated_step(tok, x, 2, tok.resolve_halting("off", x.device))
    torch.testing.assert_close(codes, roll.codes[2].detach(), rtol=0, atol=1e-6)


def test_grow_model_turns_it_on_without_changing_the_outputs(tmp_path, capsys):
    tok = small(False)
    save(tok.state_dict(), tok.config, tmp_path / "plain")
    load_script("grow_model").main([str(tmp_path / "plain"), "--error-feedback", "--out", str(tmp_path / "fed")])
    assert "error feedback on" in capsys.readouterr().out
    fed = alit.load(tmp_path / "fed")
    assert fed.config.error_feedback and fed.encoder.feedback is not None
    x = images()
    with torch.no_grad():
        a, b = tok.rollout(x, "off"), fed.rollout(x, "off")
    for t in range(4):
        assert torch.equal(a.ids[t], b.ids[t])
