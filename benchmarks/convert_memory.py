"""Peak memory and wall time of `alit convert` on a full-size checkpoint of the paper's layout.

Builds a synthetic `alit_small_vqgan_quantized` training checkpoint from the released key manifest
(tests/reference/official_checkpoint_keys/): `{"model", "ema", "epoch", "scaler", "args"}` with
random tensors of exactly the manifest's keys and shapes, `gan_losses.*` included (int64 for the
`num_batches_tracked` buffers), optionally with Adam state for every `model` tensor. Then each step
runs in a fresh process:

  baseline   python + `import alit.cli` (what every command pays)
  convert    `alit convert SRC --out DST` through the CLI's main()
  load       `alit.load(DST)`, with the parameter count of the loaded model

Peak RSS is measured twice: by a small launcher process that runs the step as its only child and
reads getrusage(RUSAGE_CHILDREN).ru_maxrss, and by the step itself (VmHWM of /proc/self/status).
Both count the memory-mapped checkpoint pages the step touched. This script's own process never
imports torch: a large parent would leak its size into a child's ru_maxrss through fork.

    python benchmarks/convert_memory.py [--manifest alit_small_vqgan_quantized] [--optimizer]
                                        [--tmp DIR] [--keep]
"""
from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
KEYS = REPO.parent / "shared" / "reference" / "official_checkpoint_keys"

PEAK = """
def vm_hwm_kb():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
"""
BASELINE = PEAK + """
import json
import alit.cli
print(json.dumps({"vm_hwm_kb": vm_hwm_kb()}))
"""
CONVERT = PEAK + """
import json, sys
from alit.cli import main
rc = main(["convert", sys.argv[1], "--out", sys.argv[2]])
print(json.dumps({"rc": rc, "vm_hwm_kb": vm_hwm_kb()}))
"""
LOAD = PEAK + """
import json, sys
import alit
tok = alit.load(sys.argv[1])
print(json.dumps({"params": sum(p.numel() for p in tok.parameters()), "vm_hwm_kb": vm_hwm_kb()}))
"""


# --- the checkpoint (built in a child process) ----------------------------------------------------
def build(manifest: str, path: str, optimizer: bool) -> None:
    import torch

    shapes = json.loads((KEYS / f"{manifest}.json").read_text())

    def state(seed):
        g = torch.Generator().manual_seed(seed)
        return {k: torch.tensor(1000, dtype=torch.int64).reshape(s) if k.endswith("num_batches_tracked")
                else torch.rand(s, generator=g) - 0.5 for k, s in shapes.items()}

    t = time.perf_counter()
    ckpt = {"model": state(0), "ema": state(1), "epoch": 199,
            "scaler": {"scale": 65536.0, "growth_factor": 2.0, "backoff_factor": 0.5,
                       "growth_interval": 2000, "_growth_tracker": 0},
            "args": argparse.Namespace(model=manifest, batch_size=32, blr=1e-4, epochs=200,
                                       output_dir="./output", dynamic_halting=True)}
    if optimizer:
        trainable = [v for v in ckpt["model"].values() if v.is_floating_point()]
        ckpt["optimizer"] = {
            "state": {i: {"step": torch.tensor(1000.0), "exp_avg": torch.zeros_like(v),
                          "exp_avg_sq": torch.zeros_like(v)} for i, v in enumerate(trainable)},
            "param_groups": [{"lr": 1e-4, "betas": (0.9, 0.95), "weight_decay": 0.05,
                              "params": list(range(len(trainable)))}]}
    torch.save(ckpt, path)
    print(json.dumps({
        "tensors_per_state": len(shapes),
        "all_params": sum(v.numel() for v in ckpt["ema"].values()),
        "kept_params": sum(v.numel() for k, v in ckpt["ema"].items() if not k.startswith("gan_losses.")),
        "build_s": time.perf_counter() - t}))


