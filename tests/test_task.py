"""alit.TaskAgrees (a length rule that follows a downstream task), task models from files, `alit probe
--save`, and `alit analyze task`, with task models trained here: a small CNN on Fashion-MNIST
(benchmarks/task_rule.py; Debian's dataset-fashion-mnist, skipped without it), a linear probe on
the bundled model's latents, and torchvision's ResNet-18 when its weights are in the torch hub cache."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import alit
from alit.cli import main
from alit.criteria import EightBit, parse_criterion
from alit.errors import AlitError
from alit.data.acquire import fashion_mnist
from alit.eval.paired import paired_test, sign_test
from alit.eval.probe import fit_linear
from alit.task_model import LatentProbe, load_task_model
from conftest import ForwardCalls, load_script
from test_eval_support import CHROMIUM, NO_CHROMIUM, assert_renders, one_thread  # noqa: F401 (autouse)

NO_FASHION = not (fashion_mnist.DEBIAN_DIR / "t10k-labels-idx1-ubyte.gz").is_file()
needs_fashion = pytest.mark.skipif(NO_FASHION, reason="Debian dataset-fashion-mnist is not installed "
                                   "(apt-get install -y dataset-fashion-mnist)")
RESNET = Path(torch.hub.get_dir()) / "checkpoints" / "resnet18-f37072fd.pth"


@pytest.fixture(scope="module")
def bench():
    return load_script("task_rule")


@pytest.fixture(scope="module")
def fm(bench):
    """The bundled model, a CNN trained on Fashion-MNIST, 24 test images as the model sees them, their
    labels and the model's rollout of them (every length, reconstructions)."""
    if NO_FASHION:
        pytest.skip("Debian dataset-fashion-mnist is not installed")
    tok = alit.load("default")
    cnn = bench.train_classifier(n=2000, epochs=2)
    x, labels = bench.fashion_arrays("test", 24)
    images = bench.as_the_tokenizer_sees(x)
    with torch.no_grad():
        roll = tok.rollout(images)
    return {"tok": tok, "cnn": cnn, "images": images, "labels": labels, "roll": roll}


def brute_force(fm, agree_at) -> tuple[list[int], torch.Tensor]:
    """The rule over a rollout: the first length whose reconstruction `agree_at(i, recon)` accepts."""
    agree = torch.stack([agree_at(i, r.clamp(0, 1)) for i, r in enumerate(fm["roll"].reconstructions)])
    forced = agree.clone()
    forced[-1] = True
    return [fm["tok"].config.lengths[i] for i in forced.int().argmax(0).tolist()], agree


@needs_fashion
def test_rule_is_the_shortest_length_the_classifier_agrees_on(fm):
    tok, cnn, images = fm["tok"], fm["cnn"], fm["images"]
    with torch.no_grad():
        target = cnn(images).argmax(1)
        expected, agree = brute_force(fm, lambda i, r: cnn(r).argmax(1) == target)
    got = tok.encode(images, criterion=alit.TaskAgrees(cnn)).lengths.tolist()
    assert got == expected
    assert tok.encode(images, criterion=alit.TaskAgrees(cnn), _compact=False).lengths.tolist() == expected
    lengths = tok.config.lengths
    for j, L in enumerate(got):  # minimal: one block shorter, the classifier judges otherwise
        i = lengths.index(L)
        if i:
            assert not agree[i - 1, j]
        if i < len(lengths) - 1 or agree[i, j]:
            assert agree[i, j]
    assert len(set(got)) > 2 and np.mean(got) < lengths[-1]  # lengths follow the images


@needs_fashion
def test_top_k_and_the_transform_hook(fm):
    tok, cnn, images = fm["tok"], fm["cnn"], fm["images"]
    one = tok.encode(images, criterion=alit.TaskAgrees(cnn)).lengths
    three = tok.encode(images, criterion=alit.TaskAgrees(cnn, top_k=3)).lengths
    assert bool((three <= one).all()) and three.sum() < one.sum()
    everything = tok.encode(images, criterion=alit.TaskAgrees(cnn, top_k=10)).lengths  # all 10 classes
    assert everything.tolist() == [tok.config.lengths[0]] * len(images)
    # the same CNN without its preprocessing: gray 28 x 28 standardised by the transform instead
    def prep(x):
        gray = torch.nn.functional.interpolate(x.mean(1, keepdim=True), size=(28, 28), mode="bilinear",
                                               antialias=True, align_corners=False)
        return (gray - 0.286) / 0.353

    bare = alit.TaskAgrees(cnn.net, transform=prep)
    assert tok.encode(images, criterion=bare).lengths.tolist() == one.tolist()


