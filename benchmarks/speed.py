"""Issue 7 in one run: compute follows the tokens an image needs. On the `small` preset (random
weights, 256x256; timing does not depend on the weights' values):

  1. a fixed-length 32-token encode against a full 8-iteration rollout with reconstructions
     (target: at most 0.1x);
  2. an adaptive encode of 8 images needing 1, 1, 2, 2, 4, 4, 8, 8 iterations, with and without
     per-image compaction (target: at most 0.6x);
  3. the full fp32 rollout against the code before issue 7 (target: at least 1.1x faster);
  4. bfloat16 against float32 (target: at least 2.5x faster);
  5. the per-iteration table (`alit bench --per-iteration`) at batch 1 and at batch 8.

    python benchmarks/speed.py                       # everything (long on a small CPU)
    python benchmarks/speed.py --preset tiny         # a quick smoke run of the same script
    python benchmarks/speed.py --out speed.json

"Before" is the package as it was before issue 7: `git archive` of --before-ref (default: the
parent of the commit that added src/alit/bench.py, or HEAD while that file is uncommitted),
unpacked in a temporary folder and imported as a second package, so both run in this process on
the same weights and images; the repository's checkout is not touched. Compared things run
interleaved, in alternating order, and each keeps its best time.

bfloat16 runs with the weights cast (`alit.load(path, dtype=torch.bfloat16)`). On a CPU without
native bfloat16 (no AVX512-BF16 / AMX) it is emulated and slower than float32; --bf16-iters 1
compares one-iteration rollouts instead (setup, one encoder pass, one latent decoder pass, one
pixel decode: every kind of work of a full rollout) where time is short.

With --out, the JSON is rewritten after every section, so an interrupted run keeps what it measured.
"""
from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path

import torch

import alit
from alit.bench import cpu_has_native_bf16, describe_device, format_iterations, summarize, timed_rollout
from alit.criteria import CriterionInput
from alit.measure import PeakMemory