# --- measuring one step ---------------------------------------------------------------------------
def measure(cmd: list[str]) -> None:
    """Run cmd as this (small) process's only child; print its peak RSS, times and output."""
    t = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(json.dumps({"rc": r.returncode, "wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime,
                      "children_maxrss_kb": usage.ru_maxrss, "stdout": r.stdout, "stderr": r.stderr}))


def step(code: str, *args: str) -> dict:
    launcher = [sys.executable, __file__, "--measure", "--", sys.executable, "-c", code, *args]
    r = json.loads(subprocess.run(launcher, capture_output=True, text=True, check=True).stdout)
    if r["rc"] != 0:
        sys.exit(f"step failed ({r['rc']}):\n{r['stdout']}\n{r['stderr']}")
    r.update(json.loads(r["stdout"].strip().splitlines()[-1]))
    return r


def gib(kb: float) -> str:
    return f"{kb / 2 ** 20:.2f} GiB"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--manifest", default="alit_small_vqgan_quantized")
    p.add_argument("--optimizer", action="store_true", help="add Adam state for every model tensor")
    p.add_argument("--tmp", default=None, help="folder for the temporary files (default: system temp)")
    p.add_argument("--keep", action="store_true", help="keep the temporary folder")
    p.add_argument("--build", nargs=3, metavar=("MANIFEST", "PATH", "OPTIMIZER"), help=argparse.SUPPRESS)
    p.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("cmd", nargs="*", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.build:
        return build(args.build[0], args.build[1], args.build[2] == "1")
    if args.measure:
        return measure(args.cmd)

    tmp = Path(tempfile.mkdtemp(prefix="alit-convert-bench-", dir=args.tmp))
    src, dst = tmp / "checkpoint.pth", tmp / "converted"
    try:
        info = json.loads(subprocess.run(
            [sys.executable, __file__, "--build", args.manifest, str(src), "1" if args.optimizer else "0"],
            capture_output=True, text=True, check=True).stdout)
        base = step(BASELINE)
        conv = step(CONVERT, str(src), str(dst))
        load = step(LOAD, str(dst))
        src_size, out_size = src.stat().st_size, (dst / "model.safetensors").stat().st_size
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)

    kept_kb = info["kept_params"] * 4 / 1024
    print(f"checkpoint: {args.manifest}; model + ema, each {info['tensors_per_state']} tensors / "
          f"{info['all_params']:,} parameters (gan_losses included)"
          f"{' + Adam state' if args.optimizer else ''} + epoch, scaler, args: "
          f"{gib(src_size / 1024)} on disk (built in {info['build_s']:.0f} s)")
    print(f"kept: the ema without gan_losses, {info['kept_params']:,} parameters = {gib(kept_kb)} "
          f"float32; model.safetensors {gib(out_size / 1024)}")
    print()
    print(f"{'step (fresh process)':<26} {'wall s':>7} {'cpu s':>7} {'peak RSS':>10} {'VmHWM':>10} "
          f"{'over baseline':>14}")
    for name, r in (("python + import alit.cli", base), ("alit convert", conv), ("alit.load", load)):
        over = "" if r is base else gib(r["children_maxrss_kb"] - base["children_maxrss_kb"])
        print(f"{name:<26} {r['wall_s']:>7.1f} {r['cpu_s']:>7.1f} {gib(r['children_maxrss_kb']):>10} "
              f"{gib(r['vm_hwm_kb']):>10} {over:>14}")
    print()
    ratio = (conv["children_maxrss_kb"] - base["children_maxrss_kb"]) / kept_kb
    print(f"convert: peak RSS over baseline = {ratio:.2f} x the kept weights")
    print(f"loaded parameters: {load['params']:,} "
          f"({'equal to' if load['params'] == info['kept_params'] else 'DIFFERENT from'} the ema without "
          f"gan_losses)")
    if args.keep:
        print(f"files kept in {tmp}")


if __name__ == "__main__":
    main()
