"""`alit analyze task`: the tokens a downstream task needs against the tokens the model's own
reconstruction rule needs, per image and in aggregate (the paper's third claim).

Per batch, one rollout gives every length. The task model (`alit.TaskAgrees`) judges the input and
the reconstruction at each length, the reconstruction clamped and rounded to 8 bits as the protocol
scores it (a latent model reads the latents at each length and its judgment of the longest code is
the reference); the task's length is the shortest it agrees on, the longest when none is (the same
choice as `tok.encode(images, criterion=EightBit(rule))`). Each reconstruction rule (the model's own
by default) chooses as `alit analyze complexity` does.

Results: the mean and median tokens of each, a paired test (Wilcoxon signed-rank, else a sign test)
of task against rule, and at every length the share of images the task judges as it judges the
input, with its accuracy against the labels when the images lie in DIR/<class>/ folders.
"""
from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
import torch

from ..criteria import EightBit, first_accepted, score_dtype
from ..errors import AlitError
from ..progress import progress_bar
from ..criteria.task import TaskAgrees
from .analysis import _hist, rule as reconstruction_rule  # the same histograms as analyze
from .inputs import batches, image_names, image_paths, protocol
from .paired import paired_test, verdict
from .task_page import EXAMPLES, write_report


def task_judgments(rule: TaskAgrees, images: torch.Tensor, roll, proto) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """(the task's output on each input [b, ...], its output at each length [b, ...] per length).
    Pixels are judged as the protocol scores them: the reconstruction clamped and made 8-bit."""
    if not rule.needs_pixels:
        outputs = [rule.outputs(z) for z in roll.latents]  # [b, L, d] per length
        return outputs[-1], outputs
    wide = score_dtype(images.device)  # as EightBit scores: the same 8-bit values, the same task inputs
    outputs = [rule.outputs(proto.finish(r.to(wide))) for r in roll.reconstructions]
    return rule.outputs(images.to(wide)), outputs


def first_agreeing(agree: torch.Tensor) -> torch.Tensor:
    """[T, b] bool -> [b] index of the first length agreed on, the last where none is."""
    forced = agree.clone()
    forced[-1] = True
    return forced.int().argmax(0)


def folder_labels(paths: list[Path], root: Path, classes: list[str] | None) -> tuple[list[int], list[str]]:
    """Class index of each image from its first folder under `root` (DIR/<class>/...): the task model's
    own class names when it has them, else the folders in sorted order."""
    folders = []
    for p in paths:
        parts = p.relative_to(root).parts
        if len(parts) < 2:
            raise AlitError(f"--labels: {p} is not inside a class folder (expected DIR/<class>/<image>)")
        folders.append(parts[0])
    names = list(classes) if classes else sorted(set(folders))
    unknown = sorted(set(folders) - set(names))
    if unknown:
        raise AlitError(f"--labels: folders {unknown} are not classes of the task model ({names})")
    return [names.index(f) for f in folders], names


def analyze_task(tok, data: str | Path, rule: TaskAgrees, out: str | Path, criteria: list | None = None,
                 labels: bool = False, protocol_name: str = "resize-crop", batch_size: int = 8,
                 limit: int | None = None, task_name: str = "task model", log=None, progress: bool = True) -> dict:
    """Task tokens against reconstruction-rule tokens over the images of `data`; writes task.json,
    task.csv, figures and index.html to `out` and returns the results. criteria: reconstruction
    rules (numbers t: L1 < t, or NAME:VALUE), default the model's own. labels: DIR/<class>/ folders.
    progress: a bar on stderr when it is a terminal."""
    log = log or (lambda line: print(line, file=sys.stderr))
    data, out = Path(data), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rules = [reconstruction_rule(c) for c in (criteria or [tok.config.criterion])]
    proto = protocol(protocol_name)
    paths = image_paths([data], "alit analyze", limit, log)
    truth, classes = folder_labels(paths, data, rule.classes) if labels else (None, rule.classes)
    label_of = dict(zip(paths, truth)) if truth is not None else {}
    records, examples, failed = [], [], []
    with progress_bar(len(paths), "alit analyze task", progress) as bar:
        for batch in batches(paths, tok.config.image_size, proto, batch_size, on_error=failed.append, bar=bar):
            found = _batch(tok, rule, rules, proto, batch, data, label_of)
            records += found[0]
            examples = sorted(examples + found[1], key=lambda e: -e["gap"])[:EXAMPLES]
    for line in failed:
        log(f"alit analyze: skipped: {line}")
    if not records:
        raise AlitError(f"{data}: none of the {len(paths)} image file(s) could be read")
    results = summarize(records, rules, tok.config.lengths, rule, labels=truth is not None)
    results.update(data={"path": str(data), "images": len(records), "unreadable": len(failed)},
                   protocol=proto.name, image_size=tok.config.image_size, classes=classes,
                   model={"fingerprint": tok.fingerprint()},
                   task={"name": task_name, "rule": repr(rule), "takes": rule.takes, "top_k": rule.top_k,
                         "threshold": rule.threshold})
    (out / "task.json").write_text(json.dumps(results, indent=1) + "\n")
    _write_csv(records, rules, out / "task.csv")
    write_report(results, examples, out)
    return results


