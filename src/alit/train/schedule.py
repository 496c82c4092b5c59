"""How long a run is and its learning rate at each step: the recipe's max_steps, or under a
wall-clock budget (`max_time`) the steps that fit in it, re-estimated from the pace at every step,
so a fixed time still gives a complete warm-up + cosine schedule."""
from __future__ import annotations

from .optim import lr_at
from .recipe import Recipe, parse_duration

FIT_AFTER = 20  # steps of this process after which a max_time run fits its length to its pace


class Schedule:
    """The lr of each step and the run's last step (`max_steps`), for a run resumed after `start`."""

    def __init__(self, recipe: Recipe, steps_per_epoch: float | None, start: int):
        self.max_steps = parse_duration(recipe.max_steps, steps_per_epoch, "max_steps")
        self.warmup = parse_duration(recipe.warmup, steps_per_epoch, "warmup")
        self.cap = self.max_steps  # a max_time run fits its length below this
        self.peak, self.floor, self.max_time, self.start = recipe.peak_lr, recipe.min_lr, recipe.max_time, start
        self._told: int | None = None  # the fitted length last said

    def lr(self, step: int) -> float:
        return lr_at(step, self.peak, self.warmup, self.max_steps, self.floor)

    def update_length(self, step: int, elapsed: float) -> str | None:
        """Under max_time: the last step re-estimated after `step` took the run `elapsed` seconds;
        returns what to tell the person watching, if anything."""
        if self.max_time is None:
            return None
        fitted = steps_in_time(self.max_time, elapsed, self.start, step, self.max_steps, self.cap)
        if fitted == self.max_steps:
            return None
        self.max_steps = fitted
        if step == fitted:
            return f"step {step}: the time budget (max_time {self.max_time:g} s) is spent: stopping here"
        if self._told is None or abs(fitted - self._told) > 0.1 * self._told:  # said again when it moved by 10%
            self._told = fitted
            return f"step {step}: {fitted} steps fit in max_time {self.max_time:g} s; the lr schedule now ends there"
        return None


def steps_in_time(max_time: float, elapsed: float, start: int, step: int, max_steps: int, cap: int) -> int:
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
    return min(cap, max(step + 1, fits))  # at the cap the run ends, even with time to spare
