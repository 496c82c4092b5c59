"""The training loop every stage shares: data, optimizers, precision, EMA, checkpoints, logs.

A stage (`autoencoder.py`, `distill.py`, `finetune.py`) says what is built, what trains and what
one micro-step computes; this file does the rest:

    for step in first..max_steps:                       # optimizer steps, 1-based
        lr = warm-up + cosine(step)
        for each accumulation micro-step:               # DDP averages gradients on the last one
            logs = stage.micro_step(images, step, backward)
        if every loss is finite: unscale, clip, optimizer.step(), EMA update
        else: skip the update (and stop after `max_nonfinite` in a row)
        one log.jsonl record; a checkpoint every `checkpoint_every` steps and at the end
"""
from __future__ import annotations

import contextlib
import math
import random
import socket
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

from .. import data as data_lib, dist
from ..errors import AlitError
from ..precision import autocast_dtype, set_precision
from . import checkpoint
from .ema import EMA
from .monitor import Monitor, truncate_log
from .optim import adamw, lr_at, set_lr
from .recipe import Recipe, dump, parse_duration


# below this NLL (or MSE) gain from an image's own latents over another image's, the decoder
# ignores them (`latent_reliance`)
IGNORED_GAP = 1e-3


class Stage:
    """One training stage. Subclasses build `model` (the module a checkpoint exports) and
    `forward_module` (what DDP wraps), and say what one micro-step computes."""

    model: nn.Module
    forward_module: nn.Module
    find_unused = False  # DDP: parameters that may get no gradient in a step
    restarter = None  # codebooks.DeadCodeRestarter of the codebook that trains, if the recipe asks
    steps_per_epoch: float | None = None  # set by the loop once the dataset size is known

    def __init__(self, recipe: Recipe, device: torch.device, log):
        self.recipe, self.device, self.log = recipe, device, log

    # --- what a checkpoint exports (an ALIT model by default) ----------------------------------
    @property
    def image_size(self) -> int:
        return self.model.config.image_size

    def export_config(self):
        """(config for weights.save, image_size or None)."""
        return self.model.config, None

    # --- what trains -------------------------------------------------------------------------
    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """name -> optimizer; every one follows the lr schedule (scaled by `lr_scale`)."""
        r = self.recipe
        opt = adamw(self.model, r.peak_lr, r.betas, r.weight_decay, self.device, r.lr_multipliers)
        for prefix, factor in r.lr_multipliers.items():
            self.log(f"lr of {prefix}.*: {factor} x the schedule's (lr_multipliers)")
        return {"model": opt}

    def lr_scale(self, name: str) -> float:
        return 1.0

    def wrap(self) -> None:
        """Wrap the modules that run forward passes in DDP."""
        self.forward_module = dist.wrap(self.forward_module, self.device, find_unused=self.find_unused)

    def ddp_modules(self) -> list[nn.Module]:
        return [self.forward_module]

    def micro_step(self, images: torch.Tensor, step: int, micro: int, backward) -> dict[str, torch.Tensor]:
        """Forward, losses, `backward(loss)`; returns detached scalars, "loss" among them."""
        raise NotImplementedError

    # --- extra state (discriminators) and previews ---------------------------------------------
    def extra_state(self) -> dict:
        return {}

    def load_extra_state(self, state: dict) -> None:
        pass

    @torch.no_grad()
    def preview(self, images: torch.Tensor) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
        """(TensorBoard grids: each image, then its reconstruction at every length; numbers for the
        step's record: `latent_reliance`), from one rollout of the preview images."""
        training = self.model.training
        self.model.eval()
        try:
            roll = self.model.rollout(images, "off")
            scalars = latent_reliance(self.model, roll)
        finally:
            self.model.train(training)
        return {"reconstructions/by_length": previews_grid(images, roll.reconstructions)}, scalars


def resolve_precision(name: str, device: torch.device) -> torch.dtype | None:
    """None for fp32 and tf32, else the autocast dtype."""
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else None
    if name == "fp16" and device.type != "cuda":
        raise AlitError("precision fp16 needs a GPU (its loss scaler is CUDA-only); use bf16 or fp32 on a CPU")
    return autocast_dtype(name)


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