REPO = Path(__file__).resolve().parents[1]
NEEDS = [1, 1, 2, 2, 4, 4, 8, 8]  # iterations each image of the compaction batch needs


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="small")
    p.add_argument("--repeats", type=int, default=3, help="rounds of the batch-1 comparisons (default 3)")
    p.add_argument("--compaction-repeats", type=int, default=2, help="rounds of the batch-8 encodes (default 2)")
    p.add_argument("--compaction-criterion", choices=("pixels", "pixel-free"), default="pixels",
                   help="how the batch-8 encode judges a length: from decoded pixels, as L1Below (default), "
                   "or from the decoder's prediction, as ConfidenceAbove")
    p.add_argument("--bf16-iters", type=int, default=None,
                   help="iterations of the bf16 / fp32 rollouts compared (default: all)")
    p.add_argument("--before-ref", default=None, help="git revision of the code before (default: see above)")
    p.add_argument("--out", default=None, help="also write every number as JSON")
    args = p.parse_args()
    torch.manual_seed(0)
    started = time.perf_counter()
    out = {"preset": args.preset, "device": describe_device(torch.device("cpu")), "torch": torch.__version__}
    print(f"{args.preset} preset, random weights | {out['device']} | torch {torch.__version__}", flush=True)

    tok = alit.build(args.preset)
    S = tok.config.image_size
    L0, T = tok.config.tokens_per_iter, tok.config.num_iters
    x1 = torch.rand(1, 3, S, S, generator=torch.Generator().manual_seed(0))
    ref = args.before_ref or before_ref()
    old_pkg = import_revision(ref)
    old = old_pkg.build(args.preset)
    old.load_state_dict(tok.state_dict())
    print(f"before: {ref} ({git('rev-parse', '--short', ref)}), imported as a second package", flush=True)

    # --- batch 1: full rollout (before / after, with the bench hooks) and a fixed-length encode ---
    with torch.no_grad():  # warm-up: first calls build kernels and caches
        tok.rollout(x1, num_iters=1)
        old.rollout(x1, num_iters=1)
        a, b = tok.rollout(x1), old.rollout(x1)
    diffs = {"reconstructions": max((u - v).abs().max().item() for u, v in zip(a.reconstructions, b.reconstructions)),
             "codes": max((u - v).abs().max().item() for u, v in zip(a.codes, b.codes)),
             "ids_equal": all(torch.equal(u, v) for u, v in zip(a.ids, b.ids))}
    print(f"same weights, same images: max |after - before| reconstructions {diffs['reconstructions']:.2e}, "
          f"codes {diffs['codes']:.2e}, ids equal: {diffs['ids_equal']}", flush=True)
    del a, b
    runs, t_before, t_fixed = [], [], []
    with PeakMemory(x1.device) as memory:
        for r in range(args.repeats):
            order = ["after", "before", "fixed"] if r % 2 == 0 else ["fixed", "before", "after"]
            for what in order:
                if what == "after":
                    runs.append(timed_rollout(tok, x1))
                    t = runs[-1]["total"]
                elif what == "before":
                    with torch.no_grad():  # as timed_rollout
                        t = seconds(lambda: old.rollout(x1))
                    t_before.append(t)
                else:
                    t = seconds(lambda: tok.encode(x1, num_tokens=L0))
                    t_fixed.append(t)
                print(f"  round {r + 1}: {what:<6} {t:8.2f} s", flush=True)
    table1 = summarize(tok, runs, x1, None, memory)
    table1["model"] = f"preset {args.preset} (random weights)"
    after, before, fixed = table1["rollout_s"], min(t_before), min(t_fixed)
    out["batch1"] = {"rollout_after_s": after, "rollout_before_s": before, "fixed_encode_s": fixed,
                     "rollout_after_runs_s": [r["total"] for r in runs], "rollout_before_runs_s": t_before,
                     "fixed_encode_runs_s": t_fixed, "after_vs_before_max_abs_diff": diffs, "bench": table1}
    save(out, args.out)

    # --- batch 8: adaptive encode with and without compaction ---
    x8 = tagged(S)
    pixel_free = args.compaction_criterion == "pixel-free"
    crit = NeedsIterations(x8, NEEDS, L0, pixel_free)
    for compact in (True, False):  # warm the batch-8 shapes
        tok.encode(x8[:2], criterion=NeedsIterations(x8[:2], [1, 2], L0, pixel_free), _compact=compact)
    t_compact, t_full = [], []
    for r in range(args.compaction_repeats):
        for compact in ((True, False) if r % 2 == 0 else (False, True)):
            crit.calls = 0
            t = seconds(lambda: check_lengths(tok.encode(x8, criterion=crit, _compact=compact), NEEDS, L0))
            (t_compact if compact else t_full).append(t)
            print(f"  batch 8, {'with' if compact else 'without'} compaction: {t:8.2f} s", flush=True)
    out["compaction"] = {"needs": NEEDS, "criterion": args.compaction_criterion,
                         "with_s": min(t_compact), "without_s": min(t_full), "with_runs_s": t_compact,
                         "without_runs_s": t_full, "image_iterations": [sum(NEEDS), len(NEEDS) * max(NEEDS)]}
    save(out, args.out)

    # --- bfloat16 against float32 ---
    iters = args.bf16_iters or T
    low = copy.deepcopy(tok).to(torch.bfloat16)
    with torch.no_grad():
        low.rollout(x1, num_iters=1)  # warm-up
    t32, t16 = [], []
    for r in range(max(1, args.repeats - 1)):
        for dtype in ((torch.bfloat16, torch.float32) if r % 2 == 0 else (torch.float32, torch.bfloat16)):
            model = low if dtype == torch.bfloat16 else tok
            with torch.no_grad():
                t = seconds(lambda: model.rollout(x1, num_iters=iters))
            (t16 if dtype == torch.bfloat16 else t32).append(t)
            print(f"  {'bf16' if dtype == torch.bfloat16 else 'fp32'} rollout of {iters} iteration(s): {t:8.2f} s",
                  flush=True)
    with torch.no_grad():
        r32, r16 = tok.rollout(x1, num_iters=iters), low.rollout(x1, num_iters=iters)
    err = [(u.float() - v).abs() for u, v in zip(r16.reconstructions, r32.reconstructions)]
    out["bf16"] = {"iterations": iters, "fp32_s": min(t32), "bf16_s": min(t16), "native_bf16": cpu_has_native_bf16(),
                   "pixel_error_mean": [e.mean().item() for e in err], "pixel_error_max": [e.max().item() for e in err],
                   "reconstruction_mean_abs": r32.reconstructions[-1].abs().mean().item(),
                   "ids_agree": [(u == v).float().mean().item() for u, v in zip(r16.ids, r32.ids)],
                   "fp32_runs_s": t32, "bf16_runs_s": t16}
    del low
    save(out, args.out)

    # --- batch 8 bench table ---
    g8 = torch.rand(8, 3, S, S, generator=torch.Generator().manual_seed(0))
    with PeakMemory(g8.device) as memory8:
        runs8 = [timed_rollout(tok, g8)]
    table8 = summarize(tok, runs8, g8, None, memory8)
    table8["model"] = f"preset {args.preset} (random weights)"
    out["batch8_bench"] = table8
    out["total_s"] = time.perf_counter() - started

    report(out, table1, table8)
    save(out, args.out)
    if args.out:
        print(f"wrote {args.out}")


def save(out: dict, path: str | None) -> None:
    if path:
        Path(path).write_text(json.dumps(out, indent=1) + "\n")


