"""The paper's third claim with task models trained here: does a classifier need fewer tokens than the
model's own reconstruction rule? Writes benchmarks/results/task_rule.md (and task_rule.json).

    python benchmarks/task_rule.py                    # about 3 minutes on a 2-core CPU
    python benchmarks/task_rule.py --images 64 --out /tmp/task   # quicker

With the bundled model (`alit.load("default")`, 64 px) and its own rule:
1. Fashion-MNIST test images (labels: the task's accuracy at every length), judged by a small CNN
   trained here on Fashion-MNIST training images (`FashionClassifier`: its own preprocessing,
   gray and 28 x 28, inside it), and by a linear probe on the tokenizer's latents (pixel-free).
2. The 48 held-out demo photos (no labels) judged by the same CNN: its decision only, out of domain.
3. The rule's cost: `encode` with the task rule against a fixed-length encode, the same batch.

Needs Debian's dataset-fashion-mnist (/usr/share/datasets/fashion-mnist).
"""
import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import alit
from alit.criteria import EightBit
from alit.demo import PHOTOS
from alit.data.acquire import fashion_mnist
from alit.eval.probe import features, fit_linear, labelled_folder
from alit.eval.task_analysis import analyze_task
from alit.task_model import LatentProbe

RESULTS = Path(__file__).parent / "results"


class FashionClassifier(nn.Module):
    """A small CNN for Fashion-MNIST that takes images [B, 3, H, W] in [0, 1] of any size: its own
    preprocessing (gray, 28 x 28, antialiased, standardised) is inside, so it scripts to one file."""

    classes: list[str]  # TorchScript keeps an attribute typed here (so no `from __future__ import annotations`)

    def __init__(self, classes: list[str] = list(fashion_mnist.CLASSES)):
        super().__init__()
        self.classes = list(classes)
        self.net = nn.Sequential(  # small, so that it trains in seconds on a CPU
            nn.Conv2d(1, 8, 5, stride=2, padding=2), nn.ReLU(),   # [B, 8, 14, 14]
            nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(),  # [B, 16, 7, 7]
            nn.Flatten(), nn.Linear(16 * 7 * 7, len(classes)))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(self.preprocess(images))  # [B, classes]

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] in [0, 1] -> [B, 1, 28, 28] gray, standardised."""
        gray = images.mean(1, keepdim=True)  # [B, 1, H, W]
        if gray.shape[-1] != 28 or gray.shape[-2] != 28:
            gray = F.interpolate(gray, size=(28, 28), mode="bilinear", antialias=True, align_corners=False)
        return (gray - 0.286) / 0.353


def fashion_arrays(split: str, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first n images [n, 1, 28, 28] in [0, 1] and labels [n] of a Fashion-MNIST split."""
    images_file, labels_file = fashion_mnist.FILES[split]
    images = fashion_mnist.read_idx(fashion_mnist.DEBIAN_DIR / images_file)[:n]
    labels = fashion_mnist.read_idx(fashion_mnist.DEBIAN_DIR / labels_file)[:n]
    return torch.from_numpy(images.copy()).float()[:, None] / 255, torch.from_numpy(labels.astype(np.int64))


def as_the_tokenizer_sees(x28: torch.Tensor, size: int = 64) -> torch.Tensor:
    """[n, 1, 28, 28] -> [n, 3, size, size] on the 8-bit grid: resize-crop's bicubic enlargement."""
    big = F.interpolate(x28, size=(size, size), mode="bicubic", antialias=True, align_corners=False)
    return (big.clamp(0, 1).expand(-1, 3, -1, -1) * 255).round() / 255