@needs_fashion
def test_dense_rule_thresholds_a_relative_error(fm):
    tok, cnn, images = fm["tok"], fm["cnn"], fm["images"]
    dense = torch.nn.Sequential(cnn, torch.nn.Softmax(1))  # class probabilities as a dense output
    with torch.no_grad():
        ref = dense(images)
        errors = torch.stack([alit.TaskAgrees.error(ref, dense(r.clamp(0, 1))) for r in fm["roll"].reconstructions])
    t = float(errors[2].median())
    expected, _ = brute_force(fm, lambda i, r: errors[i] < t)
    got = tok.encode(images, criterion=alit.TaskAgrees(dense, threshold=t)).lengths
    assert got.tolist() == expected
    looser = tok.encode(images, criterion=alit.TaskAgrees(dense, threshold=4 * t)).lengths
    assert bool((looser <= got).all()) and looser.sum() < got.sum()
    with pytest.raises(ValueError, match="threshold="):  # a dense output is no classifier
        tok.encode(images[:2], criterion=alit.TaskAgrees(torch.nn.Identity()))


@needs_fashion
def test_a_probe_on_latents_is_pixel_free(fm, bench):
    tok, images = fm["tok"], fm["images"]
    x, y = bench.fashion_arrays("train", 120)
    with torch.no_grad():
        latents = tok.rollout(bench.as_the_tokenizer_sees(x), pixels=False).latents[-1]
    layer = fit_linear(latents.mean(1).float(), y, 10)
    probe = LatentProbe(layer.weight, layer.bias, "mean", 128, list(fashion_mnist.CLASSES), tok.fingerprint())
    rule = alit.TaskAgrees(probe, tokenizer=tok)
    assert not rule.needs_pixels
    with ForwardCalls(tok.base.decoder) as calls:
        got = tok.encode(images, criterion=rule).lengths.tolist()
    assert calls.batches == []  # no pixel decoded
    outs = [probe(z) for z in fm["roll"].latents]  # [b, 10] per length; the reference: the longest code
    agree = torch.stack([o.argmax(1) == outs[-1].argmax(1) for o in outs])
    assert got == [tok.config.lengths[i] for i in agree.int().argmax(0).tolist()]
    assert np.mean(got) < tok.config.lengths[-1]
    with pytest.raises(ValueError, match="tokenizer="):
        tok.encode(images[:2], criterion=alit.TaskAgrees(probe))
    with pytest.raises(AlitError, match="latents of the model"):
        alit.TaskAgrees(probe, tokenizer=alit.build("tiny"))


@pytest.fixture(scope="module")
def folder(fm, tmp_path_factory):
    """16 Fashion-MNIST test images in DIR/<class>/, and the CNN as TorchScript."""
    root = tmp_path_factory.mktemp("task")
    x, labels = fm["images"][:16], fm["labels"][:16]
    for j, (image, label) in enumerate(zip(x, labels.tolist())):
        (root / "data" / fashion_mnist.CLASSES[label]).mkdir(parents=True, exist_ok=True)
        pixels = (image[0] * 255).round().to(torch.uint8).numpy()
        Image.fromarray(pixels).save(root / "data" / fashion_mnist.CLASSES[label] / f"{j:02d}.png")
    torch.jit.script(fm["cnn"]).save(str(root / "cnn.pt"))
    return root


@needs_fashion
def test_torchscript_and_safetensors_task_models(fm, folder, tmp_path):
    scripted = load_task_model(folder / "cnn.pt")
    with torch.no_grad():
        torch.testing.assert_close(scripted(fm["images"][:4]), fm["cnn"](fm["images"][:4]))
    rule = parse_criterion(f"task:{folder / 'cnn.pt'}:3")
    assert isinstance(rule, alit.TaskAgrees) and rule.top_k == 3 and rule.needs_pixels
    assert rule.classes == list(fashion_mnist.CLASSES)
    batch = torch.export.Dim("batch", min=1)
    torch.export.save(torch.export.export(fm["cnn"], (fm["images"][:2],), dynamic_shapes=({0: batch},)),
                      str(tmp_path / "cnn.pt2"))
    exported = parse_criterion(f"task:{tmp_path / 'cnn.pt2'}")
    torch.testing.assert_close(exported.outputs(fm["images"][:5]), fm["cnn"](fm["images"][:5]))
    from safetensors.torch import save_file

    save_file(fm["cnn"].state_dict(), str(tmp_path / "cnn.safetensors"))
    built = load_task_model(tmp_path / "cnn.safetensors", builder=lambda: load_script("task_rule").FashionClassifier())
    with torch.no_grad():
        torch.testing.assert_close(built(fm["images"][:4]), fm["cnn"](fm["images"][:4]))
    with pytest.raises(AlitError, match="builder="):
        load_task_model(tmp_path / "cnn.safetensors")
    with pytest.raises(AlitError, match="does not fit"):
        load_task_model(tmp_path / "cnn.safetensors", builder=lambda: torch.nn.Linear(2, 2))


