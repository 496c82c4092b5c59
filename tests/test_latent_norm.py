"""latent_norm (ours, off in the paper's models): the factorised latents standardised per iteration,
position and channel, with batch statistics in training and their running averages at inference."""
import pytest
import torch

import alit
from alit.model.latent_norm import LatentStandardizer, update_statistics
from alit.weights import save


def test_training_standardises_and_inference_uses_the_running_averages():
    norm = LatentStandardizer(num_iters=2, max_positions=8, dim=3)
    z = torch.randn(64, 8, 3, generator=torch.Generator().manual_seed(0)) * 5 + 2  # [B, L, d]
    out = norm(z, 0)
    assert out.mean(0).abs().max() < 1e-5 and torch.allclose(out.std(0, unbiased=False), torch.ones(8, 3), atol=1e-4)
    # the first batch sets the averages exactly (a plain mean at first), so inference agrees with it
    norm.eval()
    assert torch.allclose(norm(z, 0), out, atol=1e-5)
    assert norm.batches.tolist() == [1, 0]  # iteration 1 saw nothing: identity statistics there
    assert torch.allclose(norm(z[:, :4], 1), z[:, :4], rtol=1e-4)


def test_a_lone_image_in_training_uses_the_running_averages():
    norm = LatentStandardizer(1, 4, 2)
    z = torch.randn(1, 4, 2)
    assert torch.allclose(norm(z, 0), z, rtol=1e-4) and norm.batches.item() == 0


def test_the_forward_reads_nothing_on_the_host():
    """No `.item()`, `.tolist()` or `bool()` of a tensor (a host sync at every iteration on a GPU):
    on the meta device tensors hold no data, so any such read raises. With and without `reduce`."""
    for reduce in (None, lambda x: x):
        norm = LatentStandardizer(2, 8, 3, reduce=reduce).to("meta")
        z = torch.randn(16, 8, 3, device="meta", requires_grad=True)
        norm(z, 0).sum().backward()
        norm(z[:1, :4], 1)
        norm.eval()
        norm(z, 1)


def test_a_reduce_over_one_process_gives_the_same_statistics_and_gradients():
    """`reduce` (the sum over processes under DDP) as the identity: a world of one. The two-pass
    statistics agree with the single-process ones, and so do their gradients."""
    g = torch.Generator().manual_seed(4)
    z = torch.randn(6, 8, 3, generator=g) * 0.01 + 0.8  # the spread much smaller than the mean
    up = torch.randn(6, 8, 3, generator=g)
    outs, grads, norms = [], [], []
    for reduce in (None, lambda x: x):
        norm = LatentStandardizer(1, 8, 3, reduce=reduce)
        x = z.clone().requires_grad_()
        outs.append(norm(x, 0))
        (outs[-1] * up).sum().backward()
        grads.append(x.grad)
        norms.append(norm)
    # (gradients up to ~360 here: float32 rounding of the sums)
    assert torch.allclose(outs[0], outs[1], atol=1e-5) and torch.allclose(grads[0], grads[1], rtol=1e-4, atol=4e-3)
    assert torch.allclose(norms[0].running_mean, norms[1].running_mean, atol=1e-7)
    assert torch.allclose(norms[0].running_var, norms[1].running_var, rtol=1e-4)
    # every process takes the global batch's statistics, also for a micro-batch of one image
    norm = LatentStandardizer(1, 8, 3, reduce=lambda x: x * 2)  # two processes holding the same image
    assert torch.equal(norm(z[:1], 0), torch.zeros(1, 8, 3)) and norm.batches.item() == 1


def test_off_by_default_and_in_the_paper_presets():
    for name in ("tiny", "small", "small-vae-continuous"):
        assert alit.preset(name).latent_norm is False
    assert alit.build("tiny").latent_norm is None