def fit(recipe: Recipe, stage_cls, run_dir: Path, device: torch.device, *, resume: bool = False,
        progress: bool = True) -> Path:
    """Train `stage_cls` as `recipe` says into `run_dir` (inside dist.init() / dist.shutdown())."""
    run_dir = Path(run_dir)
    # tiny gradients square to denormals in Adam's second moment; on a CPU they are 10-100x slower
    torch.set_flush_denormal(True)
    main, world, rank = dist.is_main(), dist.world_size(), dist.rank()
    if not recipe.data:
        raise AlitError("no training data: give --data DIR (an image folder or WebDataset shards) "
                        "or set `data` in the recipe")
    ckpt = checkpoint.latest(run_dir) if resume else None
    state = checkpoint.load_state(ckpt, device) if ckpt is not None else None
    start = state["step"] if state else 0
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        checkpoint.clean_partial(run_dir)
        # a resumed run redoes the steps after its checkpoint (all of them without one): their
        # records go, so every step keeps exactly one
        truncate_log(run_dir / "log.jsonl", start)
        if not resume:
            (run_dir / "train.log").unlink(missing_ok=True)
        (run_dir / "recipe.yaml").write_text(dump(recipe))
    dist.barrier()

    # --- data: the steps' images depend on (seed, step) only ---------------------------------
    micro = recipe.micro_batch_size or recipe.batch_size // world
    if micro < 1 or recipe.batch_size % (micro * world):
        raise AlitError(f"batch_size {recipe.batch_size} must be a multiple of micro_batch_size {micro} "
                        f"x {world} processes")
    accum = recipe.batch_size // (micro * world)

    torch.manual_seed(recipe.seed)  # the same initial weights on every process
    log_lines: list[str] = []
    stage: Stage = stage_cls(recipe, device, log_lines.append,
                             resume_config=_saved_config(ckpt) if ckpt is not None else None)
    train_data = data_lib.training_data(
        recipe.data, stage.image_size, batch_size=recipe.batch_size, micro_batch=micro, rank=rank,
        world=world, seed=recipe.seed, first_step=start + 1, last_step=None, workers=recipe.workers,
        crop_scale=recipe.crop_scale, flip=recipe.hflip, dataset_size=recipe.dataset_size,
        cache=recipe.cache_images, crop_ratio=recipe.crop_ratio)
    size = train_data.size or recipe.dataset_size
    steps_per_epoch = size / recipe.batch_size if size else None
    max_steps = parse_duration(recipe.max_steps, steps_per_epoch, "max_steps")
    warmup = parse_duration(recipe.warmup, steps_per_epoch, "warmup")
    stage.steps_per_epoch = steps_per_epoch
    if max_steps < 1:
        raise AlitError(f"max_steps must be at least 1, got {max_steps}")
    if start >= max_steps:
        raise AlitError(f"{run_dir}: its newest checkpoint is at step {start}, not before max_steps "
                        f"{max_steps}: nothing to do (raise --max-steps to train longer)")

    amp_dtype = resolve_precision(recipe.precision, device)
    # TF32 on only when asked: under autocast the float32 that remains (ids, losses) stays exact
    set_precision("tf32" if recipe.precision == "tf32" else "fp32")
    scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None
    optimizers = stage.optimizers()
    ema = EMA(stage.model, recipe.ema, recipe.ema_warmup) if recipe.ema > 0 else None
    skipped_files: set[str] = set()
    streak = 0
    if state is not None:
        stage.model.load_state_dict(state["model"])
        stage.load_extra_state(state.get("extra", {}))
        if stage.restarter is not None:
            stage.restarter.load_state_dict(state.get("codebook_usage", {}))
        for name, opt in optimizers.items():
            opt.load_state_dict(state["optimizers"][name])
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        if ema is not None:
            ema.load({k: v.to(device) for k, v in load_file(str(ckpt / "model.safetensors")).items()},
                     state.get("ema_updates", 0))
        streak = state.get("nonfinite_streak", 0)
        skipped_files = set(state.get("skipped_files", []))
        _restore_rng(state.get("rng", {}))
    stage.wrap()

    monitor = Monitor(run_dir if main else None, start + 1, max_steps, progress=progress)
    for line in log_lines:
        monitor.event(line)
    note = precision_note(amp_dtype, device)
    if note:
        monitor.event(note)
    prec = {None: recipe.precision if recipe.precision == "tf32" else "fp32", torch.bfloat16: "bf16 autocast",
            torch.float16: "fp16 autocast + loss scaler"}[amp_dtype]
    monitor.event(
        f"{'resuming at step ' + str(start + 1) + ' from ' + str(ckpt) if state else 'starting'}: "
        f"{recipe.stage}, {max_steps} steps, {train_data.description}; batch {recipe.batch_size} = "
        f"{world} process(es) x {accum} micro-step(s) x {micro} images; peak lr {recipe.peak_lr:.3g}, "
        f"warm-up {warmup} steps; {prec} on {device}; host {socket.gethostname()}")
    if state is not None and state.get("world_size", world) != world:
        monitor.event(f"the run started with {state['world_size']} process(es), continues with {world}")

    preview = data_lib.preview_images(recipe.data, stage.image_size) if main and recipe.image_every else None
    if preview is not None:
        preview = preview.to(device)
    autocast = (torch.autocast(device.type, dtype=amp_dtype) if amp_dtype is not None
                else contextlib.nullcontext())
    micro_total = torch.zeros((), device=device)

    def backward(loss: torch.Tensor) -> None:
        loss = loss / accum
        (scaler.scale(loss) if scaler is not None else loss).backward()

    batches = iter(train_data.loader)
    step_cap = max_steps  # a max_time run fits its length below this
    told = None  # the fitted length last logged
    t_last = t_loop = clock()
    rate = None
    step = start
    try:
        while step < max_steps:
            step += 1
            lr = lr_at(step, recipe.peak_lr, warmup, max_steps, recipe.min_lr)
            for name, opt in optimizers.items():
                set_lr(opt, lr * stage.lr_scale(name))
                opt.zero_grad(set_to_none=True)
            sums: dict[str, torch.Tensor] = {}
            new_skips: list[str] = []
            for m in range(accum):
                images, skipped = next(batches)
                new_skips += [s for s in skipped if s not in skipped_files]
                skipped_files.update(skipped)
                images = images.to(device, non_blocking=True)
                if stage.restarter is not None:
                    stage.restarter.begin_micro_step()
                with contextlib.ExitStack() as stack:
                    for mod in stage.ddp_modules():
                        stack.enter_context(dist.no_sync(mod, m < accum - 1))
                    with autocast:
                        logs = stage.micro_step(images, step, m, backward)
                for k, v in logs.items():
                    sums[k] = sums.get(k, micro_total) + v.detach().float() / accum
            keys = sorted(sums)
            flag = torch.tensor(float(len(new_skips)), device=device)
            # the elapsed time rides along, so every process takes the same max_time decisions
            elapsed = torch.tensor(clock() - t_loop, device=device)
            values = dist.mean(torch.stack([sums[k] for k in keys] + [flag, elapsed])).tolist()  # one all-reduce
            logs = dict(zip(keys, values[:-2]))
            any_new_skips, elapsed = values[-2] > 0, values[-1]
            finite = all(math.isfinite(v) for k, v in logs.items() if _is_loss(k))
            grad_norms = {}
            if finite:
                for name, opt in optimizers.items():
                    if scaler is not None:
                        scaler.unscale_(opt)
                    params = [p for g in opt.param_groups for p in g["params"] if p.grad is not None]
                    if params:  # clipped to grad_clip, or only measured (inf)
                        norm = torch.nn.utils.clip_grad_norm_(params, recipe.grad_clip or math.inf)
                        grad_norms[name] = float(norm)
                # a finite loss can still give non-finite gradients; fp16's scaler skips those itself
                finite = scaler is not None or all(math.isfinite(v) for v in grad_norms.values())
            if finite:
                for opt in optimizers.values():
                    if scaler is not None:
                        scaler.step(opt)
                    else:
                        opt.step()
                if scaler is not None:
                    scaler.update()
                if ema is not None:
                    ema.update(stage.model)
                streak = 0
            else:
                for opt in optimizers.values():
                    opt.zero_grad(set_to_none=True)
                streak += 1
                monitor.event(f"step {step}: non-finite loss or gradients ({_fmt(logs)}, gradient norms "
                              f"{_fmt(grad_norms, all_keys=True)}): update skipped ({streak} in a row)")
            restarted = stage.restarter.step_end(step) if stage.restarter is not None else 0
            now = clock()
            inst = recipe.batch_size / max(now - t_last, 1e-9)
            rate = inst if rate is None else 0.9 * rate + 0.1 * inst
            t_last = now
            record = {"step": step, "loss": logs.get("loss"), "lr": lr, "images_per_s": round(rate, 3),
                      "epoch": round(step / steps_per_epoch, 4) if steps_per_epoch else None,
                      "time": round(now - monitor._t0, 3)}
            if not finite:
                record["nonfinite"] = True
            if restarted:
                record["restarted_codes"] = restarted
            if finite:
                record.update({f"grad_norm/{k}": v for k, v in grad_norms.items()})
            record.update({k: v for k, v in logs.items() if k != "loss"})
            if recipe.max_time is not None:
                fitted = fit_to_time(recipe.max_time, elapsed, start, step, max_steps, step_cap)
                if fitted != max_steps:
                    max_steps = fitted
                    monitor.set_total(fitted)
                    if step == max_steps:
                        monitor.event(f"step {step}: the time budget (max_time {recipe.max_time:g} s) is "
                                      f"spent: stopping here")
                    elif told is None or abs(fitted - told) > 0.1 * told:  # said again when it moved by 10%
                        told = fitted
                        monitor.event(f"step {step}: {max_steps} steps fit in max_time {recipe.max_time:g} s; "
                                      f"the lr schedule now ends there")
            if any_new_skips:  # every process agrees (all-reduced), so all join the gather
                new_skips = sorted(set().union(*dist.gather_objects(new_skips)))
                skipped_files.update(new_skips)
                record["skipped_files"] = new_skips
                for s in new_skips:
                    monitor.event(f"unreadable image skipped: {s}")
                monitor.event(f"{len(skipped_files)} unreadable file(s) skipped so far")
            grids = None
            if main and preview is not None and (step % recipe.image_every == 0 or step == max_steps):
                grids, scalars = stage.preview(preview)
                record.update(scalars)
                ignored = [k for k, v in scalars.items() if k.startswith("latent_reliance/") and v < IGNORED_GAP]
                if ignored:
                    monitor.event(f"step {step}: the latent decoder ignores the latents ({_fmt(scalars, all_keys=True)}: "
                                  f"another image's latents predict as well as the image's own); see the README's "
                                  f"'Known limit'")
            monitor.step(record)
            if streak >= recipe.max_nonfinite:
                raise AlitError(
                    f"stopping: the loss or its gradients were non-finite for {streak} steps in a row (steps "
                    f"{step - streak + 1}-{step}); the last checkpoint is left as it was. Try a lower "
                    f"lr (--set lr=...), fp32 (--set precision=fp32), or check the data")
            if grids is not None:
                monitor.images(grids, step)
            if step % recipe.checkpoint_every == 0 or step == max_steps:
                if main:
                    path = _save(run_dir, stage, optimizers, scaler, ema, step, world, streak, skipped_files)
                    monitor.event(f"checkpoint {path.name} written", echo=False)
                dist.barrier()
        use = (f"`alit train distill --base {run_dir}` takes it" if recipe.stage == "base"
               else f"alit.load('{run_dir}') gives it")
        monitor.event(f"done: step {step}, loss {logs.get('loss')}; model in {run_dir}: {use}")
    finally:
        monitor.close()
        del batches
    return run_dir


