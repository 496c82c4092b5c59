"""The training loop every stage shares: `fit`, a composition of the named steps below.

A stage (`stages.py`) says what is built, what trains and what one micro-step computes; this file
does the rest:

    restore the newest checkpoint (--resume)
    for step in first..max_steps:                       # optimizer steps, 1-based
        lr = warm-up + cosine(step)                     # schedule.py, fitted to max_time
        for each accumulation micro-step:               # DDP averages gradients on the last one
            logs = stage.micro_step(images, step, backward)
        one all-reduce: the losses, new unreadable files, the pace, stop requests
        the update (optim.OptimizerStep): unscale, clip, step, EMA -- or none if non-finite
        (stop after `max_nonfinite` in a row)
        one log.jsonl record; previews every `image_every` steps
        a checkpoint every `checkpoint_every` steps, at the end, and on Ctrl-C / SIGTERM
"""
from __future__ import annotations

import contextlib
import math
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from .. import dist
from ..data import BatchPlan
from ..errors import AlitError
from ..precision import autocast_dtype, set_precision
from . import checkpoint, run_state
from .ema import EMA
from .interrupt import Interrupted, StopRequests
from .monitor import Monitor, truncate_log
from .optim import OptimizerStep, Update
from .previews import ignored_latents
from .recipe import Recipe, dump
from .run_state import Counters, Saved
from .schedule import Schedule
from .stage import Stage
from .stages import stage_spec

# the clock of a run's pace and max_time: tests inject a fake one, so that their verdict does not
# depend on the machine's speed
clock = time.time


def _now() -> float:
    return clock()  # looked up at each call, so that a clock set by a test is the one read


@dataclass
class Run:
    """A run being trained: what `start` sets up and every step uses."""

    recipe: Recipe
    stage: Stage
    run_dir: Path
    device: torch.device
    accum: int                      # micro-steps per optimizer step
    schedule: Schedule
    update: OptimizerStep
    ema: EMA | None
    monitor: Monitor
    batches: Iterator | None        # (images, unreadable files) per micro-step
    autocast: contextlib.AbstractContextManager
    preview: torch.Tensor | None    # the fixed preview batch (main process, image_every > 0)
    counters: Counters
    rate: float | None = None       # images/s, smoothed
    last_time: float = 0.0          # monitor.elapsed at the previous step


@dataclass
class Shared:
    """What every process agrees on after a step's all-reduce."""

    logs: dict[str, float]          # the step's scalars, averaged over micro-steps and processes
    new_skips: bool                 # some process met unreadable files it had not met before
    elapsed: float                  # mean seconds since the start (max_time decides on this)
    stop: bool                      # some process was asked to stop (Ctrl-C, SIGTERM)


def fit(recipe: Recipe, stage_cls, run_dir: Path, device: torch.device, *, resume: bool = False,
        progress: bool = True) -> Path:
    """Train `stage_cls` as `recipe` says into `run_dir` (inside dist.init() / dist.shutdown())."""
    run_dir = Path(run_dir)
    # tiny gradients square to denormals in Adam's second moment; on a CPU they are 10-100x slower
    torch.set_flush_denormal(True)
    if not recipe.data:
        raise AlitError("no training data: give --data DIR (an image folder or WebDataset shards) "
                        "or set `data` in the recipe")
    saved = run_state.newest(run_dir, device) if resume else None
    first = saved.step + 1 if saved is not None else 1
    prepare_folder(run_dir, recipe, first - 1, resume)
    run = start(recipe, stage_cls, run_dir, device, saved, progress)
    try:
        with StopRequests() as stop:
            step, logs = train(run, first, stop)
        run.monitor.event(f"done: step {step}, loss {logs.get('loss')}; model in {run_dir}: "
                          f"{stage_spec(recipe.stage).result_of(run_dir)}")
    finally:
        run.monitor.close()
        run.batches = None  # ends the data workers
    return run_dir


def prepare_folder(run_dir: Path, recipe: Recipe, last_kept: int, resume: bool) -> None:
    if dist.is_main():
        run_dir.mkdir(parents=True, exist_ok=True)
        checkpoint.clean_partial(run_dir)
        # a resumed run redoes the steps after its checkpoint (all of them without one): their
        # records go, so every step keeps exactly one
        truncate_log(run_dir / "log.jsonl", last_kept)
        if not resume:
            (run_dir / "train.log").unlink(missing_ok=True)
        (run_dir / "recipe.yaml").write_text(dump(recipe))
    dist.barrier()


