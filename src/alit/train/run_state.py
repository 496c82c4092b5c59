"""What a checkpoint keeps of a run besides its weights (train_state.pt): the raw weights, the
optimizers and loss scaler, the EMA's update count, the codebook usage, the RNG states, the
skipped files and non-finite streak; written by `save`, read back by `restore`."""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file

from . import checkpoint
from .ema import EMA
from .optim import OptimizerStep
from .stage import Stage


@dataclass
class Counters:
    """The run's bookkeeping that a resumed run continues."""

    nonfinite_streak: int = 0  # non-finite steps in a row
    skipped_files: set[str] = field(default_factory=set)  # unreadable images met so far


@dataclass
class Saved:
    """The newest checkpoint of a run being resumed."""

    path: Path
    state: dict  # train_state.pt

    @property
    def step(self) -> int:
        return self.state["step"]

    def counters(self) -> Counters:
        return Counters(self.state.get("nonfinite_streak", 0), set(self.state.get("skipped_files", [])))


def newest(run_dir: Path, device: torch.device) -> Saved | None:
    path = checkpoint.latest(run_dir)
    return Saved(path, checkpoint.load_state(path, device)) if path is not None else None


def restore(saved: Saved, stage: Stage, update: OptimizerStep, ema: EMA | None, device: torch.device) -> None:
    """Put a run back where `saved` left it: weights, optimizers, EMA, codebook usage, RNG."""
    state = saved.state
    stage.model.load_state_dict(state["model"])
    stage.load_extra_state(state.get("extra", {}))
    if stage.restarter is not None:
        stage.restarter.load_state_dict(state.get("codebook_usage", {}))
    update.load_state_dict(state)
    if ema is not None:
        ema.load({k: v.to(device) for k, v in load_file(str(saved.path / "model.safetensors")).items()},
                 state.get("ema_updates", 0))
    _restore_rng(state.get("rng", {}))


def save(run_dir: Path, step: int, world: int, stage: Stage, update: OptimizerStep, ema: EMA | None,
         counters: Counters) -> Path:
    """Checkpoint `step` (the EMA weights, or the raw ones without an EMA, as the model)."""
    weights = ema.state_dict(like=stage.model) if ema is not None else stage.model.state_dict()
    train_state = {
        "step": step,
        "world_size": world,
        "recipe": stage.recipe.to_dict(),
        "model": {k: v.detach().cpu() for k, v in stage.model.state_dict().items()},
        "extra": stage.extra_state(),
        "codebook_usage": stage.restarter.state_dict() if stage.restarter is not None else {},
        **update.state_dict(),  # "optimizers", "scaler"
        "ema_updates": ema.updates if ema is not None else 0,
        "nonfinite_streak": counters.nonfinite_streak,
        "skipped_files": sorted(counters.skipped_files),
        "rng": {"torch": torch.get_rng_state(), "python": list(_flatten_py_state(random.getstate())),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []},
    }
    return checkpoint.save(run_dir, step, lambda folder, source: stage.write_model(weights, folder, source),
                           train_state, stage.recipe.keep_checkpoints)


def _flatten_py_state(st):
    version, internal, gauss = st
    return [version, list(internal), gauss]


def _restore_rng(rng: dict) -> None:
    if "torch" in rng:
        torch.set_rng_state(rng["torch"].cpu())
    if rng.get("python"):
        version, internal, gauss = rng["python"]
        random.setstate((version, tuple(internal), gauss))
    if rng.get("cuda") and torch.cuda.is_available() and len(rng["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in rng["cuda"]])
