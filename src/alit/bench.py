"""`alit bench`: how fast what users run is, on whatever device it runs.

One row per operation and precision, each timed as a user calls it:
- `encode_shortest` / `encode_longest`: `tok.encode(images, num_tokens=L)` at the shortest and the
  longest length (a fixed budget: no decoder runs);
- `encode_rule`: `tok.encode(images)`, the model's own length rule (each image leaves the batch
  once it has its length);
- `decode`: `tok.decode(enc)` of the longest encoding;
- `rollout`: `tok.rollout(images)`, every length with its reconstruction.

Precision is the one switch of `alit.precision` ("fp32", "tf32", "bf16", "fp16": autocast and TF32
flags, the weights as they are). Each operation runs once untimed (the warm-up, in which host syncs
are counted), then `repeats` times timed; the device is synchronised only at the two ends of each
timed region, so nothing is serialised that the user's own call would not serialise. The best run
is kept. Peak memory is reset per row: the CUDA allocator's peak on a GPU, the process's peak
resident set on a CPU (the instruments are in `alit.measure`).

    from alit.bench import bench, format_table
    result = bench(alit.build("small"), batch=8, precision=["fp32", "bf16"], repeats=3)
    print(format_table(result))

`profile_iterations` is the older per-iteration breakdown (the paper's Table 8): forward hooks time
the encoder, latent decoder and pixel decoder of every iteration. Its hooks synchronise inside the
rollout, so its times are its own and never in the table above.
"""
from __future__ import annotations

import platform
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import nn

from .encoding import Encoding
from .measure import HostSyncs, PeakMemory, synchronizer
from .precision import PRECISIONS, check_precision

OPERATIONS = ("encode_shortest", "encode_longest", "encode_rule", "decode", "rollout")


def bench(tok, batch: int = 8, precision: str | Sequence[str] = "fp32", repeats: int = 3,
          images: torch.Tensor | None = None, name: str | None = None, log=None) -> dict:
    """Time every operation of `OPERATIONS` on `batch` random images (or `images`) on the model's
    device, in each precision given. log: called with a line per row.

    Returns a JSON-ready dict: model, config, device, batch, repeats, precisions, rows (one per
    precision and operation: see `time_operation`), notes. `format_table` prints it.
    """
    precisions = [precision] if isinstance(precision, str) else list(precision)
    for p in precisions:
        if check_precision(p) != p:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {p!r}")
    if batch < 1 or repeats < 1:
        raise ValueError(f"batch and repeats must be at least 1, got {batch} and {repeats}")
    device = next(tok.parameters()).device
    if images is None:
        images = random_images(batch, tok.config.image_size)
    images = images.to(device)
    rows = []
    for p in precisions:
        for op, what, fn in operations(tok, images, p):
            row = {"precision": p, "operation": op, "what": what, **time_operation(fn, device, repeats)}
            row.update(images_per_s=len(images) / row["seconds"], ms_per_image=row["seconds"] * 1e3 / len(images))
            rows.append(row)
            if log is not None:
                log(f"{p} {what}: {row['ms_per_image']:.2f} ms per image")
    return {"model": name or "alit model", "config": describe_config(tok), "device": describe_device(device),
            "batch": len(images), "repeats": repeats, "precisions": precisions, "rows": rows,
            "notes": precision_notes(precisions, device)}


def random_images(batch: int, size: int, seed: int = 0) -> torch.Tensor:
    """[batch, 3, size, size] uniform noise in [0, 1], the same for a seed."""
    return torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


def operations(tok, images: torch.Tensor, precision: str) -> list[tuple[str, str, Callable]]:
    """(name, description, call) of each operation of `OPERATIONS`, in that order. A call returns
    (its output, the iterations it ran: None for decode)."""
    lengths, T = tok.config.lengths, tok.config.num_iters
    # decode's input, made now: its host syncs are not decode's
    longest = tok.encode(images, num_tokens=lengths[-1], precision=precision)

    def encode(**how):
        enc = tok.encode(images, precision=precision, **how)
        return enc, enc.iterations

    def decode():
        return tok.decode(longest, precision=precision), None

    return [
        ("encode_shortest", f"encode, {lengths[0]} tokens", lambda: encode(num_tokens=lengths[0])),
        ("encode_longest", f"encode, {lengths[-1]} tokens", lambda: encode(num_tokens=lengths[-1])),
        ("encode_rule", f"encode, the model's rule ({tok.config.criterion})", lambda: encode()),
        ("decode", f"decode, {lengths[-1]} tokens", decode),
        ("rollout", f"full rollout, {T} lengths with reconstructions",
         lambda: (tok.rollout(images, precision=precision, grad=False), T)),
    ]