def test_task_criterion_errors(tmp_path):
    (tmp_path / "notes.txt").write_text("not a model")
    for spec, message in ((f"task:{tmp_path / 'missing.pt'}", "no such task model file"),
                          ("task:", "expected task:PATH"),
                          (f"task:{tmp_path / 'notes.txt'}:x", "expected task:PATH"),
                          (f"task:{tmp_path / 'notes.txt'}:0", "top-k K must be at least 1"),
                          (f"task:{tmp_path / 'notes.txt'}", "neither TorchScript")):
        with pytest.raises(AlitError, match=message):
            parse_criterion(spec)
    with pytest.raises(ValueError, match="callable"):
        alit.TaskAgrees(3)
    with pytest.raises(ValueError, match="threshold"):
        alit.TaskAgrees(torch.nn.Identity(), threshold=0)


@needs_fashion
def test_probe_save_is_a_task_model(fm, tmp_path, capsys):
    data = tmp_path / "fm"
    fashion_mnist.convert(data, limit=40)
    saved = tmp_path / "probe.safetensors"
    assert main(["probe", "--data", str(data), "--out", str(tmp_path / "out"), "--lengths", "16,128",
                 "--save", str(saved)]) == 0
    assert "task:" in capsys.readouterr().out
    report = json.loads((tmp_path / "out" / "probe.json").read_text())
    assert report["saved"] == {"path": str(saved), "length": 128}
    probe = load_task_model(saved)
    assert isinstance(probe, LatentProbe) and probe.length == 128 and probe.classes == report["classes"]
    from alit.eval.probe import features, labelled_folder

    test = labelled_folder(data / "test", report["classes"])
    x = features(fm["tok"], test.paths)[-1]  # the longest length
    accuracy = float((probe(x[:, None]).argmax(1) == torch.tensor(test.labels)).double().mean())
    assert accuracy == report["lengths"]["128"]["test_accuracy"]  # mean over one token is the feature itself
    rule = parse_criterion(f"task:{saved}", fm["tok"])
    assert rule.takes == "latents" and rule.tokenizer is fm["tok"]
    with pytest.raises(AlitError, match="latents of the model"):
        parse_criterion(f"task:{saved}", alit.build("tiny"))


@pytest.fixture(scope="module")
def analysis(fm, folder):
    out = folder / "out"
    code = main(["analyze", "task", "--data", str(folder / "data"), "--task-model", str(folder / "cnn.pt"),
                 "--labels", "--out", str(out)])
    assert code == 0
    return out, json.loads((out / "task.json").read_text())


@needs_fashion
def test_analyze_task(fm, folder, analysis):
    out, r = analysis
    tok, cnn = fm["tok"], fm["cnn"]
    assert r["data"]["images"] == 16 and r["lengths"] == tok.config.lengths
    from alit.eval.inputs import batches, protocol

    paths = sorted((folder / "data").rglob("*.png"))
    batch = next(batches(paths, 64, protocol("resize-crop"), len(paths)))
    enc = tok.encode(batch.images, criterion=EightBit(alit.TaskAgrees(cnn)))  # what the page reports, by encode
    by_file = {rec["file"]: rec for rec in r["images"]}
    names = [str(p.relative_to(folder / "data")) for p in batch.paths]
    assert [by_file[n]["task_tokens"] for n in names] == enc.lengths.tolist()
    own = tok.encode(batch.images).lengths.tolist()  # the model's own rule
    assert [by_file[n]["tokens"][tok.config.criterion] for n in names] == own
    e = r["rules"][tok.config.criterion]
    t = e["paired_test"]
    assert t["fewer"] + t["equal"] + t["more"] == 16
    assert t["fewer"] == sum(a < b for a, b in zip(enc.lengths.tolist(), own))
    assert r["task_tokens"]["mean"] == pytest.approx(float(enc.lengths.float().mean()))
    labels = [fashion_mnist.CLASSES.index(Path(n).parts[0]) for n in names]
    last = r["at_length"][-1]
    assert 0 <= last["accuracy"] <= 1 and r["at_length"][0]["agreement"] <= last["agreement"] + 1
    assert r["accuracy"]["input"] == pytest.approx(np.mean([by_file[n]["input_class"] == lab
                                                            for n, lab in zip(names, labels)]))
    for name in ("task.csv", "histograms.png", "scatter.png", "accuracy.png", "index.html"):
        assert (out / name).is_file()


