"""What a person watching a run sees: log.jsonl, train.log, TensorBoard, a progress bar.

Only the main process makes a Monitor that writes; the others get a silent one.
"""
from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import torch

from ..files import atomic_write
from ..progress import progress_bar


class Monitor:
    """clock: the clock of `elapsed` (the run's pace and max_time); tests inject a fake one."""

    def __init__(self, run_dir: Path | None, first_step: int, total_steps: int, progress: bool = True,
                 tensorboard: bool = True, clock=time.time):
        self.run_dir = run_dir
        self.active = run_dir is not None
        self.first_step, self.total = first_step, total_steps
        self.every = max(1, total_steps // 20)
        self._jsonl = self._text = self._tb = self._bar = None
        self._clock = clock
        self._t0 = clock()
        if not self.active:
            return
        self._jsonl = open(run_dir / "log.jsonl", "a", buffering=1)
        self._text = open(run_dir / "train.log", "a", buffering=1)
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                self.event("TensorBoard events off: `pip install tensorboard` to get them")
            else:
                # purge_step drops events a killed run wrote after its last checkpoint
                self._tb = SummaryWriter(str(run_dir / "tensorboard"), purge_step=first_step)
        if progress:
            self._bar = progress_bar(total_steps, None, unit="step", initial=first_step - 1, smoothing=0.1)

    @property
    def elapsed(self) -> float:
        """Seconds since the monitor started, on its clock."""
        return self._clock() - self._t0

    def event(self, message: str, echo: bool = True) -> None:
        """A line in train.log (and on stderr): what happened, for a human."""
        if not self.active:
            return
        line = f"[{time.strftime('%Y-%m-%d %H:%M:%S')}] {message}"
        self._text.write(line + "\n")
        if echo:
            if self._bar is not None and not self._bar.disable:
                self._bar.write(line, file=sys.stderr)
            else:
                print(line, file=sys.stderr, flush=True)

    def step(self, record: dict) -> None:
        """Exactly one record per optimizer step: log.jsonl, TensorBoard scalars, the bar. Its
        "time" (`elapsed` when the step was measured) gives the ETA."""
        if not self.active:
            return
        record = {k: _plain(v) for k, v in record.items()}
        self._jsonl.write(json.dumps(record, allow_nan=False) + "\n")
        step = record["step"]
        if self._tb is not None:
            for k, v in record.items():
                if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool):
                    self._tb.add_scalar(k if "/" in k else f"train/{k}", v, step)
        loss = record.get("loss")
        text = f"loss {loss:.4f}" if loss is not None else "loss non-finite"
        rate = record.get("images_per_s") or 0
        if self._bar is not None and not self._bar.disable:
            self._bar.set_postfix_str(f"{text}, {rate:.1f} img/s", refresh=False)
            self._bar.update(1)
        elif step == self.first_step or step % self.every == 0 or step == self.total:
            # no terminal (a log file, nohup): a line every 5% instead of the bar
            done = step - self.first_step + 1
            eta = record["time"] / done * (self.total - step)
            self.event(f"step {step}/{self.total}: {text}, {rate:.1f} images/s, ETA {_duration(eta)}")

    def set_total(self, total_steps: int) -> None:
        """The run's last step changed (a max_time run fitted its length)."""
        self.total = total_steps
        self.every = max(1, total_steps // 20)
        if self._bar is not None:
            self._bar.total = total_steps
            self._bar.refresh()

    def images(self, grids: dict[str, torch.Tensor], step: int) -> None:
        if self._tb is not None:
            for name, grid in grids.items():
                self._tb.add_image(name, grid.clamp(0, 1), step)

    def close(self) -> None:
        for f in (self._bar, self._tb, self._jsonl, self._text):
            if f is not None:
                f.close()


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s"


def _plain(v):
    if isinstance(v, torch.Tensor):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None  # JSON has no NaN; the record says `nonfinite` instead
    return v


def truncate_log(path: Path, last_step: int) -> int:
    """Keep the records of steps <= last_step (a resumed run redoes the rest); returns how many."""
    if not path.is_file():
        return 0
    kept = []
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut by a kill
        if isinstance(rec, dict) and isinstance(rec.get("step"), int) and rec["step"] <= last_step:
            kept.append(line)
    atomic_write(path, lambda tmp: tmp.write_text("".join(line + "\n" for line in kept)))
    return len(kept)
