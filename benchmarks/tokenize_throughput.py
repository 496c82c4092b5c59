"""Throughput of `alit tokenize`: images and tokens per second, at a fixed length and under the
model's own length rule, on 1 and 2 processes (torchrun), for the bundled model and for `small`
(random weights, the paper's 256 px size).

    python benchmarks/tokenize_throughput.py --data data/photos/heldout [--images 48] [--out results.json]

Each configuration is a fresh `alit tokenize` run as a user runs it (a new process, or torchrun),
into a new folder; the figures are those of its _index.json (wall time from start-up to the index,
model loading included). On a GPU machine the processes use cuda:LOCAL_RANK.

Against bare `tok.encode` (issue #33: the command should run at >= 90% of it):

    python benchmarks/tokenize_throughput.py --against-encode --data data/photos --images 328 \
        [--num-tokens 128] [--rounds 5] [--tokenize-args "--workers 2"]

alternates, `--rounds` times, a fresh process timing `tok.encode` at one length on the images
already prepared (`load_image`, not timed; one warm-up batch, not timed) with a fresh
`alit tokenize DATA --num-tokens N` (_index.json's images/s: its whole run after model loading,
reading and decoding the files included), both with `--batch-size`, and with `--baseline-src DIR`
the same command of the source tree DIR (e.g. the alit before a change); it prints each round and
the medians. Alternating keeps a machine shared with other work fair to all.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

import alit
from alit.weights import save


def run(data: Path, out: Path, checkpoint: str, how: list[str], procs: int, batch: int, part: int | None = None,
        env: dict | None = None) -> dict:
    args = ["tokenize", str(data), "--out", str(out), "--checkpoint", checkpoint, "--batch-size", str(batch),
            "--part-size", str(part or batch), "--no-progress", *how]
    if procs == 1:
        cmd = [sys.executable, "-m", "alit", *args]
    else:
        torchrun = str(Path(sys.executable).parent / "torchrun")
        cmd = [torchrun, "--standalone", f"--nproc_per_node={procs}", "-m", "alit", *args]
    r = subprocess.run(cmd, capture_output=True, text=True, env={**_env(procs), **(env or {})})
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{r.stderr[-2000:]}")
    return json.loads((out / "_index.json").read_text())


def _env(procs: int) -> dict:
    return {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", str(max(1, os.cpu_count() // procs)))}


def bare_encode(data: Path, checkpoint: str, num_tokens: int, batch: int) -> float:
    """Images/s of `tok.encode` alone on the images of `data`, prepared beforehand (in this process)."""
    from alit.images import find_images, load_image

    tok = alit.load(checkpoint)
    files = sorted(find_images([data])[0])
    images = torch.stack([load_image(f, tok.config.image_size) for f in files])  # [n, 3, S, S]
    tok.encode(images[:batch], num_tokens=num_tokens)  # warm-up: oneDNN picks its kernels
    start = time.perf_counter()
    for i in range(0, len(images), batch):
        tok.encode(images[i:i + batch], num_tokens=num_tokens)
    return len(images) / (time.perf_counter() - start)


def against_encode(args, data: Path, work: Path) -> None:
    """Fresh processes, alternating: bare `tok.encode`, `alit tokenize`, and with --baseline-src the
    same command of another source tree; the medians at the end."""
    bare_cmd = [sys.executable, __file__, "--bare-encode", "--data", str(data), "--checkpoint", args.checkpoint,
                "--num-tokens", str(args.num_tokens), "--batch-size", str(args.batch_size)]
    how = ["--num-tokens", str(args.num_tokens), *shlex.split(args.tokenize_args)]
    columns = {"encode": [], "tokenize": []} | ({"baseline": []} if args.baseline_src else {})
    for r in range(args.rounds):
        out = subprocess.run(bare_cmd, capture_output=True, text=True, check=True, env=_env(1)).stdout
        columns["encode"].append(float(out.strip().splitlines()[-1]))
        for name in list(columns)[1:]:
            src = {"PYTHONPATH": str(Path(args.baseline_src).resolve())} if name == "baseline" else {}
            index = run(data, work / f"out-{name}-{r}", args.checkpoint, how, 1, args.batch_size, args.part_size, src)
            columns[name].append(index["images_per_second"])
        print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.1f}" for k, v in columns.items()) + " images/s",
              flush=True)
    bare = statistics.median(columns["encode"])
    print(f"median of {args.rounds}, images/s: encode {bare:.1f}" + "".join(
        f", {k} {statistics.median(v):.1f} (ratio {statistics.median(v) / bare:.3f}, median of the ratios "
        f"{statistics.median(t / b for t, b in zip(v, columns['encode'])):.3f})" for k, v in list(columns.items())[1:]))


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="data/photos/heldout", help="image folder")
    p.add_argument("--images", type=int, default=48, help="images for the bundled model (default 48)")
    p.add_argument("--small-images", type=int, default=8, help="images for `small` (default 8)")
    p.add_argument("--procs", default="1,2", help="process counts (default 1,2)")
    p.add_argument("--out", default=None, help="also write the results as JSON")
    p.add_argument("--against-encode", action="store_true", help="compare with bare tok.encode (see above)")
    p.add_argument("--bare-encode", action="store_true", help=argparse.SUPPRESS)  # one timing, for the above
    p.add_argument("--checkpoint", default="default", help="--against-encode: the model (default: default)")
    p.add_argument("--num-tokens", type=int, default=128, help="--against-encode: the length (default 128)")
    p.add_argument("--batch-size", type=int, default=32, help="--against-encode: batch (default 32, as tokenize's)")
    p.add_argument("--part-size", type=int, default=256, help="--against-encode: part (default 256, as tokenize's)")
    p.add_argument("--rounds", type=int, default=5, help="--against-encode: rounds of runs (default 5)")
    p.add_argument("--tokenize-args", default="", help="--against-encode: more arguments for alit tokenize")
    p.add_argument("--baseline-src", default=None, metavar="DIR",
                   help="--against-encode: also time `alit tokenize` with DIR first on PYTHONPATH (another alit)")
    return p.parse_args()


def linked(files: list[Path], folder: Path) -> Path:
    """A folder of symbolic links to `files` (made once)."""
    if not folder.exists():
        folder.mkdir()
        for f in files:
            os.symlink(f.resolve(), folder / f.name)
    return folder


def table(args, files: list[Path], work: Path) -> list[dict]:
    """Each model at a fixed length and under its own rule, on each process count: one row each."""
    torch.manual_seed(0)
    small = alit.build("small")
    models = [("default", "default", args.images, 16),
              ("small (random)", str(save(small.state_dict(), small.config, work / "small")), args.small_images, 4)]
    results = []
    for name, checkpoint, count, batch in models:
        data = linked(files[:count], work / f"data-{count}")
        tok = alit.load(checkpoint)
        fixed = tok.config.lengths[len(tok.config.lengths) // 2 - 1]
        for label, how in ((f"fixed {fixed}", ["--num-tokens", str(fixed)]), (f"rule {tok.config.criterion}", [])):
            for procs in (int(x) for x in args.procs.split(",")):
                index = run(data, work / f"out-{len(results)}", checkpoint, how, procs, batch)
                row = {"model": name, "lengths": label, "processes": procs, "images": index["images_written"],
                       "wall_s": index["wall_time_s"], "images_per_s": index["images_per_second"],
                       "mean_tokens": index["mean_tokens"],
                       "tokens_per_s": index["images_per_second"] * index["mean_tokens"]}
                results.append(row)
                print(json.dumps(row), flush=True)
    return results


def main() -> None:
    args = parse_args()
    if args.bare_encode:
        print(bare_encode(Path(args.data), args.checkpoint, args.num_tokens, args.batch_size))
        return
    work = Path(tempfile.mkdtemp(prefix="alit-bench-tokenize-"))
    files = sorted(Path(args.data).glob("*"))
    try:
        if args.against_encode:
            against_encode(args, linked(files[:args.images], work / "data"), work)
            return
        results = table(args, files, work)
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
