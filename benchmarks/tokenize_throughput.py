"""Throughput of `alit tokenize`: images and tokens per second, at a fixed length and under the
model's own length rule, on 1 and 2 processes (torchrun), for the bundled model and for `small`
(random weights, the paper's 256 px size).

    python benchmarks/tokenize_throughput.py --data data/photos/heldout [--images 48] [--out results.json]

Each configuration is a fresh `alit tokenize` run as a user runs it (a new process, or torchrun),
into a new folder; the figures are those of its index.json (wall time from start-up to the index,
model loading included). On a GPU machine the processes use cuda:LOCAL_RANK.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

import alit
from alit.weights import save


def run(data: Path, out: Path, checkpoint: str, how: list[str], procs: int, batch: int) -> dict:
    args = ["tokenize", str(data), "--out", str(out), "--checkpoint", checkpoint, "--batch-size", str(batch),
            "--part-size", str(batch), "--no-progress", *how]
    if procs == 1:
        cmd = [sys.executable, "-m", "alit", *args]
    else:
        torchrun = str(Path(sys.executable).parent / "torchrun")
        cmd = [torchrun, "--standalone", f"--nproc_per_node={procs}", "-m", "alit", *args]
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", str(max(1, os.cpu_count() // procs)))}
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{r.stderr[-2000:]}")
    return json.loads((out / "index.json").read_text())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="data/photos/heldout", help="image folder")
    p.add_argument("--images", type=int, default=48, help="images for the bundled model (default 48)")
    p.add_argument("--small-images", type=int, default=8, help="images for `small` (default 8)")
    p.add_argument("--procs", default="1,2", help="process counts (default 1,2)")
    p.add_argument("--out", default=None, help="also write the results as JSON")
    args = p.parse_args()

    work = Path(tempfile.mkdtemp(prefix="alit-bench-tokenize-"))
    files = sorted(Path(args.data).glob("*"))
    torch.manual_seed(0)
    small = alit.build("small")
    models = [("default", "default", args.images, 16),
              ("small (random)", str(save(small.state_dict(), small.config, work / "small")), args.small_images, 4)]
    results = []
    try:
        for name, checkpoint, count, batch in models:
            data = work / f"data-{count}"
            if not data.exists():
                data.mkdir()
                for f in files[:count]:
                    os.symlink(f.resolve(), data / f.name)
            tok = alit.load(checkpoint)
            fixed = tok.config.lengths[len(tok.config.lengths) // 2 - 1]
            for label, how in ((f"fixed {fixed}", ["--num-tokens", str(fixed)]), (f"rule {tok.config.criterion}", [])):
                for procs in (int(x) for x in args.procs.split(",")):
                    out = work / f"out-{len(results)}"
                    index = run(data, out, checkpoint, how, procs, batch)
                    row = {"model": name, "lengths": label, "processes": procs, "images": index["images_written"],
                           "wall_s": index["wall_time_s"], "images_per_s": index["images_per_second"],
                           "mean_tokens": index["mean_tokens"],
                           "tokens_per_s": index["images_per_second"] * index["mean_tokens"]}
                    results.append(row)
                    print(json.dumps(row), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU ({os.cpu_count()} cores)"
    print(f"\n{device}, torch {torch.__version__}\n")
    print("| model | lengths | processes | images | wall s | images/s | mean tokens | tokens/s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in results:
        print(f"| {r['model']} | {r['lengths']} | {r['processes']} | {r['images']} | {r['wall_s']:.1f} | "
              f"{r['images_per_s']:.2f} | {r['mean_tokens']:.1f} | {r['tokens_per_s']:.0f} |")
    if args.out:
        Path(args.out).write_text(json.dumps({"device": device, "results": results}, indent=1) + "\n")


if __name__ == "__main__":
    main()