def test_it_makes_the_decoder_input_image_dependent_at_initialisation():
    """The saddle's cause (issue #12): at initialisation what every image shares drowns what differs;
    with latent_norm the latents the decoder reads differ across images by their own magnitude."""
    torch.manual_seed(0)
    images = torch.rand(16, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    spread = {}
    for on in (False, True):
        torch.manual_seed(0)
        tok = alit.build("tiny", base="vae", quantize=False, latent_norm=on).train()
        with torch.no_grad():
            z = tok.rollout(images, pixels=False).latents[0]  # [B, L0, d]
        spread[on] = (z.std(0).mean() / z.abs().mean()).item()
    assert spread[False] < 0.05 and spread[True] > 0.5, spread


@pytest.mark.parametrize("quantize", [True, False])
def test_save_load_and_batch_independence(quantize, tmp_path):
    tok = alit.build("tiny", base="vae", quantize=quantize, latent_norm=True).train()
    x = torch.rand(8, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        for _ in range(3):
            tok.rollout(x * 0.5 + 0.25, pixels=False)  # running statistics move away from identity
    tok.eval()
    save(tok.state_dict(), tok.config, tmp_path / "m")
    back = alit.load(tmp_path / "m")
    assert back.config.latent_norm and torch.equal(back.latent_norm.running_var, tok.latent_norm.running_var)
    with torch.no_grad():
        together = back.encode(x, num_tokens=16)
        alone = back.encode(x[3:4], num_tokens=16)
        mine = tok.encode(x, num_tokens=16)
    if quantize:
        assert torch.equal(together.ids, mine.ids) and torch.equal(together.ids[3:4], alone.ids)
    else:
        assert torch.allclose(together.latents[3:4], alone.latents, atol=2e-4)  # float noise, standardised


def test_reset_statistics_then_a_pass_gives_the_plain_mean_of_the_batches():
    """How the export recomputes the averages after stage 2: identity, then each batch weighs the same."""
    norm = LatentStandardizer(1, 2, 1)
    norm(torch.randn(8, 2, 1) * 9 + 5, 0)
    norm.reset_statistics()
    assert norm.batches.item() == 0 and norm.running_mean.abs().max() == 0 and (norm.running_var == 1).all()
    a, b = torch.randn(16, 2, 1) + 1, torch.randn(16, 2, 1) * 3 - 2
    norm(a, 0)
    norm(b, 0)
    assert torch.allclose(norm.running_mean[0], (a.mean(0) + b.mean(0)) / 2, atol=1e-6)
    assert torch.allclose(norm.running_var[0], (a.var(0, unbiased=False) + b.var(0, unbiased=False)) / 2, atol=1e-5)


def test_update_statistics_is_the_plain_mean_over_every_batch_and_iteration():
    """`update_statistics` after training: the averages become the plain mean of the batch
    statistics over all batches (not an exponential one past 1/momentum batches), one-image batches
    are skipped, and the model is left as it was (the standardiser in eval mode)."""
    tok = alit.build("tiny", base="vae", quantize=True, latent_norm=True).eval()
    g = torch.Generator().manual_seed(3)
    parts = [torch.rand(4, 3, 64, 64, generator=g) for _ in range(3)] + [torch.rand(1, 3, 64, 64, generator=g)]
    tok.latent_norm.momentum = 0.5  # so that an exponential average would differ from the plain mean
    assert update_statistics(tok, parts) == 12
    assert not tok.latent_norm.training and not tok.training and tok.latent_norm.momentum == 0.5
    assert tok.latent_norm.batches.tolist() == [3] * tok.config.num_iters
    # the same, by hand: the batch statistics of each iteration's latents, averaged
    stats = {t: [] for t in range(tok.config.num_iters)}
    hook = tok.latent_norm.register_forward_hook(
        lambda m, args, out: stats[args[1]].append((args[0].mean(0), args[0].var(0, unbiased=False))))
    with torch.no_grad():
        for x in parts[:3]:
            tok.rollout(x, "off", pixels=False)
    hook.remove()
    for t, rows in stats.items():
        L = rows[0][0].shape[0]
        assert torch.allclose(tok.latent_norm.running_mean[t, :L], sum(m for m, _ in rows) / 3, atol=1e-5)
        assert torch.allclose(tok.latent_norm.running_var[t, :L], sum(v for _, v in rows) / 3, rtol=1e-4, atol=1e-6)


def test_recalibrate_reads_a_folder_of_photos_as_alit_demo_does(tmp_path):
    """`recalibrate(model, folder)`: the averages over every photo file in the folder (other files
    ignored), resized and put on the 8-bit grid as `alit demo` reads them, equal `update_statistics`
    over the same images prepared by hand."""
    from alit.eval.inputs import protocol
    from alit.eval.recalibrate import recalibrate
    from alit.images import find_images, read_image, save_png

    g = torch.Generator().manual_seed(5)
    for i in range(5):  # real PNG files of odd sizes, so the resize-crop matters
        save_png(torch.rand(3, 70 + 9 * i, 90, generator=g), tmp_path / f"p{i}.png")
    (tmp_path / "notes.txt").write_text("not a photo")
    tok = alit.build("tiny", base="vae", quantize=True, latent_norm=True).eval()
    assert recalibrate(tok, str(tmp_path), batch_size=2) == 4  # batches of 2, 2, 1: the last one skipped
    by_folder = tok.latent_norm.running_mean.clone(), tok.latent_norm.running_var.clone()
    paths, _ = find_images([str(tmp_path)])
    images = torch.stack([protocol("resize-crop").prepare(read_image(p, 64), 64)[0] for p in paths])
    assert images.shape == (5, 3, 64, 64) and torch.equal(images, (images * 255).round() / 255)
    assert update_statistics(tok, [images[:2], images[2:4]]) == 4
    assert torch.allclose(tok.latent_norm.running_mean, by_folder[0], atol=1e-6)
    assert torch.allclose(tok.latent_norm.running_var, by_folder[1], atol=1e-6)
