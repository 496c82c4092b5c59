"""Training throughput of the default model's three stages at fp32 and at bf16 autocast, by `alit train`.

Each (stage, precision) runs the real command for `--steps` steps into a scratch folder and reads
the step times from its log.jsonl; the first `--skip` steps (start-up, allocator warm-up) are left
out. The base stage trains from scratch; distill and finetune start from `--model` (a model folder,
by default the bundled one), so every stage runs at its real size.

    python benchmarks/precision_speed.py --data runs/small/train
    python benchmarks/precision_speed.py --data runs/small/train --out benchmarks/results/precision_speed_cpu.json

bf16 autocast pays on a CPU with native bf16 (avx512_bf16 or AMX); elsewhere it is emulated and
slower than fp32. The script says which this CPU has.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

STAGES = ("base", "distill", "finetune")


def run(stage: str, precision: str, args, scratch: Path) -> dict:
    out = scratch / f"{stage}-{precision}"
    cmd = [sys.executable, "-m", "alit", "train", stage, "--config", "default", "--data", args.data,
           "--out", str(out), "--no-progress", "--set", "max_time=null", f"max_steps={args.steps}",
           f"precision={precision}", "image_every=0", "checkpoint_every=100000"]
    if stage == "distill":
        cmd[4:4] = ["--base", args.model]
    if stage == "finetune":
        cmd[4:4] = ["--init", args.model]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines() if line.strip()]
    times = {r["step"]: r["time"] for r in records if "time" in r}
    first, last = args.skip, max(times)
    seconds = (times[last] - times[first]) / (last - first)
    batch = _batch(out)
    return {"stage": stage, "precision": precision, "seconds_per_step": round(seconds, 3),
            "images_per_s": round(batch / seconds, 2), "batch_size": batch, "steps_timed": last - first}


def _batch(run_dir: Path) -> int:
    import yaml

    return int(yaml.safe_load((run_dir / "recipe.yaml").read_text())["batch_size"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True, help="training photos (e.g. runs/small/train)")
    ap.add_argument("--model", default="src/alit/assets/default",
                    help="model folder that distill (--base) and finetune (--init) start from")
    ap.add_argument("--steps", type=int, default=12, help="steps per run (default 12)")
    ap.add_argument("--skip", type=int, default=2, help="first steps not timed (default 2)")
    ap.add_argument("--stages", default=",".join(STAGES))
    ap.add_argument("--out", help="write the figures here as JSON too")
    args = ap.parse_args()
    if args.steps <= args.skip:
        ap.error("--steps must be larger than --skip")
    import torch

    from alit.train.loop import cpu_has_native_bf16

    native = cpu_has_native_bf16()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for stage in args.stages.split(","):
            for precision in ("fp32", "bf16"):
                rows.append(run(stage, precision, args, Path(tmp)))
                r = rows[-1]
                print(f"{stage:9s} {precision}: {r['seconds_per_step']:.3f} s/step, {r['images_per_s']:.1f} images/s",
                      flush=True)
    for stage in args.stages.split(","):
        fp32, bf16 = (next(r for r in rows if r["stage"] == stage and r["precision"] == p) for p in ("fp32", "bf16"))
        print(f"{stage:9s} bf16 / fp32 speed: {fp32['seconds_per_step'] / bf16['seconds_per_step']:.2f}x")
    result = {"threads": torch.get_num_threads(), "cpu_native_bf16": native, "torch": torch.__version__,
              "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "rows": rows}
    print(f"native bf16 on this CPU (avx512_bf16 or AMX): {native}; threads {result['threads']}")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