@torch.no_grad()
def _batch(tok, rule: TaskAgrees, rules, proto, batch, root: Path, label_of: dict) -> tuple[list, list]:
    """Records of one batch, and example candidates (input and the two chosen reconstructions)."""
    images = batch.images.to(next(tok.parameters()).device)
    roll = tok.rollout(images)
    lengths = tok.config.lengths
    reference, outputs = task_judgments(rule, images, roll, proto)
    agree = torch.stack([rule.agrees(reference, o) for o in outputs])  # [T, b]
    chosen = first_agreeing(agree).tolist()
    own = [first_accepted(EightBit.of(r.criterion, proto.truncate), images, roll).tolist() for r in rules]
    dense = rule.threshold is not None
    classes = None if dense else [reference.argmax(1).tolist()] + [o.argmax(1).tolist() for o in outputs]
    errors = [rule.error(reference, o).tolist() for o in outputs] if dense else None
    records, candidates = [], []
    for j, (path, name) in enumerate(zip(batch.paths, image_names(batch.paths, root))):
        record = {"file": name, "label": label_of.get(path), "task_tokens": lengths[chosen[j]],
                  "tokens": {r.key: lengths[c[j]] for r, c in zip(rules, own)},
                  "agrees": [bool(a) for a in agree[:, j].tolist()]}
        if classes is not None:
            record.update(input_class=classes[0][j], classes=[c[j] for c in classes[1:]])
        if errors is not None:
            record["errors"] = [e[j] for e in errors]
        records.append(record)
        first_rule = own[0][j]
        candidates.append({"file": name, "gap": lengths[first_rule] - lengths[chosen[j]], "record": record,
                           "input": images[j].cpu(),
                           "at_task": proto.finish(roll.reconstructions[chosen[j]][j]).cpu(),
                           "at_rule": proto.finish(roll.reconstructions[first_rule][j]).cpu()})
    return records, sorted(candidates, key=lambda e: -e["gap"])[:EXAMPLES]


def summarize(records: list[dict], rules, lengths: list[int], rule: TaskAgrees, labels: bool) -> dict:
    """Means, medians, histograms, the paired tests and the task's answers at every length."""
    task = [r["task_tokens"] for r in records]
    per_rule = {}
    for one in rules:
        own = [r["tokens"][one.key] for r in records]
        test = paired_test(task, own)
        per_rule[one.key] = {"label": one.label, "mean_tokens": float(np.mean(own)),
                             "median_tokens": float(np.median(own)), "histogram": _hist(own),
                             "paired_test": test, "verdict": verdict(test)}
    at_length = []
    for i, L in enumerate(lengths):
        row = {"tokens": L, "agreement": float(np.mean([r["agrees"][i] for r in records]))}
        if labels and "classes" in records[0]:
            row["accuracy"] = float(np.mean([r["classes"][i] == r["label"] for r in records]))
        if "errors" in records[0]:
            row["mean_error"] = float(np.mean([r["errors"][i] for r in records]))
        at_length.append(row)
    results = {"lengths": lengths, "task_tokens": {"mean": float(np.mean(task)), "median": float(np.median(task)),
                                                   "histogram": _hist(task)},
               "rules": per_rule, "at_length": at_length, "images": records}
    if labels and "classes" in records[0]:
        idx = {L: i for i, L in enumerate(lengths)}
        results["accuracy"] = {
            "input": (float(np.mean([r["input_class"] == r["label"] for r in records])) if rule.needs_pixels
                      else None),  # a latent model's "input" is the longest code
            "at_task_tokens": float(np.mean([r["classes"][idx[r["task_tokens"]]] == r["label"] for r in records])),
            **{f"at_rule_tokens:{one.key}": float(np.mean([r["classes"][idx[r["tokens"][one.key]]] == r["label"]
                                                         for r in records])) for one in rules}}
    return results


def _write_csv(records: list[dict], rules, path: Path) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "label", "task_tokens"] + [f"tokens@{one.key}" for one in rules] + ["input_class"])
        for r in records:
            w.writerow([r["file"], "" if r["label"] is None else r["label"], r["task_tokens"]]
                       + [r["tokens"][one.key] for one in rules] + [r.get("input_class", "")])
