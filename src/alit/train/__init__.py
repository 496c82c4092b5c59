"""Training: `alit.train.run("distill", "tiny", data=DIR)` is what `alit train distill --config tiny
--data DIR` calls. The stages (`STAGES`, stages.py): `base` (the 2D tokenizer), `distill` (stage 1),
`finetune` (stage 2).

    import alit.train
    base = alit.train.run("base", "tiny", data="photos/", out="runs/base")
    run = alit.train.run("distill", "tiny", data="photos/", out="runs/distill", base=base)
    tok = alit.load(run)                        # the newest checkpoint's EMA weights

Under `torchrun` every process calls the same `run`; only rank 0 writes. Ctrl-C or SIGTERM ends the
step under way, writes its checkpoint and raises `interrupt.Interrupted` (a KeyboardInterrupt).
"""
from __future__ import annotations

from pathlib import Path

from .. import dist
from ..errors import AlitError
from . import checkpoint, recipe_loader
from .loop import fit
from .recipe import Recipe
from .stages import STAGE_NAMES, STAGES, StageSpec, stage_spec

__all__ = ["Recipe", "STAGES", "STAGE_NAMES", "StageSpec", "load_recipe", "run", "stage_spec"]


def load_recipe(stage: str, config: str | Path | Recipe | None = "tiny", *, data=None, max_steps=None,
                base=None, init=None, overrides=(), run_dir: Path | None = None) -> Recipe:
    """The recipe a run uses: a saved run's own (resuming), else `config`; then the overrides."""
    sets = list(overrides)
    for key, value in (("data", data), ("max_steps", max_steps), ("base", base), ("init", init)):
        if value is not None:
            sets.append(f"{key}={value}" if key == "max_steps" else f"{key}={_quote(value)}")
    if run_dir is not None and (Path(run_dir) / "recipe.yaml").is_file():
        return recipe_loader.load(Path(run_dir) / "recipe.yaml", stage, sets)
    if isinstance(config, Recipe):
        if config.stage != stage:
            raise AlitError(f"a {config.stage!r} recipe cannot run the {stage!r} stage")
        return recipe_loader.from_dict(config.to_dict(), sets, source="recipe")
    if config is None:
        raise AlitError("no recipe: give --config NAME_OR_FILE")
    return recipe_loader.load(config, stage, sets)


def _quote(value) -> str:
    text = str(value)
    return "'" + text.replace("'", "''") + "'"  # a YAML string, whatever the path looks like


def run(stage: str, config: str | Path | Recipe | None = "tiny", *, data: str | Path | None = None,
        out: str | Path | None = None, max_steps: int | None = None, resume: bool = False,
        overrides: list[str] | tuple[str, ...] = (), base: str | Path | None = None,
        init: str | Path | None = None, progress: bool = True) -> Path:
    """Train one stage; returns the run folder (its newest model loads with `alit.load`)."""
    spec = stage_spec(stage)
    device = dist.init()
    try:
        run_dir = Path(out) if out is not None else None
        if resume and run_dir is None:
            raise AlitError("--resume needs --out RUN_DIR (the run to continue)")
        if resume and not run_dir.is_dir():
            raise AlitError(f"--resume: {run_dir} is not a run folder")
        r = load_recipe(stage, config, data=data, max_steps=max_steps, base=base, init=init,
                        overrides=overrides, run_dir=run_dir if resume else None)
        if run_dir is None:
            name = Path(str(config)).stem if not isinstance(config, Recipe) else "recipe"
            run_dir = dist.broadcast_object(_fresh_dir(Path("runs") / f"{stage}-{name}") if dist.is_main() else None)
        elif not resume and checkpoint.is_run(run_dir) and checkpoint.checkpoints(run_dir):
            raise AlitError(f"{run_dir} already holds a run: add --resume to continue it, or choose another --out")
        return fit(r, spec.stage, run_dir, device, resume=resume, progress=progress)
    finally:
        dist.shutdown()


def _fresh_dir(path: Path) -> Path:
    if not path.exists():
        return path
    n = 2
    while Path(f"{path}-{n}").exists():
        n += 1
    return Path(f"{path}-{n}")
