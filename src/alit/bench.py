"""`alit bench`: where the time of a rollout goes, per iteration, on whatever device it runs.

The paper's Table 8 for our code: for each iteration t (length L0 * (t + 1)) the time of the
encoder pass, of the latent decoder and of the pixel decode, and the cumulative time to each length:
- `tokens_at_s`: setup + the encoder passes so far, what a fixed-length encode of that length
  costs (it runs neither decoder);
- `pixels_at_s`: setup + every pass so far, what an adaptive encode judging pixels has spent when
  it holds the reconstruction at that length.
Setup is everything before the first encoder pass (input checks, the base encoder, embeddings).
Each figure is the best of `repeats` runs (after a one-iteration warm-up) of a full rollout with
reconstructions (the real code path, timed by forward hooks on the encoder blocks, the latent decoder and the base decoder), plus
throughput and peak memory.

    from alit.bench import bench, format_table
    result = bench(alit.build("small"), batch=1, repeats=3)
    print(format_table(result))
"""
from __future__ import annotations

import math
import platform
import time
from pathlib import Path

import torch
from torch import nn


def bench(tok, batch: int = 1, dtype: torch.dtype | None = None, repeats: int = 3,
          images: torch.Tensor | None = None, log=None, warmup: bool = True) -> dict:
    """Time `repeats` full rollouts (with reconstructions) of `batch` random images (or `images`)
    on the model's device, after an untimed one-iteration warm-up; the best time of each part is
    kept. dtype: compute under autocast in that precision (None: as the weights are; a model cast
    with `.to(torch.bfloat16)` runs in bfloat16 throughout). log: called with a line per run.

    Returns a JSON-ready dict (see `format_table`).
    """
    if batch < 1 or repeats < 1:
        raise ValueError(f"batch and repeats must be at least 1, got {batch} and {repeats}")
    cfg = tok.config
    device = next(tok.parameters()).device
    if images is None:
        g = torch.Generator().manual_seed(0)
        images = torch.rand(batch, 3, cfg.image_size, cfg.image_size, generator=g)
    images = images.to(device)
    if warmup:
        with torch.no_grad():  # one iteration, untimed: first calls build kernels and caches
            tok.rollout(images, num_iters=1, dtype=dtype)
    runs = []
    with PeakMemory(device) as memory:
        for r in range(repeats):
            runs.append(timed_rollout(tok, images, dtype))
            if log is not None:
                log(f"run {r + 1}/{repeats}: {runs[-1]['total']:.3f} s")
    return summarize(tok, runs, images, dtype, memory)


def summarize(tok, runs: list[dict], images: torch.Tensor, dtype: torch.dtype | None,
              memory: "PeakMemory") -> dict:
    """The best of several `timed_rollout` runs as `bench` reports it."""
    cfg, device = tok.config, images.device
    repeats = len(runs)
    T = cfg.num_iters
    best = {k: [min(run[k][t] for run in runs) for t in range(T)] for k in ("encoder", "decoder", "pixels")}
    setup = min(run["setup"] for run in runs)
    fastest = min(runs, key=lambda run: run["total"])
    rollout = fastest["total"]
    # what the hooks do not see (bottleneck, norms, soft code, layout changes), in the fastest run
    other = rollout - fastest["setup"] - sum(sum(fastest[k]) for k in ("encoder", "decoder", "pixels"))
    rows, tokens_at, pixels_at = [], setup, setup
    for t in range(T):
        tokens_at += best["encoder"][t]
        pixels_at += best["encoder"][t] + best["decoder"][t] + best["pixels"][t]
        rows.append({"iteration": t, "tokens": cfg.tokens_per_iter * (t + 1),
                     "encoder_s": best["encoder"][t], "latent_decoder_s": best["decoder"][t],
                     "pixel_decode_s": best["pixels"][t], "tokens_at_s": tokens_at, "pixels_at_s": pixels_at})
    effective = dtype if dtype is not None else tok.dtype
    notes = []
    if effective != torch.float32 and device.type == "cpu" and not cpu_has_native_bf16():
        notes.append("this CPU has no native bfloat16 arithmetic (no AVX512-BF16 / AMX): lower precision "
                     "is emulated here and slower than float32")
    return {
        "model": getattr(tok, "bench_name", None) or "alit model",
        "config": {"image_size": cfg.image_size, "encoder": f"{cfg.encoder_width}x{cfg.encoder_depth}",
                   "decoder": f"{cfg.decoder_width}x{cfg.decoder_depth}", "base": cfg.base.kind,
                   "tokens_per_iter": cfg.tokens_per_iter, "num_iters": T,
                   "parameters_m": round(sum(p.numel() for p in tok.parameters()) / 1e6, 1)},
        "device": describe_device(device),
        "dtype": _dtype_name(effective) + (" (autocast)" if dtype is not None and dtype != tok.dtype else ""),
        "batch": int(images.shape[0]),
        "repeats": repeats,
        "setup_s": setup,
        "iterations": rows,
        "other_s": other,
        "rollout_s": rollout,
        "runs_s": [run["total"] for run in runs],
        "throughput": {
            "rollout_images_per_s": images.shape[0] / rollout,
            f"tokens_{rows[0]['tokens']}_images_per_s": images.shape[0] / rows[0]["tokens_at_s"],
            f"tokens_{rows[-1]['tokens']}_images_per_s": images.shape[0] / rows[-1]["tokens_at_s"],
        },
        "peak_memory": memory.result(),
        "notes": notes,
    }


