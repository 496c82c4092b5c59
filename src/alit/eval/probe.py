"""`alit probe`: a linear classifier on the frozen latents at each token length.

Features: for each image and each length L, the bottleneck latents the decoder consumes
(`rollout(...).latents[i]`, [L, d]) pooled over the tokens: `mean` (d values, the default) or
`concat` (all L x d values, in token order). The tokenizer stays frozen.

Classifier: multinomial logistic regression in torch (one linear layer, features standardised with
the training set's mean and deviation, L2 penalty `weight_decay` on the weights, full-batch L-BFGS
from zero weights: deterministic). Split: a folder with `train/` and `test/` subfolders (each with
one folder per class) uses them; otherwise a stratified split of DIR/<class>/... seeded by `seed`.
"""
from __future__ import annotations

import csv
import json
import random
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from ..errors import AlitError
from ..images import IMAGE_SUFFIXES
from ..progress import progress_bar
from ..task_model import save_probe
from .inputs import batches, protocol
from .report import Page, pyplot, save_figure


@dataclass
class LabelledSet:
    paths: list[Path]
    labels: list[int]
    classes: list[str]


def labelled_folder(root: str | Path, classes: list[str] | None = None) -> LabelledSet:
    """DIR/<class>/<image>: images and class indices (classes sorted by name unless given)."""
    root = Path(root)
    if not root.is_dir():
        raise AlitError(f"{root}: no such folder (expected DIR/<class>/<images>)")
    found = sorted(p.name for p in root.iterdir() if p.is_dir())
    classes = classes or found
    if len(classes) < 2:
        raise AlitError(f"{root}: a probe needs at least two class folders, found {found}")
    paths, labels = [], []
    for c, name in enumerate(classes):
        folder = root / name
        files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES) if folder.is_dir() else []
        paths += files
        labels += [c] * len(files)
    if not paths:
        raise AlitError(f"{root}: no image files under its class folders")
    return LabelledSet(paths, labels, classes)


def split(root: str | Path, test_fraction: float, seed: int) -> tuple[LabelledSet, LabelledSet, str]:
    """(train, test, how) from DIR/train + DIR/test, or a seeded stratified split of DIR."""
    root = Path(root)
    if (root / "train").is_dir() and (root / "test").is_dir():
        train = labelled_folder(root / "train")
        test = labelled_folder(root / "test", train.classes)
        return train, test, "the folder's own train/ and test/ splits"
    if not 0 < test_fraction < 1:
        raise AlitError(f"--test-fraction must be between 0 and 1, got {test_fraction}")
    full = labelled_folder(root)
    rng = random.Random(seed)
    train_idx, test_idx = [], []
    for c in range(len(full.classes)):
        idx = [i for i, label in enumerate(full.labels) if label == c]
        rng.shuffle(idx)
        k = max(1, round(test_fraction * len(idx))) if len(idx) > 1 else 0
        test_idx += idx[:k]
        train_idx += idx[k:]
    pick = lambda ids: LabelledSet([full.paths[i] for i in sorted(ids)], [full.labels[i] for i in sorted(ids)],
                                   full.classes)
    return pick(train_idx), pick(test_idx), f"stratified, {test_fraction:g} of each class held out (seed {seed})"


@torch.no_grad()
def features(tok, paths: list[Path], pool: str = "mean", batch_size: int = 32, protocol_name: str = "resize-crop",
             progress: bool = False, desc: str = "alit probe") -> list[torch.Tensor]:
    """Pooled latents per length: a list (one per length) of [n, F] float32 tensors on the CPU.
    progress: a bar named `desc` on stderr when it is a terminal."""
    if pool not in ("mean", "concat"):
        raise AlitError(f"--pool must be mean or concat, got {pool!r}")
    device = next(tok.parameters()).device
    per_length: list[list[torch.Tensor]] = [[] for _ in tok.config.lengths]
    with progress_bar(len(paths), desc, progress) as bar:
        for batch in batches(paths, tok.config.image_size, protocol(protocol_name), batch_size, bar=bar):
            roll = tok.rollout(batch.images.to(device), pixels=False)
            for i, z in enumerate(roll.latents):  # [b, L, d]
                f = z.mean(1) if pool == "mean" else z.flatten(1)
                per_length[i].append(f.float().cpu())
    return [torch.cat(fs) for fs in per_length]