def train_classifier(n: int = 6000, epochs: int = 3, size: int = 64, seed: int = 0) -> FashionClassifier:
    """FashionClassifier trained on the first n training images, as the tokenizer is given them."""
    torch.manual_seed(seed)
    x, y = fashion_arrays("train", n)
    model = FashionClassifier()
    x = model.preprocess(as_the_tokenizer_sees(x, size))  # once: the preprocessing has no weights
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for idx in torch.randperm(n, generator=g).split(64):
            loss = F.cross_entropy(model.net(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval().requires_grad_(False)


def train_probe(tok, train_dir: Path, n: int) -> LatentProbe:
    """A mean-pooled linear probe on the longest code's latents of n training images of train_dir."""
    data = labelled_folder(train_dir, list(fashion_mnist.CLASSES))
    x = features(tok, data.paths[:n], pool="mean")[-1]  # [n, d] at the longest length
    layer = fit_linear(x, torch.tensor(data.labels[:n]), len(data.classes))
    return LatentProbe(layer.weight, layer.bias, "mean", tok.config.lengths[-1], data.classes, tok.fingerprint())


def encode_times(tok, images: torch.Tensor, rule, repeats: int = 2) -> dict:
    """Seconds per image of a fixed-length encode (the longest length), of encode with the task rule
    and with the model's own rule: best of `repeats`, the same batch."""
    def best(fn):
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return min(times) / len(images)

    return {"fixed_longest": best(lambda: tok.encode(images, num_tokens=tok.config.lengths[-1])),
            "task_rule": best(lambda: tok.encode(images, criterion=EightBit(rule))),
            "own_rule": best(lambda: tok.encode(images))}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=128, help="Fashion-MNIST test images (default 128)")
    p.add_argument("--probe-train", type=int, default=256, help="training images of the probe (default 256)")
    p.add_argument("--out", default=None, help="where the analysis pages go (default: a temporary folder)")
    p.add_argument("--results", default=str(RESULTS), help="folder of task_rule.md / task_rule.json")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (default 1: on a shared 2-core machine, 2 threads spin and run slower)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if not (fashion_mnist.DEBIAN_DIR / "t10k-labels-idx1-ubyte.gz").is_file():
        sys.exit(f"needs Fashion-MNIST: {fashion_mnist.APT_HINT}")
    torch.manual_seed(0)
    out = Path(args.out or tempfile.mkdtemp(prefix="task_rule-"))
    tok = alit.load("default")
    start = time.perf_counter()
    cnn = train_classifier()
    x, y = fashion_arrays("test", 1000)
    cnn_accuracy = float((cnn(as_the_tokenizer_sees(x)).argmax(1) == y).float().mean())
    trained = time.perf_counter() - start
    fm = out / "fashion-mnist"
    fashion_mnist.convert(fm, limit=max(args.images, args.probe_train))
    test = _subset(fm / "test", args.images)
    runs = {"cnn_fashion": analyze_task(tok, test, alit.TaskAgrees(cnn), out / "cnn_fashion", labels=True,
                                        task_name="FashionClassifier (CNN, pixels)")}
    probe = train_probe(tok, fm / "train", args.probe_train)
    runs["probe_fashion"] = analyze_task(tok, test, alit.TaskAgrees(probe, tokenizer=tok), out / "probe_fashion",
                                         labels=True, task_name="linear probe on latents (pixel-free)")
    runs["cnn_photos"] = analyze_task(tok, PHOTOS, alit.TaskAgrees(cnn), out / "cnn_photos",
                                      task_name="FashionClassifier on photos (its decision only)")
    batch = torch.stack([_read(q, tok) for q in sorted(test.rglob("*.png"))[:32]])
    times = encode_times(tok, batch, alit.TaskAgrees(cnn))
    summary = {"model": "default", "seconds": time.perf_counter() - start, "load_average": os.getloadavg()[0],
               "criterion": tok.config.criterion, "cnn_test_accuracy_1000": cnn_accuracy,
               "classifier_training_s": trained, "encode_s_per_image": times, "pages": str(out),
               "runs": {k: _brief(r) for k, r in runs.items()}, "threads": torch.get_num_threads()}
    Path(args.results).mkdir(parents=True, exist_ok=True)
    (Path(args.results) / "task_rule.json").write_text(json.dumps(summary, indent=1) + "\n")
    (Path(args.results) / "task_rule.md").write_text(report(summary, runs))
    print(f"wrote {args.results}/task_rule.md; pages under {out}")
    return summary


def _subset(folder: Path, n: int) -> Path:
    """The first n test images, spread over the classes (convert wrote them in index order)."""
    keep = sorted(folder.rglob("*.png"), key=lambda q: q.name)[:n]
    dest = folder.parent / f"test{n}"
    for q in keep:
        (dest / q.parent.name).mkdir(parents=True, exist_ok=True)
        if not (dest / q.parent.name / q.name).exists():
            (dest / q.parent.name / q.name).symlink_to(q.resolve())
    return dest


def _read(path: Path, tok) -> torch.Tensor:
    from alit.eval.inputs import protocol
    from alit.images import read_image

    return protocol("resize-crop").prepare(read_image(path, tok.config.image_size), tok.config.image_size)[0]


def _brief(r: dict) -> dict:
    key = next(iter(r["rules"]))
    e = r["rules"][key]
    return {"images": r["data"]["images"], "task_mean_tokens": r["task_tokens"]["mean"],
            "rule_mean_tokens": e["mean_tokens"], "paired_test": e["paired_test"], "verdict": e["verdict"],
            "at_length": r["at_length"], "accuracy": r.get("accuracy")}


def report(summary: dict, runs: dict) -> str:
    """task_rule.md: the figures and whether the claim holds for each task model."""
    lines = ["# Tokens a task needs against the model's own rule (benchmarks/task_rule.py)", "",
             f"Bundled model `default` (64 px, lengths 16..128), its own rule `{summary['criterion']}`, judged on "
             f"8-bit reconstructions. CPU, {summary['threads']} thread(s), load average {summary['load_average']:.1f} "
             f"(a shared 2-core machine), {summary['seconds']:.0f} s in all. The CNN (trained here on 6000 "
             f"Fashion-MNIST "
             f"training images, {summary['classifier_training_s']:.0f} s) has test accuracy "
             f"{summary['cnn_test_accuracy_1000']:.3f} on 1000 test images as the tokenizer sees them.", "",
             "| task model | images | mean tokens, task | mean tokens, own rule | task fewer / equal / more "
             "| Wilcoxon p | sign p | claim holds |", "|---|---|---|---|---|---|---|---|"]
    for key, b in summary["runs"].items():
        t = b["paired_test"]
        holds = "yes" if t["p"] < 0.05 and t["mean_difference"] < 0 else "no"
        lines.append(f"| {runs[key]['task']['name']} | {b['images']} | {b['task_mean_tokens']:.1f} | "
                     f"{b['rule_mean_tokens']:.1f} | {t['fewer']} / {t['equal']} / {t['more']} | "
                     f"{_p(t['wilcoxon_p'])} | {_p(t['sign_p'])} | {holds} |")
    for key, b in summary["runs"].items():
        lines += ["", f"## {runs[key]['task']['name']}", "", b["verdict"] + ".", ""]
        cols = [k for k in ("agreement", "accuracy") if k in b["at_length"][0]]
        lines += ["| tokens | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
        lines += [f"| {row['tokens']} | " + " | ".join(f"{row[c]:.3f}" for c in cols) + " |" for row in b["at_length"]]
        if b["accuracy"]:
            acc = b["accuracy"]
            parts = [f"on the input {acc['input']:.3f}" if acc["input"] is not None else None,
                     f"at the task's length {acc['at_task_tokens']:.3f}",
                     f"at the own rule's length {next(v for k, v in acc.items() if k.startswith('at_rule')):.3f}"]
            lines += ["", "Accuracy " + ", ".join(q for q in parts if q) + "."]
    t = summary["encode_s_per_image"]
    lines += ["", "## Cost", "", f"`encode` of 32 Fashion-MNIST images, best of 2, ms per image: fixed length 128 "
              f"{1e3 * t['fixed_longest']:.1f}; task rule (CNN) {1e3 * t['task_rule']:.1f}; own rule "
              f"{1e3 * t['own_rule']:.1f}.", ""]
    return "\n".join(lines)


def _p(p) -> str:
    return "n/a" if p is None else f"{p:.3g}"


if __name__ == "__main__":
    main()
