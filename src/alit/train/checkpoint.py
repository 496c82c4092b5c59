"""Run folders and their checkpoints.

    RUN/recipe.yaml              the resolved recipe (what --resume continues)
    RUN/log.jsonl                one JSON record per optimizer step
    RUN/train.log                human-readable events: data, substitutes, skipped files, checkpoints
    RUN/tensorboard/             scalars and reconstruction grids
    RUN/checkpoints/step-000100/ model.safetensors + config.json (EMA weights, our model format,
                                 loadable on their own) and train_state.pt (raw weights, optimizers,
                                 scaler, RNG, step)
    RUN/model.safetensors, RUN/config.json
                                 the newest checkpoint's model, hard-linked: `alit.load(RUN)` and
                                 `weights.load_module(RUN)` read a run folder as a model folder

A checkpoint is written into a temporary folder and renamed into place (os.replace), so a run
killed at any moment leaves only complete checkpoints; the newest `keep` are kept.
"""
from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import torch

from .. import weights
from ..errors import AlitError

CHECKPOINTS = "checkpoints"
STATE_FILE = "train_state.pt"
_NAME = re.compile(r"^step-(\d+)$")


def step_dir(run_dir: Path, step: int) -> Path:
    return Path(run_dir) / CHECKPOINTS / f"step-{step:08d}"


def checkpoints(run_dir: str | Path) -> list[tuple[int, Path]]:
    """Complete checkpoints of a run, oldest first."""
    folder = Path(run_dir) / CHECKPOINTS
    out = []
    if folder.is_dir():
        for d in folder.iterdir():
            m = _NAME.match(d.name)
            if m and (d / STATE_FILE).is_file() and (d / weights.CONFIG_FILE).is_file() \
                    and (d / weights.WEIGHTS_FILE).is_file():
                out.append((int(m.group(1)), d))
    return sorted(out)


def latest(run_dir: str | Path) -> Path | None:
    found = checkpoints(run_dir)
    return found[-1][1] if found else None


def is_run(path: str | Path) -> bool:
    return (Path(path) / CHECKPOINTS).is_dir() or (Path(path) / "recipe.yaml").is_file()


def model_dir(path: str | Path) -> Path:
    """The model folder (config.json + model.safetensors) a path stands for: a model folder
    itself, a checkpoint folder, or a run folder (its newest checkpoint's EMA weights)."""
    path = Path(path)
    if path.is_file():
        path = path.parent
    if is_run(path):
        newest = latest(path)
        if newest is None:
            raise AlitError(f"{path}: a run folder without a complete checkpoint yet")
        return newest
    return path


def save(run_dir: str | Path, step: int, write_model, train_state: dict, keep: int) -> Path:
    """Write checkpoint `step` atomically, publish it as the run's model, keep the newest `keep`.
    write_model(folder, source): writes the model's model.safetensors + config.json into folder."""
    run_dir = Path(run_dir)
    final = step_dir(run_dir, step)
    tmp = final.parent / f".tmp-{final.name}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    write_model(tmp, f"alit train, step {step}")
    torch.save(train_state, tmp / STATE_FILE)
    if final.exists():  # a rerun of the same step (resume from an older checkpoint)
        shutil.rmtree(final)
    os.replace(tmp, final)
    publish(run_dir, final)
    for _, old in checkpoints(run_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def publish(run_dir: Path, ckpt: Path) -> None:
    """Make RUN/model.safetensors and RUN/config.json the checkpoint's (hard links, else copies)."""
    for name in (weights.WEIGHTS_FILE, weights.CONFIG_FILE):
        tmp = run_dir / f".{name}.tmp"
        if tmp.exists():
            tmp.unlink()
        try:
            os.link(ckpt / name, tmp)
        except OSError:
            shutil.copyfile(ckpt / name, tmp)
        os.replace(tmp, run_dir / name)


def load_state(ckpt: Path, device: torch.device | str = "cpu") -> dict:
    try:
        return torch.load(ckpt / STATE_FILE, map_location=device, weights_only=True)
    except Exception as e:  # noqa: BLE001
        raise AlitError(f"{ckpt / STATE_FILE}: unreadable training state ({e})") from None


def clean_partial(run_dir: Path) -> None:
    """Remove temporary folders a killed run left behind."""
    folder = run_dir / CHECKPOINTS
    if folder.is_dir():
        for d in folder.iterdir():
            if d.name.startswith(".tmp-"):
                shutil.rmtree(d, ignore_errors=True)
