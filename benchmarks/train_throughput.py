"""Throughput (images/s) and peak memory of `distill` training steps.

Each batch size runs in its own process (peak RSS is per process), doing `--steps` full optimizer
steps: an 8-iteration rollout with the distill loss, backward, AdamW, EMA; the first step is
warm-up and not timed. Memory grows linearly with the batch, so from the measured points the
script fits peak = a + b * batch and reports the largest batch under `--memory-gib`; `--verify`
then runs that batch for real.

    python benchmarks/train_throughput.py                       # small preset, 256 px, CPU, fp32
    python benchmarks/train_throughput.py --checkpointing       # activation checkpointing
    python benchmarks/train_throughput.py --batches 1,2 --steps 2 --verify

Random weights and images: throughput does not depend on them.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time


def worker(args) -> dict:
    import torch

    from alit.train.distill import DistillForward
    from alit.train.ema import EMA
    from alit.train.loop import preset_config
    from alit.train.optim import adamw
    from alit.model.alit import ALIT
    from alit.model.halting import Halting

    torch.set_flush_denormal(True)
    torch.manual_seed(0)
    device = torch.device(args.device)
    config = preset_config(args.preset, {"image_size": args.size} if args.size else {})
    model = ALIT(config).to(device)
    model.base.requires_grad_(False)
    if args.checkpointing:
        model.set_grad_checkpointing()
    step = DistillForward(model, (2.5, 2.0, 1.5, 1.25, 1.0, 1.0, 1.0, 1.0))
    opt = adamw(model, 1e-4, (0.9, 0.95), 0.05, device)
    ema = EMA(model, 0.9999)
    dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[args.precision]
    images = torch.rand(args.batch, 3, config.image_size, config.image_size, device=device)
    halting = Halting(args.halting, config.halting_threshold)
    rss_model = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    times = []
    for _ in range(args.steps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            loss, _ = step(images, halting)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 3.0)
        opt.step()
        ema.update(model)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    timed = times[1:] or times
    out = {"batch": args.batch, "preset": args.preset, "size": config.image_size, "precision": args.precision,
           "checkpointing": args.checkpointing, "threads": torch.get_num_threads(), "steps": args.steps,
           "step_s": sum(timed) / len(timed), "first_step_s": times[0],
           "images_per_s": args.batch * len(timed) / sum(timed),
           "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
           "rss_after_build_gib": rss_model,
           "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad)}
    if device.type == "cuda":
        out["peak_cuda_gib"] = torch.cuda.max_memory_allocated() / 2**30
    return out


def run_one(args, batch: int) -> dict:
    cmd = [sys.executable, __file__, "--worker", "--batch", str(batch), "--preset", args.preset,
           "--size", str(args.size), "--steps", str(args.steps), "--precision", args.precision,
           "--device", args.device, "--halting", args.halting] + (["--checkpointing"] if args.checkpointing else [])
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
    if done.returncode != 0:
        return {"batch": batch, "error": (done.stderr or done.stdout).strip().splitlines()[-1:]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="small")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--batches", default="1,2", help="batch sizes to measure (comma-separated)")
    p.add_argument("--steps", type=int, default=2, help="optimizer steps per batch size (first untimed)")
    p.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="fp32")
    p.add_argument("--checkpointing", action="store_true", help="activation checkpointing of every block")
    p.add_argument("--halting", default="off")
    p.add_argument("--device", default="cpu")
    p.add_argument("--memory-gib", type=float, default=24.0, help="memory budget for the largest batch")
    p.add_argument("--verify", action="store_true", help="also run the predicted largest batch")
    p.add_argument("--timeout", type=int, default=3600)
    p.add_argument("--out", default=None, help="write the results as JSON here")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--batch", type=int, default=1, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return 0

    print(f"distill steps, preset {args.preset}, {args.size}px, {args.precision}, "
          f"{'activation checkpointing' if args.checkpointing else 'no activation checkpointing'}, "
          f"{args.device}, {os.cpu_count()} CPUs", flush=True)
    rows = []
    for b in (int(x) for x in args.batches.split(",")):
        r = run_one(args, b)
        rows.append(r)
        if "error" in r:
            print(f"batch {b:4d}: failed: {r['error']}", flush=True)
        else:
            print(f"batch {b:4d}: {r['images_per_s']:.3f} images/s, {r['step_s']:.1f} s/step, "
                  f"peak RSS {r['peak_rss_gib']:.2f} GiB", flush=True)
    ok = [r for r in rows if "error" not in r]
    result = {"config": vars(args), "rows": rows}
    if len(ok) >= 2:
        (b0, m0), (b1, m1) = (ok[0]["batch"], ok[0]["peak_rss_gib"]), (ok[-1]["batch"], ok[-1]["peak_rss_gib"])
        per_image = (m1 - m0) / (b1 - b0)
        fixed = m0 - per_image * b0
        largest = int((args.memory_gib - fixed) // per_image) if per_image > 0 else None
        result.update(fixed_gib=fixed, per_image_gib=per_image, largest_batch=largest)
        print(f"peak memory ~ {fixed:.2f} GiB + {per_image:.3f} GiB x batch -> largest batch within "
              f"{args.memory_gib:g} GiB: {largest} (extrapolated)", flush=True)
        if args.verify and largest:
            r = run_one(args, largest)
            result["verified"] = r
            print(f"verified batch {largest}: {r}", flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