def start(recipe: Recipe, stage_cls, run_dir: Path, device: torch.device, saved: Saved | None,
          progress: bool) -> Run:
    """Everything before the first step, in an order that a resumed run repeats exactly."""
    world, begun = dist.world_size(), saved.step if saved is not None else 0
    micro, accum = batch_split(recipe, world)
    torch.manual_seed(recipe.seed)  # the same initial weights on every process
    log_lines: list[str] = []
    stage: Stage = stage_cls(recipe, device, log_lines.append,
                             saved_meta=stage_cls.read_model_meta(saved.path) if saved is not None else None)
    data = stage.training_data(BatchPlan(recipe.batch_size, micro, dist.rank(), world, recipe.seed, begun + 1))
    size = data.size or recipe.dataset_size
    stage.steps_per_epoch = size / recipe.batch_size if size else None
    schedule = Schedule(recipe, stage.steps_per_epoch, begun)
    if schedule.max_steps < 1:
        raise AlitError(f"max_steps must be at least 1, got {schedule.max_steps}")
    if begun >= schedule.max_steps:
        raise AlitError(f"{run_dir}: its newest checkpoint is at step {begun}, not before max_steps "
                        f"{schedule.max_steps}: nothing to do (raise --max-steps to train longer)")
    amp_dtype = resolve_precision(recipe.precision, device)
    # TF32 on only when asked: under autocast the float32 that remains (ids, losses) stays exact
    set_precision("tf32" if recipe.precision == "tf32" else "fp32")
    update = OptimizerStep(stage.optimizers(), recipe.grad_clip, accum=accum, fp16=amp_dtype == torch.float16)
    ema = EMA(stage.model, recipe.ema, recipe.ema_warmup) if recipe.ema > 0 else None
    if saved is not None:
        run_state.restore(saved, stage, update, ema, device)
    stage.wrap()
    monitor = Monitor(run_dir if dist.is_main() else None, begun + 1, schedule.max_steps, progress=progress,
                      clock=_now)
    for line in log_lines:
        monitor.event(line)
    note = precision_note(amp_dtype, device)
    if note:
        monitor.event(note)
    monitor.event(f"{f'resuming at step {begun + 1} from {saved.path}' if saved else 'starting'}: "
                  f"{recipe.stage}, {schedule.max_steps} steps, {data.description}; batch {recipe.batch_size} = "
                  f"{world} process(es) x {accum} micro-step(s) x {micro} images; peak lr {recipe.peak_lr:.3g}, "
                  f"warm-up {schedule.warmup} steps; {precision_name(recipe, amp_dtype)} on {device}; "
                  f"host {socket.gethostname()}")
    if saved is not None and saved.state.get("world_size", world) != world:
        monitor.event(f"the run started with {saved.state['world_size']} process(es), continues with {world}")
    preview = stage.preview_inputs() if dist.is_main() and recipe.image_every else None
    autocast = (torch.autocast(device.type, dtype=amp_dtype) if amp_dtype is not None
                else contextlib.nullcontext())
    return Run(recipe, stage, run_dir, device, accum, schedule, update, ema, monitor, iter(data.loader),
               autocast, preview.to(device) if preview is not None else None,
               saved.counters() if saved is not None else Counters())


def batch_split(recipe: Recipe, world: int) -> tuple[int, int]:
    """(images per micro-step and process, micro-steps per optimizer step)."""
    micro = recipe.micro_batch_size or recipe.batch_size // world
    if micro < 1 or recipe.batch_size % (micro * world):
        raise AlitError(f"batch_size {recipe.batch_size} must be a multiple of micro_batch_size {micro} "
                        f"x {world} processes")
    return micro, recipe.batch_size // (micro * world)