# the clock of a run's pace and max_time: tests inject a fake one, so that their verdict does not
# depend on the machine's speed
clock = time.time

FIT_AFTER = 20  # steps of this process after which a max_time run fits its length to its pace


def fit_to_time(max_time: float, elapsed: float, start: int, step: int, max_steps: int, cap: int) -> int:
    """The run's last step under a wall-clock budget: `step` once the budget is spent; from
    FIT_AFTER steps of this process on, at every step, as many steps as the mean pace so far fits
    in it (up to `cap`, the recipe's max_steps), so a run that slows down or speeds up still ends
    its lr schedule when the budget ends; before that, max_steps unchanged."""
    if elapsed >= max_time:
        return step
    done = step - start
    if done < FIT_AFTER:
        return max_steps
    fits = start + int(max_time / (elapsed / done))
    return max(step + 1, min(cap, fits))


def _is_loss(key: str) -> bool:
    return key == "loss" or key.endswith("loss")


def _fmt(logs: dict, all_keys: bool = False) -> str:
    return ", ".join(f"{k} {v:.4g}" for k, v in logs.items() if all_keys or _is_loss(k)) or "-"


def _save(run_dir, stage: Stage, optimizers, scaler, ema, step, world, streak, skipped) -> Path:
    config, image_size = stage.export_config()
    weights = ema.state_dict(like=stage.model) if ema is not None else stage.model.state_dict()
    train_state = {
        "step": step,
        "world_size": world,
        "recipe": stage.recipe.to_dict(),
        "model": {k: v.detach().cpu() for k, v in stage.model.state_dict().items()},
        "extra": stage.extra_state(),
        "codebook_usage": stage.restarter.state_dict() if stage.restarter is not None else {},
        "optimizers": {k: o.state_dict() for k, o in optimizers.items()},
        "scaler": scaler.state_dict() if scaler is not None else None,
        "ema_updates": ema.updates if ema is not None else 0,
        "nonfinite_streak": streak,
        "skipped_files": sorted(skipped),
        "rng": {"torch": torch.get_rng_state(), "python": list(_flatten_py_state(random.getstate())),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []},
    }
    return checkpoint.save(run_dir, step, weights, config, train_state, stage.recipe.keep_checkpoints,
                           image_size=image_size)


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


