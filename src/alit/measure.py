"""How `alit bench` measures a run without changing it: waiting for the device (`synchronizer`),
counting the points where Python waits for it (`HostSyncs`), and peak memory (`PeakMemory`)."""
from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode


def synchronizer(device: torch.device) -> Callable[[], None]:
    """Waits for the device's queued work (nothing to wait for on a CPU)."""
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    if device.type == "mps":
        return torch.mps.synchronize
    return lambda: None


class HostSyncs:
    """Counts the host syncs inside the block: points where Python waits for the device.

    On CUDA, torch's own sync debug mode ("warn") reports every synchronising call (`.item()`,
    `.tolist()`, `nonzero`, a device-to-host copy). A CPU never waits, so there the count is of the
    operations that would sync on a GPU (a scalar or a list read by Python, data-dependent shapes):
    the same code path, counted where a GPU is not at hand."""

    SYNCING_OPS = {"_local_scalar_dense", "nonzero", "masked_select", "_unique", "_unique2",
                   "unique_consecutive", "unique_dim", "repeat_interleave"}

    def __init__(self, device: torch.device):
        self.device, self.count = device, 0
        self.method = ("torch.cuda.set_sync_debug_mode" if device.type == "cuda"
                       else "operations that sync a GPU, counted on the CPU")
        self._stack = contextlib.ExitStack()

    def __enter__(self):
        if self.device.type == "cuda":
            self._stack.enter_context(_cuda_sync_warnings(self))
        else:
            self._stack.enter_context(_CountSyncingOps(self))
            self._stack.enter_context(_counting_tolist(self))
        return self

    def __exit__(self, *exc):
        return self._stack.__exit__(*exc)


@contextlib.contextmanager
def _cuda_sync_warnings(counter: HostSyncs):
    before = torch.cuda.get_sync_debug_mode()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # every sync, not the first of each line of code
        torch.cuda.set_sync_debug_mode("warn")
        try:
            yield
        finally:
            torch.cuda.set_sync_debug_mode(before)
    for w in caught:
        if "synchroniz" in str(w.message):
            counter.count += 1
        else:  # not ours to swallow
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


class _CountSyncingOps(TorchDispatchMode):
    def __init__(self, counter: HostSyncs):
        super().__init__()
        self.counter = counter

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = func._schema.name.split("::")[-1]
        if name in HostSyncs.SYNCING_OPS or (name in ("index", "index_put", "index_put_") and _bool_index(args)):
            self.counter.count += 1  # a boolean mask's shape depends on the data: nonzero inside
        return func(*args, **kwargs)


def _bool_index(args) -> bool:
    indices = args[1] if len(args) > 1 and isinstance(args[1], (list, tuple)) else []
    return any(isinstance(i, torch.Tensor) and i.dtype in (torch.bool, torch.uint8) for i in indices)


@contextlib.contextmanager
def _counting_tolist(counter: HostSyncs):
    """`.tolist()` on a CPU tensor reads memory without dispatching: counted by a wrapper."""
    own = vars(torch.Tensor).get("tolist")  # None: inherited from the C base class
    original = torch.Tensor.tolist

    def tolist(self):
        counter.count += 1
        return original(self)

    torch.Tensor.tolist = tolist
    try:
        yield
    finally:
        if own is None:
            del torch.Tensor.tolist
        else:
            torch.Tensor.tolist = own


class PeakMemory:
    """Peak memory while the block runs: CUDA allocator peak on a GPU, the process's resident-set
    high-water mark (VmHWM, reset through /proc/self/clear_refs) on a CPU."""

    def __init__(self, device: torch.device):
        self.device = device
        self.method, self.before, self.peak = "", math.nan, math.nan

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.before = torch.cuda.memory_allocated(self.device)
            self.method = "torch.cuda.max_memory_allocated"
        else:
            self.before = _proc_status("VmRSS")
            try:
                Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
                self.method = "VmHWM (peak resident set, reset before the runs)"
            except OSError:
                self.method = "VmHWM (peak resident set since the process started)"
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak = torch.cuda.max_memory_allocated(self.device)
        else:
            self.peak = _proc_status("VmHWM")
        return False

    def result(self) -> dict:
        mib = 2 ** 20
        return {"peak_mb": self.peak / mib, "added_mb": (self.peak - self.before) / mib,
                "before_mb": self.before / mib, "method": self.method}


def _proc_status(field: str) -> float:
    """A memory field of /proc/self/status in bytes (NaN where there is no /proc)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return float(line.split()[1]) * 1024  # kB
    except OSError:
        pass
    return math.nan