@needs_fashion
@pytest.mark.skipif(CHROMIUM is None, reason=NO_CHROMIUM)
def test_analyze_task_page_renders(analysis, tmp_path):
    out, _ = analysis
    assert_renders(out / "index.html", tmp_path / "task.png", min_images=3 + 3)  # figures and an example row


def test_paired_tests():
    assert sign_test(0, 10) == pytest.approx(2 / 1024) and sign_test(5, 5) == 1.0 and sign_test(0, 0) == 1.0
    a, b = [16, 32, 16, 48, 16, 64, 32, 16], [32, 32, 48, 64, 32, 64, 64, 128]
    r = paired_test(a, b)
    assert (r["fewer"], r["equal"], r["more"]) == (6, 2, 0) and r["sign_p"] == pytest.approx(2 / 64)
    stats = pytest.importorskip("scipy.stats")
    assert r["wilcoxon_p"] == pytest.approx(stats.wilcoxon(a, b).pvalue) and r["test"] == "wilcoxon"
    same = paired_test([16, 32], [16, 32])
    assert same["wilcoxon_p"] is None and "same number" in same["wilcoxon_reason"] and same["p"] == 1.0


@pytest.mark.skipif(not RESNET.is_file(), reason=f"torchvision's ResNet-18 weights are not in the torch hub "
                    f"cache ({RESNET}); nothing is downloaded in tests")
def test_resnet18_from_the_hub_cache():
    import torchvision

    resnet = torchvision.models.resnet18()
    resnet.load_state_dict(torch.load(RESNET, weights_only=True))
    mean, std = torch.tensor([0.485, 0.456, 0.406])[:, None, None], torch.tensor([0.229, 0.224, 0.225])[:, None, None]

    def prep(x):  # ImageNet's input: 224 x 224, standardised
        return (torch.nn.functional.interpolate(x, size=(224, 224), mode="bilinear", antialias=True) - mean) / std

    from alit.demo import PHOTOS
    from alit.eval.inputs import batches, protocol

    tok = alit.load("default")
    images = next(batches(sorted(PHOTOS.glob("*.jpg"))[:4], 64, protocol("resize-crop"), 4)).images
    rule = alit.TaskAgrees(resnet, top_k=5, transform=prep)
    with torch.no_grad():
        roll = tok.rollout(images)
        target = resnet(prep(images)).argmax(1)
        agree = torch.stack([(resnet(prep(r.clamp(0, 1))).topk(5, 1).indices == target[:, None]).any(1)
                             for r in roll.reconstructions])
    agree[-1] = True
    assert tok.encode(images, criterion=rule).lengths.tolist() == [tok.config.lengths[i]
                                                                   for i in agree.int().argmax(0).tolist()]


def test_analyze_task_parser_stands_alone(tmp_path):
    """`add_parser(sub)` makes `task` a command of any group, with the options `run` reads."""
    import argparse

    from alit.cli import analyze_task

    sub = argparse.ArgumentParser(prog="x").add_subparsers(dest="command")
    analyze_task.add_parser(sub)
    args = sub.choices["task"].parse_args(["--data", "d", "--task-model", "m.pt", "--top-k", "2"])
    assert args.func is analyze_task.run
    assert (args.top_k, args.threshold, args.labels, args.limit) == (2, None, False, None)
    assert (args.checkpoint, args.protocol, args.out, args.criteria) == ("default", "resize-crop", "analyze-out", None)
    assert main(["analyze", "task", "--data", str(tmp_path)]) == 2  # no --task-model: one line, before any load
    assert main(["analyze", "task", "--data", str(tmp_path), "--task-model", "m.pt", "--top-k", "0"]) == 2