def time_operation(call: Callable, device: torch.device, repeats: int) -> dict:
    """One untimed warm-up (host syncs counted there), then `repeats` timed calls, synchronised at
    their two ends only. {"seconds": best, "runs_s", "mean_tokens" (encodings), "iterations",
    "host_syncs", "host_syncs_per_iteration", "sync_method", "peak_memory_mb", "memory_method"}."""
    sync = synchronizer(device)
    with torch.no_grad():
        with HostSyncs(device) as syncs:
            out, iterations = call()
        sync()
        runs = []
        with PeakMemory(device) as memory:
            for _ in range(repeats):
                sync()
                start = time.perf_counter()
                call()
                sync()
                runs.append(time.perf_counter() - start)
    return {"seconds": min(runs), "runs_s": runs,
            "mean_tokens": out.lengths.float().mean().item() if isinstance(out, Encoding) else None,
            "iterations": iterations, "host_syncs": syncs.count,
            "host_syncs_per_iteration": syncs.count / iterations if iterations else None,
            "sync_method": syncs.method, "peak_memory_mb": memory.result()["peak_mb"],
            "memory_method": memory.method}


def cpu_has_native_bf16() -> bool:
    """Whether oneDNN has native bfloat16 kernels on this CPU (AVX512-BF16, AMX)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def precision_notes(precisions: list[str], device: torch.device) -> list[str]:
    notes = []
    if device.type == "cpu" and {"bf16", "fp16"} & set(precisions) and not cpu_has_native_bf16():
        notes.append("this CPU has no native bfloat16 arithmetic (no AVX512-BF16 / AMX): lower precision "
                     "is emulated here and slower than float32")
    if device.type != "cuda" and "tf32" in precisions:
        notes.append("tf32 is exact float32 off CUDA")
    return notes


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


def describe_config(tok) -> dict:
    cfg = tok.config
    return {"image_size": cfg.image_size, "encoder": f"{cfg.encoder_width}x{cfg.encoder_depth}",
            "decoder": f"{cfg.decoder_width}x{cfg.decoder_depth}", "base": cfg.base.kind,
            "tokens_per_iter": cfg.tokens_per_iter, "num_iters": cfg.num_iters, "criterion": cfg.criterion,
            "parameters_m": round(sum(p.numel() for p in tok.parameters()) / 1e6, 1)}


def format_table(result: dict) -> str:
    """A header line, one markdown table (a row per precision and operation), the notes."""
    lines = [f"{result['model']} | {result['device']} | batch {result['batch']} | best of "
             f"{result['repeats']} after a warm-up; synchronised at the ends of each timed region", "",
             "| precision | operation | tokens/image | images/s | ms/image | peak MiB | host syncs (per iteration) |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for r in result["rows"]:
        tokens = "" if r["mean_tokens"] is None else f"{r['mean_tokens']:.1f}"
        lines.append(f"| {r['precision']} | {r['what']} | {tokens} | {r['images_per_s']:.3g} | "
                     f"{r['ms_per_image']:.3g} | {r['peak_memory_mb']:.0f} | {format_syncs(r)} |")
    rows = result["rows"]
    if rows:
        lines.append(f"\npeak memory: {rows[0]['memory_method']}; host syncs: {rows[0]['sync_method']}")
    lines += [f"note: {n}" for n in result["notes"]]
    return "\n".join(lines)


def format_syncs(row: dict) -> str:
    per = row["host_syncs_per_iteration"]
    return f"{row['host_syncs']}" + ("" if per is None else f" ({per:.2g})")


# --- the per-iteration profile (hooks that synchronise inside the rollout) ----------------------

def profile_iterations(tok, batch: int = 1, precision: str | None = None, repeats: int = 3,
                       images: torch.Tensor | None = None, name: str | None = None, log=None) -> dict:
    """Time `repeats` full rollouts with reconstructions, after a one-iteration warm-up, with a
    forward hook on the encoder blocks, the latent decoder and the pixel decoder; the best time of
    each part is kept. See `summarize` for what it returns; `format_iterations` prints it."""
    if batch < 1 or repeats < 1:
        raise ValueError(f"batch and repeats must be at least 1, got {batch} and {repeats}")
    device = next(tok.parameters()).device
    images = (random_images(batch, tok.config.image_size) if images is None else images).to(device)
    with torch.no_grad():  # first calls build kernels and caches
        tok.rollout(images, num_iters=1, precision=precision)
    runs = []
    with PeakMemory(device) as memory:
        for r in range(repeats):
            runs.append(timed_rollout(tok, images, precision))
            if log is not None:
                log(f"run {r + 1}/{repeats}: {runs[-1]['total']:.3f} s")
    result = summarize(tok, runs, images, precision, memory)
    result["model"] = name or result["model"]
    return result


def summarize(tok, runs: list[dict], images: torch.Tensor, precision: str | None,
              memory: PeakMemory) -> dict:
    """The best of several `timed_rollout` runs: per iteration, the encoder, latent decoder and
    pixel decode, and the cumulative time to the tokens (`tokens_at_s`, setup + the encoder passes
    so far: a fixed-length encode) and to the pixels (`pixels_at_s`, every pass so far)."""
    cfg, T = tok.config, tok.config.num_iters
    best = {k: [min(run[k][t] for run in runs) for t in range(T)] for k in ("encoder", "decoder", "pixels")}
    setup = min(run["setup"] for run in runs)
    fastest = min(runs, key=lambda run: run["total"])
    # what the hooks do not see (bottleneck, norms, soft code, layout changes), in the fastest run
    other = fastest["total"] - fastest["setup"] - sum(sum(fastest[k]) for k in ("encoder", "decoder", "pixels"))
    rows, tokens_at, pixels_at = [], setup, setup
    for t in range(T):
        tokens_at += best["encoder"][t]
        pixels_at += best["encoder"][t] + best["decoder"][t] + best["pixels"][t]
        rows.append({"iteration": t, "tokens": cfg.tokens_per_iter * (t + 1),
                     "encoder_s": best["encoder"][t], "latent_decoder_s": best["decoder"][t],
                     "pixel_decode_s": best["pixels"][t], "tokens_at_s": tokens_at, "pixels_at_s": pixels_at})
    return {"model": "alit model", "config": describe_config(tok), "device": describe_device(images.device),
            "precision": precision or "as the weights are", "batch": int(images.shape[0]), "repeats": len(runs),
            "setup_s": setup, "iterations": rows, "other_s": other, "rollout_s": fastest["total"],
            "runs_s": [run["total"] for run in runs], "peak_memory": memory.result(),
            "notes": precision_notes([precision] if precision else [], images.device)}


def timed_rollout(tok, images: torch.Tensor, precision: str | None = None) -> dict:
    """One rollout with reconstructions: {"setup": s, "total": s, "encoder" / "decoder" / "pixels":
    the seconds of each pass of that part, in call order}."""
    spans = {"encoder": [], "decoder": [], "pixels": []}
    first = []
    sync = synchronizer(images.device)

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
            tok.rollout(images, precision=precision)
            sync()
            total = time.perf_counter() - start
    finally:
        for h in handles:
            h.remove()
    return {"setup": first[0] - start, "total": total, **spans}


def format_iterations(result: dict) -> str:
    """The per-iteration table of `profile_iterations`, then setup, totals and memory, as plain text."""
    ms = 1e3
    lines = [f"{result['model']} | {result['device']} | {result['precision']} | batch {result['batch']} | "
             f"best of {result['repeats']} (hooks synchronise inside each rollout)",
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
    mem = result["peak_memory"]
    lines.append(f"peak memory: {mem['peak_mb']:.0f} MiB ({mem['added_mb']:+.0f} MiB over the "
                 f"{mem['before_mb']:.0f} MiB before; {mem['method']})")
    lines += [f"note: {n}" for n in result["notes"]]
    return "\n".join(lines)