def report(out: dict, table1: dict, table8: dict) -> None:
    b1, c, bf = out["batch1"], out["compaction"], out["bf16"]
    print("\n=== alit bench, batch 1 ===")
    print(format_iterations(table1))
    print("\n=== alit bench, batch 8 (one run) ===")
    print(format_iterations(table8))
    print("\n=== issue 7 targets ===")
    rows = [
        ("fixed-length 32-token encode / full rollout with pixels", b1["fixed_encode_s"], b1["rollout_after_s"],
         "<= 0.1x", b1["fixed_encode_s"] / b1["rollout_after_s"] <= 0.1),
        (f"batch 8 needing {c['needs']}: with / without compaction ({c['criterion']} criterion)",
         c["with_s"], c["without_s"], "<= 0.6x", c["with_s"] / c["without_s"] <= 0.6),
        ("fp32 full rollout: after / before issue 7", b1["rollout_after_s"], b1["rollout_before_s"],
         ">= 1.1x faster", b1["rollout_before_s"] / b1["rollout_after_s"] >= 1.1),
        (f"bf16 / fp32, rollout of {bf['iterations']} iteration(s)", bf["bf16_s"], bf["fp32_s"],
         ">= 2.5x faster", bf["fp32_s"] / bf["bf16_s"] >= 2.5),
    ]
    for name, a, b, target, ok in rows:
        speed = f"{b / a:.2f}x faster" if a < b else f"{a / b:.2f}x slower"
        print(f"{name}\n    {a:.2f} s vs {b:.2f} s: ratio {a / b:.3f} ({speed}); target {target}: "
              f"{'met' if ok else 'NOT met'}")
    print(f"bf16 pixel error against fp32 (random weights; mean |reconstruction| "
          f"{bf['reconstruction_mean_abs']:.3f}): mean " + ", ".join(f"{e:.4f}" for e in bf["pixel_error_mean"])
          + "; max " + ", ".join(f"{e:.3f}" for e in bf["pixel_error_max"])
          + "; latent ids agreeing " + ", ".join(f"{a:.1%}" for a in bf["ids_agree"]))
    if not bf["native_bf16"]:
        print("    (this CPU has no native bfloat16 arithmetic (no AVX512-BF16 / AMX): it is emulated)")
    d = b1["after_vs_before_max_abs_diff"]
    print(f"after vs before on the same weights: max abs diff reconstructions {d['reconstructions']:.2e}, "
          f"codes {d['codes']:.2e}, ids equal {d['ids_equal']}")
    print(f"total time of this benchmark: {out['total_s'] / 60:.1f} min")


class NeedsIterations:
    """Image i (known by its first pixel) is good enough after need[i] iterations. Pixel-free, it
    reads the decoder's prediction (mean probability of the base ids, as ConfidenceAbove does);
    otherwise it gets pixels and computes their L1 error (as L1Below does)."""

    def __init__(self, images: torch.Tensor, need: list[int], tokens_per_iter: int, pixel_free: bool):
        self.need = {round(v, 4): n for v, n in zip(images[:, 0, 0, 0].tolist(), need)}
        self.tokens_per_iter = tokens_per_iter
        self.needs_pixels = not pixel_free
        self.calls = 0

    def __call__(self, first, reconstructions=None) -> torch.Tensor:
        self.calls += 1
        if isinstance(first, CriterionInput):
            images, length = first.images, first.num_tokens
            _ = first.gt_prob.mean(1)
        else:
            images, length = first, None
            _ = (reconstructions - images).abs().flatten(1).mean(1)
        need = torch.tensor([self.need[round(v, 4)] for v in images[:, 0, 0, 0].tolist()])
        if length is None:  # pixels carry no length: the calls count iterations of the images left
            length = self.tokens_per_iter * self.calls
        return need * self.tokens_per_iter <= length


def tagged(size: int) -> torch.Tensor:
    x = torch.rand(len(NEEDS), 3, size, size, generator=torch.Generator().manual_seed(1))
    x[:, 0, 0, 0] = torch.arange(1, len(NEEDS) + 1) / 10  # distinct tags
    return x


def check_lengths(enc, need: list[int], tokens_per_iter: int):
    got = enc.lengths.tolist()
    if got != [n * tokens_per_iter for n in need]:
        raise RuntimeError(f"the encode chose {got}")
    return enc


def seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(REPO), *args], check=True, capture_output=True, text=True).stdout.strip()


def before_ref() -> str:
    added = git("log", "--diff-filter=A", "--format=%H", "--", "src/alit/bench.py").splitlines()
    return f"{added[-1]}^" if added else "HEAD"


def import_revision(ref: str, name: str = "alit_before"):
    """The package src/alit at git revision `ref`, imported as `name` (the checkout is untouched)."""
    folder = Path(tempfile.mkdtemp(prefix="alit-before-"))
    data = subprocess.run(["git", "-C", str(REPO), "archive", ref, "src/alit"], check=True,
                          capture_output=True).stdout
    with tarfile.open(fileobj=BytesIO(data)) as tar:
        tar.extractall(folder, filter="data") if hasattr(tarfile, "data_filter") else tar.extractall(folder)
    root = folder / "src" / "alit"
    spec = importlib.util.spec_from_file_location(name, root / "__init__.py", submodule_search_locations=[str(root)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


if __name__ == "__main__":
    main()