def train(run: Run, first: int, stop: StopRequests) -> tuple[int, dict[str, float]]:
    """Steps `first`.. until the schedule ends (or a stop request); returns (last step, its logs)."""
    step, logs = first - 1, {}
    run.last_time = run.monitor.elapsed
    while step < run.schedule.max_steps:
        step += 1
        lr = run.schedule.lr(step)
        run.update.begin(lr, run.stage.lr_scale)
        sums, new_skips = micro_steps(run, step)
        shared = all_reduce(run, sums, new_skips, measure_pace(run), stop)
        logs = shared.logs
        update = apply_update(run, step, logs)
        record = step_record(run, step, lr, shared, update)
        follow_time_budget(run, step, shared.elapsed)
        if shared.new_skips:  # every process agrees (all-reduced), so all join the gather
            record["skipped_files"] = name_skipped(run, new_skips)
        grids = previews(run, step, record)
        run.monitor.step(record)
        streak = run.counters.nonfinite_streak
        if streak >= run.recipe.max_nonfinite:
            raise AlitError(
                f"stopping: the loss or its gradients were non-finite for {streak} steps in a row (steps "
                f"{step - streak + 1}-{step}); the last checkpoint is left as it was. Try a lower "
                f"lr (--set lr=...), fp32 (--set precision=fp32), or check the data")
        if grids is not None:
            run.monitor.images(grids, step)
        saved = step % run.recipe.checkpoint_every == 0 or step == run.schedule.max_steps
        if saved:
            save(run, step)
        if shared.stop:
            interrupted(run, step, stop.requested, saved)
    return step, logs


def micro_steps(run: Run, step: int) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Forward and backward of every micro-step: (the logs averaged over them, files newly skipped)."""
    sums: dict[str, torch.Tensor] = {}
    new_skips: list[str] = []
    zero = torch.zeros((), device=run.device)
    for m in range(run.accum):
        images, skipped = next(run.batches)
        new_skips += [s for s in skipped if s not in run.counters.skipped_files]
        run.counters.skipped_files.update(skipped)
        images = images.to(run.device, non_blocking=True)
        if run.stage.restarter is not None:
            run.stage.restarter.begin_micro_step()
        with contextlib.ExitStack() as stack:
            for mod in run.stage.ddp_modules():
                stack.enter_context(dist.no_sync(mod, m < run.accum - 1))
            with run.autocast:
                logs = run.stage.micro_step(images, step, m, run.update.backward)
        for k, v in logs.items():
            sums[k] = sums.get(k, zero) + v.detach().float() / run.accum
    return sums, new_skips


def measure_pace(run: Run) -> float:
    """The clock, read once a step: seconds since the start; updates the smoothed images/s."""
    now = run.monitor.elapsed
    rate = run.recipe.batch_size / max(now - run.last_time, 1e-9)
    run.rate = rate if run.rate is None else 0.9 * run.rate + 0.1 * rate
    run.last_time = now
    return now


def all_reduce(run: Run, sums: dict[str, torch.Tensor], new_skips: list[str], now: float,
               stop: StopRequests) -> Shared:
    """One all-reduce for everything the processes must agree on: the elapsed time rides along, so
    every process takes the same max_time decisions, and so does a stop request."""
    keys = sorted(sums)
    flags = [float(len(new_skips)), now, float(stop.requested is not None)]
    values = dist.mean(torch.stack([sums[k] for k in keys] + [torch.tensor(v, device=run.device) for v in flags]))
    values = values.tolist()
    return Shared(dict(zip(keys, values[:-3])), values[-3] > 0, values[-2], values[-1] > 0)


def apply_update(run: Run, step: int, logs: dict[str, float]) -> Update:
    """The optimizer step and the EMA, or a skipped step counted and said."""
    update = run.update.apply(losses_finite=all(math.isfinite(v) for k, v in logs.items() if _is_loss(k)))
    if update.applied:
        if run.ema is not None:
            run.ema.update(run.stage.model)
        run.counters.nonfinite_streak = 0
    else:
        run.counters.nonfinite_streak += 1
        run.monitor.event(f"step {step}: non-finite loss or gradients ({_fmt(logs)}, gradient norms "
                          f"{_fmt(update.grad_norms, all_keys=True)}): update skipped "
                          f"({run.counters.nonfinite_streak} in a row)")
    return update


def step_record(run: Run, step: int, lr: float, shared: Shared, update: Update) -> dict:
    """The step's log.jsonl record (after its codebook restarts)."""
    restarted = run.stage.restarter.step_end(step) if run.stage.restarter is not None else 0
    per_epoch = run.stage.steps_per_epoch
    record = {"step": step, "loss": shared.logs.get("loss"), "lr": lr, "images_per_s": round(run.rate, 3),
              "epoch": round(step / per_epoch, 4) if per_epoch else None, "time": round(run.last_time, 3)}
    if not update.applied:
        record["nonfinite"] = True
    if restarted:
        record["restarted_codes"] = restarted
    if update.applied:
        record.update({f"grad_norm/{k}": v for k, v in update.grad_norms.items()})
    record.update({k: v for k, v in shared.logs.items() if k != "loss"})
    return record