def timed_rollout(tok, images: torch.Tensor, dtype: torch.dtype | None = None) -> dict:
    """One rollout with reconstructions: {"setup": s, "total": s, "encoder" / "decoder" / "pixels":
    the seconds of each pass of that part, in call order}."""
    device = images.device
    spans = {"encoder": [], "decoder": [], "pixels": []}
    first = []
    sync = _synchronizer(device)

    def watch(module: nn.Module, key: str):
        def pre(*_):
            sync()
            if not first:
                first.append(time.perf_counter())
            spans[key].append(-time.perf_counter())

        def post(*_):
            sync()
            spans[key][-1] += time.perf_counter()

        return [module.register_forward_pre_hook(pre), module.register_forward_hook(post)]

    handles = (watch(tok.encoder.blocks, "encoder") + watch(tok.decoder, "decoder")
               + watch(tok.base.decoder, "pixels"))
    try:
        with torch.no_grad():
            sync()
            start = time.perf_counter()
            tok.rollout(images, dtype=dtype)
            sync()
            total = time.perf_counter() - start
    finally:
        for h in handles:
            h.remove()
    return {"setup": first[0] - start, "total": total, **spans}


def _synchronizer(device: torch.device):
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


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


def cpu_has_native_bf16() -> bool:
    """Whether oneDNN has native bfloat16 kernels on this CPU (AVX512-BF16, AMX)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (cuda)"
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{name}, {torch.get_num_threads()} threads, {torch.backends.cpu.get_cpu_capability()}"


def _dtype_name(dtype: torch.dtype) -> str:
    return {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}.get(dtype, str(dtype))


def format_table(result: dict) -> str:
    """The per-iteration table, then setup, totals, throughput and memory, as plain text."""
    ms = 1e3
    lines = [f"{result['model']} | {result['device']} | {result['dtype']} | batch {result['batch']} | "
             f"best of {result['repeats']}",
             f"setup (checks, base encoder, embeddings): {result['setup_s'] * ms:.1f} ms",
             f"{'iter':>4} {'tokens':>6} {'encoder':>10} {'latent dec':>10} {'pixel dec':>10} "
             f"{'to tokens':>10} {'to pixels':>10}   (ms; 'to': cumulative)"]
    for r in result["iterations"]:
        lines.append(f"{r['iteration']:>4} {r['tokens']:>6} {r['encoder_s'] * ms:>10.1f} "
                     f"{r['latent_decoder_s'] * ms:>10.1f} {r['pixel_decode_s'] * ms:>10.1f} "
                     f"{r['tokens_at_s'] * ms:>10.1f} {r['pixels_at_s'] * ms:>10.1f}")
    total = result["iterations"]
    lines.append(f"{'sum':>11} {sum(r['encoder_s'] for r in total) * ms:>10.1f} "
                 f"{sum(r['latent_decoder_s'] for r in total) * ms:>10.1f} "
                 f"{sum(r['pixel_decode_s'] for r in total) * ms:>10.1f}")
    lines.append(f"full rollout with reconstructions: {result['rollout_s'] * ms:.1f} ms (other work "
                 f"{result['other_s'] * ms:.1f} ms; runs: "
                 + ", ".join(f"{t * ms:.0f}" for t in result["runs_s"]) + " ms)")
    lines.append("throughput: " + ", ".join(f"{k.removesuffix('_images_per_s')} {v:.3g} images/s"
                                            for k, v in result["throughput"].items()))
    mem = result["peak_memory"]
    lines.append(f"peak memory: {mem['peak_mb']:.0f} MiB ({mem['added_mb']:+.0f} MiB over the "
                 f"{mem['before_mb']:.0f} MiB before; {mem['method']})")
    lines += [f"note: {n}" for n in result["notes"]]
    return "\n".join(lines)
