"""Ctrl-C (SIGINT) and SIGTERM (what schedulers send) while a run trains: the first asks the loop
to stop after the step under way, which it then checkpoints; a second one stops at once."""
from __future__ import annotations

import signal
import threading
import time

SIGNALS = (signal.SIGINT, signal.SIGTERM)
# a launcher (torchrun, srun) passes the terminal's Ctrl-C or the scheduler's SIGTERM on to the
# processes that already got it: a repeat within this many seconds is the same request
SAME_REQUEST_S = 1.0


class Interrupted(KeyboardInterrupt):
    """A run stopped by a signal after checkpointing `step` (the command line exits with 130)."""

    def __init__(self, step: int, checkpoint):
        super().__init__(f"interrupted at step {step}")
        self.step, self.checkpoint = step, checkpoint


class StopRequests:
    """`with StopRequests() as stop:` ... `stop.requested` names the first signal received (None:
    none yet). A later one (after SAME_REQUEST_S on `clock`) raises KeyboardInterrupt where the
    program is. Outside the main thread (where Python takes no signals) nothing is installed."""

    def __init__(self, clock=time.monotonic):
        self.requested: str | None = None
        self._clock, self._since = clock, 0.0
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopRequests:
        if threading.current_thread() is threading.main_thread():
            for sig in SIGNALS:
                self._previous[sig] = signal.signal(sig, self._receive)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}

    def _receive(self, signum, frame) -> None:
        now = self._clock()
        if self.requested is None:
            self.requested, self._since = signal.Signals(signum).name, now
        elif now - self._since > SAME_REQUEST_S:
            raise KeyboardInterrupt