def follow_time_budget(run: Run, step: int, elapsed: float) -> None:
    """Under max_time: the run's length refitted to its pace, and said when it moved."""
    before = run.schedule.max_steps
    note = run.schedule.update_length(step, elapsed)
    if run.schedule.max_steps != before:
        run.monitor.set_total(run.schedule.max_steps)
    if note:
        run.monitor.event(note)


def name_skipped(run: Run, new_skips: list[str]) -> list[str]:
    """The unreadable files newly met by any process, said once each."""
    new_skips = sorted(set().union(*dist.gather_objects(new_skips)))
    run.counters.skipped_files.update(new_skips)
    for s in new_skips:
        run.monitor.event(f"unreadable image skipped: {s}")
    run.monitor.event(f"{len(run.counters.skipped_files)} unreadable file(s) skipped so far")
    return new_skips


def previews(run: Run, step: int, record: dict) -> dict[str, torch.Tensor] | None:
    """The preview grids of this step (and their numbers in its record), if it shows them."""
    if run.preview is None or not (step % run.recipe.image_every == 0 or step == run.schedule.max_steps):
        return None
    grids, scalars = run.stage.preview(run.preview)
    record.update(scalars)
    note = ignored_latents(step, scalars)
    if note:
        run.monitor.event(note)
    return grids


def save(run: Run, step: int) -> None:
    if dist.is_main():
        path = run_state.save(run.run_dir, step, dist.world_size(), run.stage, run.update, run.ema, run.counters)
        run.monitor.event(f"checkpoint {path.name} written", echo=False)
    dist.barrier()


def interrupted(run: Run, step: int, signal_name: str | None, saved: bool) -> None:
    """Stop after a signal: checkpoint the step reached (unless it just was), say how to go on."""
    if not saved:
        save(run, step)
    path = checkpoint.step_dir(run.run_dir, step)
    run.monitor.event(f"{signal_name or 'a stop signal to another process'} at step {step}: checkpoint "
                      f"{path.name} written; `alit train {run.recipe.stage} --out {run.run_dir} --resume` "
                      f"continues from step {step + 1}")
    raise Interrupted(step, path)


def resolve_precision(name: str, device: torch.device) -> torch.dtype | None:
    """None for fp32 and tf32, else the autocast dtype."""
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else None
    if name == "fp16" and device.type != "cuda":
        raise AlitError("precision fp16 needs a GPU (its loss scaler is CUDA-only); use bf16 or fp32 on a CPU")
    return autocast_dtype(name)


def precision_name(recipe: Recipe, amp_dtype: torch.dtype | None) -> str:
    return {None: recipe.precision if recipe.precision == "tf32" else "fp32", torch.bfloat16: "bf16 autocast",
            torch.float16: "fp16 autocast + loss scaler"}[amp_dtype]


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (avx512_bf16 or AMX) rather than emulating it."""
    return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()


def precision_note(amp_dtype: torch.dtype | None, device: torch.device, native: bool | None = None) -> str | None:
    """A warning when bf16 autocast runs on a CPU that emulates bf16 (no avx512_bf16, no AMX): there it
    is usually slower than fp32. `native`: whether the CPU has it (None: ask torch)."""
    if amp_dtype != torch.bfloat16 or device.type != "cpu":
        return None
    if native is None:
        native = cpu_has_native_bf16()
    if native:
        return None
    return ("precision bf16: this CPU has no native bf16 (avx512_bf16 or AMX), so bf16 autocast is emulated and "
            "usually slower than fp32; --set precision=fp32 to train in fp32")


def _is_loss(key: str) -> bool:
    return key == "loss" or key.endswith("loss")


def _fmt(logs: dict, all_keys: bool = False) -> str:
    return ", ".join(f"{k} {v:.4g}" for k, v in logs.items() if all_keys or _is_loss(k)) or "-"