def _saved_config(ckpt: Path) -> dict:
    from ..weights import read_meta

    return read_meta(ckpt)


def preset_config(name: str, overrides: dict):
    """ModelConfig of a preset with recipe overrides; a `base` mapping updates the preset's base."""
    import dataclasses

    from ..config import BaseConfig
    from ..presets import preset

    overrides = dict(overrides)
    base_changes = overrides.pop("base", None) or {}
    try:
        config = preset(name, **overrides)
        if base_changes:
            if isinstance(base_changes, BaseConfig):
                base = base_changes
            else:
                base = dataclasses.replace(config.base, **base_changes)
            config = config.replace(base=base)
    except (TypeError, ValueError) as e:
        raise AlitError(f"recipe: model {name!r} with model_overrides {overrides}: {e}") from None
    return config


@torch.no_grad()
def latent_reliance(model: nn.Module, roll) -> dict[str, float]:
    """How much each image's own latents help the decoder of an ALIT `roll`out (eval mode): the
    stage-1 loss (CE for a VQGAN base, MSE for a VAE) with every image's latents given to the next
    image, minus the loss with its own, at the first and last iteration. About 0 means the decoder
    ignores the latents."""
    if roll.latents[0].shape[0] < 2:
        return {}
    out = {}
    for name, t in (("first", 0), ("last", len(roll.latents) - 1)):
        other = model.decoder(roll.latents[t].roll(1, 0))
        if model.is_vqgan:
            ids = roll.targets.ids.reshape(-1)
            loss = [F.cross_entropy(o.float().reshape(-1, o.shape[-1]), ids) for o in (roll.logits[t], other)]
        else:
            loss = [F.mse_loss(o.float(), roll.targets.codes.float()) for o in (roll.codes[t], other)]
        out[f"latent_reliance/{name}"] = (loss[1] - loss[0]).item()
    return out


def previews_grid(images: torch.Tensor, columns: list[torch.Tensor]) -> torch.Tensor:
    """Rows of [input, column 0, column 1, ...] per image -> one grid image [3, H', W']."""
    from torchvision.utils import make_grid

    tiles = torch.stack([images] + [c.float().clamp(0, 1) for c in columns], 1)  # [B, 1+C, 3, H, W]
    return make_grid(tiles.flatten(0, 1).cpu(), nrow=1 + len(columns), padding=1)