def fit_linear(x: torch.Tensor, y: torch.Tensor, classes: int, weight_decay: float = 1e-3,
               steps: int = 200) -> torch.nn.Linear:
    """Logistic regression on standardised features; returns a Linear taking *raw* features."""
    mean, std = x.mean(0), x.std(0).clamp_min(1e-6)
    z = (x - mean) / std
    layer = torch.nn.Linear(x.shape[1], classes, dtype=torch.float64)
    torch.nn.init.zeros_(layer.weight)
    torch.nn.init.zeros_(layer.bias)
    z, target = z.double(), y.long()
    opt = torch.optim.LBFGS(layer.parameters(), lr=1.0, max_iter=steps, tolerance_grad=1e-9,
                            tolerance_change=1e-12, history_size=20, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(layer(z), target) + 0.5 * weight_decay * layer.weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    # fold the standardisation into the layer, so it takes raw features
    with torch.no_grad():
        w = layer.weight / std.double()
        b = layer.bias - (w * mean.double()).sum(1)
        out = torch.nn.Linear(x.shape[1], classes, dtype=torch.float64)
        out.weight.copy_(w)
        out.bias.copy_(b)
    return out


def accuracy(layer: torch.nn.Linear, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((layer(x.double()).argmax(1) == y).double().mean())


def run_probe(tok, data: str | Path, out: str | Path, lengths: list[int], pool: str = "mean",
              test_fraction: float = 0.25, seed: int = 0, weight_decay: float = 1e-3,
              batch_size: int = 32, limit: int | None = None, log=None, save: str | Path | None = None,
              progress: bool = True) -> dict:
    """Features at each length, a probe per length, accuracy on the test split; writes the report.
    save: a file to keep the head of the longest length probed in (`alit.task_model.save_probe`).
    progress: a bar per split on stderr when it is a terminal."""
    log = log or (lambda line: print(line, file=sys.stderr))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    train, test, how = split(data, test_fraction, seed)
    if limit is not None:  # per split, spread over the classes by taking a seeded sample
        train, test = _limit(train, limit, seed), _limit(test, max(1, limit // 4), seed)
    if not test.paths:
        raise AlitError(f"{data}: the test split is empty (too few images per class)")
    log(f"probe: {len(train.paths)} training and {len(test.paths)} test images, {len(train.classes)} classes ({how})")
    index = [tok.config.lengths.index(L) for L in lengths]
    x_train = features(tok, train.paths, pool, batch_size, progress=progress, desc="alit probe: training images")
    x_test = features(tok, test.paths, pool, batch_size, progress=progress, desc="alit probe: test images")
    y_train, y_test = torch.tensor(train.labels), torch.tensor(test.labels)
    majority = max(range(len(train.classes)), key=lambda c: (train.labels.count(c), -c))
    rows, layers = {}, {}
    for L, i in zip(lengths, index):
        torch.manual_seed(seed)
        layer = layers[L] = fit_linear(x_train[i], y_train, len(train.classes), weight_decay)
        rows[str(L)] = {"train_accuracy": accuracy(layer, x_train[i], y_train),
                        "test_accuracy": accuracy(layer, x_test[i], y_test), "features": x_train[i].shape[1]}
        log(f"probe: {L:4d} tokens: test accuracy {rows[str(L)]['test_accuracy']:.4f}")
    results = {
        "data": str(data), "split": how, "classes": train.classes,
        "train_images": len(train.paths), "test_images": len(test.paths),
        "pool": pool, "weight_decay": weight_decay, "seed": seed,
        # the majority-class baseline: always the class most frequent among the training images
        "chance_accuracy": float((y_test == majority).double().mean()),
        "majority_class": train.classes[majority], "uniform_chance": 1 / len(train.classes),
        "model": {"fingerprint": tok.fingerprint(), "latent_dim": tok.config.latent_dim},
        "lengths": rows,
    }
    if save is not None:  # a task model for alit.TaskAgrees (task:PATH)
        results["saved"] = {"path": str(save_probe(layers[max(lengths)], save, pool=pool, length=max(lengths),
                                                   classes=train.classes, model=tok.fingerprint(),
                                                   latent_dim=tok.config.latent_dim)), "length": max(lengths)}
    (out / "probe.json").write_text(json.dumps(results, indent=1) + "\n")
    with open(out / "probe.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["tokens", "features", "train_accuracy", "test_accuracy"])
        for L, r in rows.items():
            w.writerow([L, r["features"], f"{r['train_accuracy']:.6f}", f"{r['test_accuracy']:.6f}"])
    _plot(results, out / "accuracy.png")
    page = Page("alit probe")
    page.definitions([("data", f"{data}: {len(train.paths)} train / {len(test.paths)} test images, "
                               f"{len(train.classes)} classes ({how})"),
                      ("features", f"bottleneck latents pooled over tokens ({pool}); frozen tokenizer"),
                      ("classifier", f"multinomial logistic regression, L-BFGS, L2 {weight_decay:g}, "
                                     "standardised features"),
                      ("majority-class baseline", chance_line(results))])
    page.table(["tokens", "features", "train accuracy", "test accuracy"],
               [[L, r["features"], r["train_accuracy"], r["test_accuracy"]] for L, r in rows.items()])
    page.figure("accuracy.png", "Linear-probe accuracy against the number of tokens")
    page.write(out / "index.html")
    return results


def chance_line(results: dict) -> str:
    """What the majority-class baseline is, with uniform chance beside it."""
    k = len(results["classes"])
    return (f"{results['chance_accuracy']:.4f} on this test split (always answering {results['majority_class']!r}, "
            f"the most frequent class among the training images); uniform chance 1/{k} = {1 / k:.4f}")


def _limit(s: LabelledSet, n: int, seed: int) -> LabelledSet:
    if len(s.paths) <= n:
        return s
    idx = sorted(random.Random(seed).sample(range(len(s.paths)), n))
    return LabelledSet([s.paths[i] for i in idx], [s.labels[i] for i in idx], s.classes)


def _plot(results: dict, path: Path) -> None:
    plt = pyplot()
    xs = [int(k) for k in results["lengths"]]
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    ax.plot(xs, [r["test_accuracy"] for r in results["lengths"].values()], "o-", label="test")
    ax.plot(xs, [r["train_accuracy"] for r in results["lengths"].values()], "s--", alpha=0.6, label="train")
    ax.axhline(results["chance_accuracy"], color="gray", ls=":", label="majority class")
    ax.set_xlabel("tokens per image")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(fig, path)
