"""The page and figures of `alit analyze task` (eval/task_analysis.py makes the numbers)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..images import save_png
from .report import Img, Page, grid_of_axes, pyplot, save_figure

EXAMPLES = 6  # images shown: those the task needs the fewest tokens for, against the rule


def write_report(results: dict, examples: list[dict], out: Path) -> Path:
    """histograms.png, scatter.png, accuracy.png, examples/*.png and index.html in `out`."""
    _histograms(results, out / "histograms.png")
    _scatter(results, out / "scatter.png")
    _accuracy(results, out / "accuracy.png")
    page = Page("alit analyze task")
    task = results["task"]
    how = (f"relative output error below {task['threshold']:g}" if task["threshold"] is not None else
           "the same top-1 class as on the input" if task["top_k"] == 1 else
           f"the input's top-1 class within the top {task['top_k']}")
    reference = "the input image" if task["takes"] == "pixels" else "the longest code (it reads latents)"
    page.definitions([
        ("data", f"{results['data']['path']}: {results['data']['images']} images"),
        ("protocol", f"{results['protocol']} at {results['image_size']} px; reconstructions clamped, 8-bit"),
        ("task model", f"{task['name']}: {task['rule']}"),
        ("task's length", f"the shortest length whose reconstruction the task judges as it judges {reference} "
                          f"({how}); the longest when none is"),
        ("rule's length", "the shortest length whose 8-bit reconstruction passes the reconstruction rule"),
        ("paired test", "Wilcoxon signed-rank of task tokens against rule tokens per image (two-sided, equal "
                        "pairs dropped); an exact sign test without scipy")])
    page.heading("Tokens the task needs against tokens the reconstruction rule needs")
    rows = [["task", results["task_tokens"]["mean"], results["task_tokens"]["median"], "", "", "", "", ""]]
    for e in results["rules"].values():
        t = e["paired_test"]
        rows.append([e["label"], e["mean_tokens"], e["median_tokens"], t["fewer"], t["equal"], t["more"],
                     t["wilcoxon_p"], t["sign_p"]])
    page.table(["length of", "mean tokens", "median", "task fewer", "equal", "task more", "Wilcoxon p",
                "sign test p"], rows)
    page.notes([f"{e['label']}: {e['verdict']}" for e in results["rules"].values()])
    page.figure("histograms.png", "Tokens per image: the task's length against the rule's")
    page.figure("scatter.png", "Per image: the task's length against the rule's (jittered); below the diagonal "
                               "the task needs fewer tokens")
    _length_table(page, results)
    page.figure("accuracy.png", "At every length: how often the task judges the reconstruction as the input"
                + (", and its accuracy against the labels" if "accuracy" in results else ""))
    _examples(page, results, examples, out)
    return page.write(out / "index.html")


def _length_table(page: Page, results: dict) -> None:
    page.heading("The task at every length")
    rows = results["at_length"]
    header = ["tokens", "agrees with its judgment of the input"]
    keys = ["agreement"]
    for key, label in (("accuracy", "accuracy (labels)"), ("mean_error", "mean relative error")):
        if key in rows[0]:
            header.append(label)
            keys.append(key)
    page.table(header, [[r["tokens"]] + [r[k] for k in keys] for r in rows])
    acc = results.get("accuracy")
    if acc:
        pairs = [("input image", acc["input"]), ("at the task's length", acc["at_task_tokens"])]
        pairs += [(f"at the rule's length ({e['label']})", acc[f"at_rule_tokens:{k}"])
                  for k, e in results["rules"].items()]
        page.table(["accuracy of the task on", "accuracy"], [[a, b] for a, b in pairs])


def _examples(page: Page, results: dict, examples: list[dict], out: Path) -> None:
    if not examples:
        return
    first = next(iter(results["rules"].values()))["label"]
    page.heading(f"Where the task needs the fewest tokens against {first}")
    (out / "examples").mkdir(exist_ok=True)
    classes = results.get("classes")
    name = (lambda c: classes[c] if classes and 0 <= c < len(classes) else str(c))
    rows = []
    for i, e in enumerate(examples):
        r = e["record"]
        rule_tokens = next(iter(r["tokens"].values()))
        cells = []
        for kind, caption in (("input", "input"), ("at_task", f"task: {r['task_tokens']} tokens"),
                              ("at_rule", f"rule: {rule_tokens} tokens")):
            src = f"examples/{i:02d}_{kind}.png"
            save_png(e[kind], out / src)
            cells.append(Img(src, caption, width=128, highlight=kind == "at_task"))
        judged = name(r["input_class"]) if "input_class" in r else ""
        rows.append([r["file"], judged] + cells)
    page.table(["image", "class on the input", "input", "at the task's length", "at the rule's length"], rows, left=2,
               text=(2, 3, 4))


def _histograms(results: dict, path: Path) -> None:
    lengths = results["lengths"]
    fig, axes = grid_of_axes(len(results["rules"]), columns=2, size=(5.2, 3.4))
    xs, width = np.arange(len(lengths)), 0.4
    for ax, e in zip(axes, results["rules"].values()):
        pairs = (("task", results["task_tokens"]["histogram"]), (e["label"], e["histogram"]))
        for k, (label, hist) in enumerate(pairs):
            n = sum(hist.values())
            ax.bar(xs + (k - 0.5) * width, [hist.get(str(L), 0) / n for L in lengths], width, label=label)
        ax.set_xticks(xs, [str(L) for L in lengths], fontsize=8)
        ax.set_xlabel("tokens")
        ax.set_ylabel("fraction of images")
        ax.set_title(f"task vs {e['label']}", fontsize=10)
        ax.legend(fontsize=8)
    save_figure(fig, path)


def _scatter(results: dict, path: Path) -> None:
    lengths, step = results["lengths"], results["lengths"][0]
    fig, axes = grid_of_axes(len(results["rules"]), columns=2, size=(4.2, 4.0))
    rng = np.random.default_rng(0)
    task = np.array([r["task_tokens"] for r in results["images"]], dtype=float)
    for ax, (key, e) in zip(axes, results["rules"].items()):
        own = np.array([r["tokens"][key] for r in results["images"]], dtype=float)
        jitter = lambda v: v + rng.uniform(-0.3, 0.3, len(v)) * step  # noqa: E731 (tokens are discrete)
        ax.scatter(jitter(own), jitter(task), s=14, alpha=0.6)
        ax.plot([lengths[0], lengths[-1]], [lengths[0], lengths[-1]], color="gray", ls=":")
        ax.set_xlabel(f"tokens, {e['label']}")
        ax.set_ylabel("tokens, task")
        ax.set_title(f"mean {results['task_tokens']['mean']:.1f} (task) vs {e['mean_tokens']:.1f}", fontsize=10)
        ax.grid(alpha=0.3)
    save_figure(fig, path)


def _accuracy(results: dict, path: Path) -> None:
    plt = pyplot()
    rows = results["at_length"]
    xs = [r["tokens"] for r in rows]
    fig, ax = plt.subplots(figsize=(5.6, 3.6))
    ax.plot(xs, [r["agreement"] for r in rows], "o-", label="agrees with its judgment of the input")
    if "accuracy" in rows[0]:
        ax.plot(xs, [r["accuracy"] for r in rows], "s-", label="accuracy (labels)")
        if results["accuracy"]["input"] is not None:
            ax.axhline(results["accuracy"]["input"], color="gray", ls=":", label="accuracy on the input")
    if "mean_error" in rows[0]:
        ax.plot(xs, [r["mean_error"] for r in rows], "^--", label="mean relative error")
    ax.set_xlabel("tokens per image")
    ax.set_ylim(0, max([1.02] + [1.05 * r["mean_error"] for r in rows if "mean_error" in r]))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(fig, path)
