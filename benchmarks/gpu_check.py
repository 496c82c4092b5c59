"""One prepared GPU check of alit (issue 33, item 9): speed, precision and the commands, in one run.

    benchmarks/gpu_check.sh                          # on a GPU machine: under 8 minutes on one H100
    benchmarks/gpu_check.sh --device cpu --quick     # the same sections at tiny sizes, in minutes

It needs no network and makes its own data: the demo photos bundled with alit
(src/alit/assets/demo_photos) and noise images. The sections:

  bench       the bundled model and a random-weight `small` (256 px), batch 32 and 64, in fp32, tf32
              and bf16: encode at the shortest and the longest length and by the model's own rule,
              decode, full rollout (`alit.bench`: synchronised only at the ends of each timed region;
              host syncs per iteration counted with CUDA's sync debug mode in a warm-up; CUDA peak
              memory reset per row)
  agreement   the same images encoded on the CPU in fp32 and on the device in each precision: the
              share of equal lengths under the model's rule and of equal ids at the longest length
  tokenize    `python -m alit tokenize DIR --num-tokens N --precision P` on a folder it writes
  train       50 steps of `alit train distill` on `small` (random base) in bf16 with gradient
              accumulation
  torchrun    tokenize and train again on 2 processes, where there are 2 GPUs
  compile     the bundled model eager, then with torch.compile (benchmarks/compile_speed.py): encode at
              the shortest and longest length and decode, the largest batch, the last precision
              (issue 33 item 10: kept only if it measures faster); not in --quick (compiling takes a
              minute on a CPU), `--sections compile` asks for it

They run cheapest first: bench and agreement of the bundled model, tokenize, train, then those of
`small`, then torchrun, then compile. Every section is guarded: a failure is one row of the table (the traceback
goes to the log) and the rest go on. Near the time budget (--budget-s) the rest are skipped, each
with a row saying so: a section is skipped when the last one of its kind would no longer end in
time. Writes OUT/gpu_check.md (one markdown table), OUT/gpu_check.json (the same rows, the plan and
the environment) and OUT/gpu_check.log after every section, so an interrupted run keeps what it
measured. OUT: --out, else $OUT when set, else benchmarks/results/gpu_check/. Tokens, training
runs and images go to a temporary folder, removed at the end.
"""
from __future__ import annotations

import argparse
import copy
import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import alit
from alit.bench import bench, describe_device
from alit.images import load_image
from alit.presets import PRESETS

REPO = Path(__file__).resolve().parents[1]
PHOTOS = Path(alit.__file__).parent / "assets" / "demo_photos"
COLUMNS = [("section", "section"), ("model", "model"), ("what", "what"), ("precision", "precision"),
           ("batch", "batch"), ("images_per_s", "images/s"), ("ms_per_image", "ms/image"),
           ("peak_mb", "peak MiB"), ("syncs_per_iteration", "host syncs/iter"), ("agreement", "agreement"),
           ("status", "status")]


SECTIONS = ("bench", "agreement", "tokenize", "train", "torchrun", "compile")


@dataclass
class Plan:
    """What one run measures. `full` is the GPU check; `quick` the same sections at tiny sizes."""

    device: str
    models: list[str]               # "default" (the bundled model) or a preset (random weights)
    batches: list[int]
    precisions: list[str]
    repeats: int                    # timed runs per row after the warm-up (the best is kept)
    agree_images: int               # images per model in the agreement section (256 px and up: 4)
    tokenize_images: int            # images in the folder `alit tokenize` reads
    tokenize_batch: int
    train_preset: str
    train_steps: int
    train_batch: int                # images per optimizer step, all processes together
    train_micro: int                # images per forward per process: batch / micro = accumulation
    budget_s: float                 # seconds; sections that would end later are skipped
    threads: int | None             # CPU threads of torch, here and in the commands (None: torch's own)
    sections: list[str] = field(default_factory=lambda: list(SECTIONS))


# the GPU check: under 8 minutes on one H100 (the budget leaves room for start-up and one late section)
FULL = dict(models=["default", "small"], batches=[32, 64], precisions=["fp32", "tf32", "bf16"], repeats=2,
            agree_images=64, tokenize_images=512, tokenize_batch=64, train_preset="small", train_steps=50,
            train_batch=32, train_micro=8, budget_s=400)
# the same sections at tiny sizes: a few minutes on a CPU
QUICK = dict(models=["default", "tiny"], batches=[2], precisions=["fp32", "bf16"], repeats=1, agree_images=4,
             tokenize_images=8, tokenize_batch=4, train_preset="tiny", train_steps=3, train_batch=4,
             train_micro=2, budget_s=150, sections=[s for s in SECTIONS if s != "compile"])


def make_plan(args) -> Plan:
    plan = Plan(device=args.device, threads=args.threads, **(QUICK if args.quick else FULL))
    if plan.threads is None and args.quick and args.device == "cpu":
        plan.threads = 1  # tiny sizes gain nothing from threads, and a shared CPU loses much to them
    for name in ("models", "batches", "precisions", "sections"):
        if getattr(args, name):
            setattr(plan, name, getattr(args, name))
    for name in ("repeats", "train_steps", "budget_s"):
        if getattr(args, name) is not None:
            setattr(plan, name, getattr(args, name))
    return plan


# --- the table: rows, guarded sections, the time budget -----------------------------------------

class Report:
    """The rows so far; `run` guards a section and keeps the time budget; `save` writes the files."""

    def __init__(self, plan: Plan, out: Path):
        self.plan, self.out, self.rows = plan, out, []
        self.took = {}  # seconds of the last section of each kind (section, model, precision)
        self.start = time.perf_counter()
        self.env = environment(plan)
        out.mkdir(parents=True, exist_ok=True)
        self.log_file = open(out / "gpu_check.log", "w")

    def log(self, line: str) -> None:
        print(line, flush=True)
        self.log_file.write(line + "\n")
        self.log_file.flush()

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def run(self, section: str, labels: dict, fn) -> None:
        """Rows of fn() with `labels`; a failure, or a budget already spent, is one row instead."""
        base = {"section": section, **labels}
        kind = (section, labels.get("model"), labels.get("precision"))
        # near the limit: a section is skipped when the last one of its kind would not fit any more
        if self.elapsed() + self.took.get(kind, 0.0) > self.plan.budget_s:
            self.add({**base, "status": f"skipped: would end past the time budget ({self.plan.budget_s:.0f} s)"})
            self.save()
            return
        started = time.perf_counter()
        try:
            rows = fn()
        except Exception as e:  # noqa: BLE001 -- one section's failure must not stop the others
            self.log(traceback.format_exc())
            rows = [{"status": f"failed: {type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}"}]
            free_device_memory()
        self.took[kind] = time.perf_counter() - started
        for row in rows:
            self.add({**base, "seconds": round(self.took[kind], 2), **row})
        self.save()

    def add(self, row: dict) -> None:
        row.setdefault("status", "ok")
        self.rows.append(row)
        self.log(" | ".join(cell(row, key) for key, _ in COLUMNS))

    def save(self) -> None:
        self.env["total_s"] = round(self.elapsed(), 1)
        (self.out / "gpu_check.json").write_text(json.dumps(
            {"environment": self.env, "plan": asdict(self.plan), "rows": self.rows}, indent=1) + "\n")
        (self.out / "gpu_check.md").write_text(markdown(self.env, self.rows))


def cell(row: dict, key: str) -> str:
    value = row.get(key)
    if key == "syncs_per_iteration" and value is None and row.get("host_syncs") is not None:
        return f"{row['host_syncs']} per call"  # decode: no iterations
    if value is None:
        return ""
    if key == "agreement":
        return f"{value:.1%}"
    if isinstance(value, float):
        return f"{value:.3g}" if key != "peak_mb" else f"{value:.0f}"
    return str(value).replace("|", "/")


def markdown(env: dict, rows: list[dict]) -> str:
    lines = [f"# alit GPU check: {env['device']}", "",
             f"torch {env['torch']}, {env['gpus']} GPU(s), alit {env['commit']}, {env['total_s']:.0f} s in all; "
             f"images/s and ms/image from the best timed run; host syncs per iteration counted by "
             f"{env['sync_method']}; agreement: with the CPU in fp32", "",
             "| " + " | ".join(title for _, title in COLUMNS) + " |",
             "|" + "|".join("---:" if key in ("batch", "images_per_s", "ms_per_image", "peak_mb",
                                              "syncs_per_iteration", "agreement") else "---"
                            for key, _ in COLUMNS) + "|"]
    lines += ["| " + " | ".join(cell(r, key) for key, _ in COLUMNS) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def environment(plan: Plan) -> dict:
    device = torch.device(plan.device)
    try:
        commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, timeout=10).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        commit = "unknown"
    return {"device": describe_device(device), "torch": torch.__version__, "commit": commit,
            "gpus": torch.cuda.device_count() if torch.cuda.is_available() else 0,
            "sync_method": "CUDA sync debug mode" if device.type == "cuda" else
            "operations that would sync a GPU, counted on the CPU", "total_s": 0.0}


def free_device_memory() -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# --- data it makes itself ------------------------------------------------------------------------

def make_images(n: int, size: int) -> torch.Tensor:
    """[n, 3, size, size] on the 8-bit grid: the demo photos as every command prepares them, then
    noise (seeded) for the rest."""
    photos = sorted(p for p in PHOTOS.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[:n]
    images = [load_image(p, size) for p in photos]
    g = torch.Generator().manual_seed(0)
    noise = torch.rand(n - len(images), 3, size, size, generator=g).mul(255).round().div(255)
    return torch.cat([torch.stack(images), noise]) if images else noise


def write_folder(folder: Path, n: int, size: int = 128) -> Path:
    """A folder of n images for `alit tokenize` and `alit train`: the demo photos, then noise PNGs."""
    folder.mkdir(parents=True, exist_ok=True)
    photos = sorted(p for p in PHOTOS.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[:n]
    for p in photos:
        shutil.copy(p, folder / p.name)
    rng = np.random.default_rng(0)
    for i in range(n - len(photos)):
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(folder / f"noise{i:04d}.png")
    return folder


# --- sections in this process: bench and agreement -----------------------------------------------

def load_model(name: str, device: str):
    """The bundled model for "default", else a preset with random weights (seed 0), in eval mode."""
    if name.split("-")[0] in PRESETS:
        torch.manual_seed(0)
        tok = alit.build(name)
    else:
        tok = alit.load(name)
    return tok.to(device).eval()


def bench_rows(tok, images: torch.Tensor, precision: str, repeats: int) -> list[dict]:
    result = bench(tok, batch=len(images), precision=precision, repeats=repeats, images=images)
    return [{"what": r["what"], "images_per_s": r["images_per_s"], "ms_per_image": r["ms_per_image"],
             "peak_mb": r["peak_memory_mb"], "syncs_per_iteration": r["host_syncs_per_iteration"],
             "host_syncs": r["host_syncs"], "iterations": r["iterations"], "mean_tokens": r["mean_tokens"],
             "runs_s": r["runs_s"]} for r in result["rows"]]


class Reference:
    """The CPU fp32 encodings of the agreement images, made once per model."""

    def __init__(self, tok, images: torch.Tensor):
        cpu = copy.deepcopy(tok).cpu()
        longest = tok.config.lengths[-1]
        self.images, self.longest = images, longest
        self.rule = cpu.encode(images, precision="fp32")
        self.fixed = cpu.encode(images, num_tokens=longest, precision="fp32")


def agreement_rows(tok, ref: Reference, precision: str) -> list[dict]:
    images = ref.images.to(next(tok.parameters()).device)
    rule = tok.encode(images, precision=precision)
    fixed = tok.encode(images, num_tokens=ref.longest, precision=precision)
    lengths = (rule.lengths.cpu() == ref.rule.lengths).float().mean().item()
    rows = [{"what": f"equal lengths under the model's rule (mean {rule.lengths.float().mean():.1f} tokens, "
                     f"CPU fp32 {ref.rule.lengths.float().mean():.1f})", "agreement": lengths}]
    if fixed.ids is not None:
        ids = (fixed.ids.cpu() == ref.fixed.ids).float().mean().item()
        rows.append({"what": f"equal ids at {ref.longest} tokens", "agreement": ids})
    else:  # continuous latents: how far, not whether equal
        diff = (fixed.latents.float().cpu() - ref.fixed.latents.float()).abs().max().item()
        rows.append({"what": f"latents at {ref.longest} tokens: max |difference| {diff:.2g}"})
    return [{**r, "batch": len(images)} for r in rows]


def model_sections(report: Report, plan: Plan, name: str) -> None:
    """bench (a row per batch, precision and operation), then agreement, for one model."""
    held = {}

    def load():
        held["tok"] = load_model(name, plan.device)
        return []

    report.run("bench", {"model": name, "what": "load the model"}, load)
    if "tok" not in held:
        return
    tok = held["tok"]
    size = tok.config.image_size
    label = f"{name} ({size} px{', random weights' if name.split('-')[0] in PRESETS else ''})"
    if "bench" in plan.sections:
        for batch in plan.batches:
            images = make_images(batch, size)
            for p in plan.precisions:
                report.run("bench", {"model": label, "precision": p, "batch": batch},
                           lambda: bench_rows(tok, images, p, plan.repeats))
    if "agreement" in plan.sections:
        n = plan.agree_images if size <= 64 else min(plan.agree_images, 4)  # the CPU side is slow at 256 px
        for p in plan.precisions:
            report.run("agreement", {"model": label, "precision": p},
                       lambda: agreement_rows(tok, reference(held, tok, n), p))
    del held["tok"], tok
    held.clear()
    free_device_memory()


def reference(held: dict, tok, n: int) -> Reference:
    if "ref" not in held:
        held["ref"] = Reference(tok, make_images(n, tok.config.image_size))
    return held["ref"]


# --- sections in subprocesses: the commands as users run them ------------------------------------

def launcher(nproc: int) -> list[str]:
    if nproc == 1:
        return [sys.executable]
    torchrun = Path(sys.executable).with_name("torchrun")
    start = [str(torchrun)] if torchrun.exists() else [sys.executable, "-m", "torch.distributed.run"]
    return [*start, "--standalone", f"--nproc_per_node={nproc}"]


def run_command(report: Report, cmd: list[str], log: Path) -> subprocess.CompletedProcess:
    """cmd with a timeout that keeps the budget (plus 30 s of grace), its output in `log`; a
    RuntimeError with the last line of its output when it fails."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if report.plan.threads is not None:
        env["OMP_NUM_THREADS"] = str(report.plan.threads)
    if report.plan.device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""  # the commands pick a GPU where they see one
    timeout = max(60.0, report.plan.budget_s + 30 - report.elapsed())
    report.log("$ " + " ".join(cmd))
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise RuntimeError(f"timed out after {timeout:.0f} s") from e
    log.write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        report.log(done.stdout[-3000:] + done.stderr[-3000:])
        last = (done.stderr.strip() or done.stdout.strip() or "no output").splitlines()[-1]
        raise RuntimeError(f"exit {done.returncode}: {last[:160]}")
    return done


@functools.cache
def tokenize_help() -> str:
    from alit.cli import build_parser

    parser = build_parser()  # argparse has no public way to reach a subcommand's parser
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices["tokenize"].format_help()


def precision_flag(precision: str) -> list[str] | None:
    """How this alit's `tokenize` takes a precision: --precision, else the older --dtype (no tf32)."""
    if "--precision" in tokenize_help():
        return ["--precision", precision]
    return ["--dtype", precision] if precision in ("fp32", "bf16", "fp16") else None


def tokenize_rows(report: Report, folder: Path, work: Path, precision: str, nproc: int) -> list[dict]:
    flag = precision_flag(precision)
    if flag is None:
        return [{"status": f"skipped: this `alit tokenize` has no --precision (its --dtype has no {precision})"}]
    longest = alit.load("default").config.lengths[-1]
    out = work / f"tokens-{precision}-{nproc}"
    cmd = [*launcher(nproc), "-m", "alit", "tokenize", str(folder), "--out", str(out), "--num-tokens",
           str(longest), "--batch-size", str(report.plan.tokenize_batch), "--no-progress", *flag]
    if nproc == 1:
        cmd += ["--device", report.plan.device]
    start = time.perf_counter()
    run_command(report, cmd, work / f"tokenize-{precision}-{nproc}.log")
    wall = time.perf_counter() - start
    index = json.loads((out / "_index.json").read_text())
    rate = index["images_per_second"]
    return [{"what": f"alit tokenize, {index['images_written']} images, {longest} tokens, {nproc} process(es); "
                     f"{wall:.1f} s with start-up", "images_per_s": rate, "ms_per_image": 1e3 / rate,
             "batch": report.plan.tokenize_batch, "wall_s": wall}]


def train_rows(report: Report, folder: Path, work: Path, nproc: int) -> list[dict]:
    plan = report.plan
    run = work / f"train-{nproc}"
    settings = [f"model={plan.train_preset}", "base=random", "precision=bf16", f"batch_size={plan.train_batch}",
                f"micro_batch_size={plan.train_micro}", "workers=2", "cache_images=true", "image_every=0",
                "checkpoint_every=1000000", "keep_checkpoints=1", "warmup=0"]
    cmd = [*launcher(nproc), "-m", "alit", "train", "distill", "--config", "tiny", "--data", str(folder),
           "--out", str(run), "--max-steps", str(plan.train_steps), "--no-progress", "--set", *settings]
    start = time.perf_counter()
    run_command(report, cmd, work / f"train-{nproc}.log")
    wall = time.perf_counter() - start
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records]
    if len(records) != plan.train_steps or not all(np.isfinite(losses)):
        raise RuntimeError(f"{len(records)} of {plan.train_steps} steps logged, losses {losses[-3:]}")
    first, last = records[0], records[-1]  # the first step's time holds the start-up: left out
    rate = (plan.train_batch * (last["step"] - first["step"]) / (last["time"] - first["time"])
            if len(records) > 1 else plan.train_batch / wall)
    accumulation = plan.train_batch // (plan.train_micro * nproc)
    return [{"what": f"alit train distill, {plan.train_steps} steps, {nproc} process(es) x {accumulation} "
                     f"micro-steps x {plan.train_micro} images; loss {losses[0]:.3g} -> {losses[-1]:.3g}; "
                     f"{wall:.1f} s with start-up", "precision": "bf16", "batch": plan.train_batch,
             "images_per_s": rate, "ms_per_image": 1e3 / rate, "model": f"{plan.train_preset} (random base)",
             "wall_s": wall}]


# --- the run -------------------------------------------------------------------------------------

def run_sections(report: Report, plan: Plan, work: Path) -> None:
    """The bundled model first, then the commands, then the other models, then torchrun: what is
    cheap and most likely to break runs before the budget can run out."""
    models = list(plan.models)
    if models and ({"bench", "agreement"} & set(plan.sections)):
        model_sections(report, plan, models.pop(0))
    folder = write_folder(work / "images", plan.tokenize_images)
    if "tokenize" in plan.sections:
        for p in plan.precisions:
            report.run("tokenize", {"model": "default", "precision": p},
                       lambda: tokenize_rows(report, folder, work, p, 1))
    if "train" in plan.sections:
        report.run("train", {}, lambda: train_rows(report, folder, work, 1))
    if {"bench", "agreement"} & set(plan.sections):
        for name in models:
            model_sections(report, plan, name)
    if "torchrun" in plan.sections:
        torchrun_sections(report, plan, folder, work)
    if "compile" in plan.sections:
        p, b = plan.precisions[-1], max(plan.batches)
        # compiling is slow and not measured yet where this runs: assume 2 minutes, so the check ends in time
        report.took.setdefault(("compile", "default", p), 120.0)
        report.run("compile", {"model": "default", "precision": p, "batch": b}, lambda: compile_section(plan, p, b))


def compile_section(plan: Plan, precision: str, batch: int) -> list[dict]:
    from compile_speed import compile_rows  # beside this script

    tok = load_model("default", plan.device)  # its own copy: compiling changes it in place
    rows = compile_rows(tok, make_images(batch, tok.config.image_size).to(plan.device), precision, plan.repeats)
    del tok
    free_device_memory()
    return rows


def torchrun_sections(report: Report, plan: Plan, folder: Path, work: Path) -> None:
    gpus = torch.cuda.device_count() if plan.device.startswith("cuda") else 0
    if gpus < 2:
        for what in ("alit tokenize on 2 processes", "alit train distill on 2 processes"):
            report.add({"section": "torchrun", "what": what, "status": f"skipped: needs 2 GPUs, "
                        f"{'this run is on the CPU' if plan.device == 'cpu' else f'found {gpus}'}"})
        report.save()
        return
    report.run("torchrun", {"model": "default", "precision": "bf16"},
               lambda: tokenize_rows(report, folder, work, "bf16", 2))
    report.run("torchrun", {}, lambda: train_rows(report, folder, work, 2))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                   help="torch device (default: cuda if available, else cpu)")
    p.add_argument("--quick", action="store_true",
                   help="tiny sizes: the bundled model and the `tiny` preset, batch 2, fp32 and bf16, one timed "
                   "run, 3 training steps of `tiny` (a few minutes on a CPU)")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="output folder (default: $OUT when set, else benchmarks/results/gpu_check)")
    p.add_argument("--budget-s", type=float, default=None, metavar="S",
                   help="time budget: a section is skipped when the last one of its kind would end after S "
                   "seconds (default 400; --quick 150)")
    p.add_argument("--models", nargs="+", default=None, metavar="NAME",
                   help="'default' (the bundled model) and/or presets (default: default small; --quick: default tiny)")
    p.add_argument("--batches", nargs="+", type=int, default=None, metavar="B", help="default 32 64; --quick 2")
    p.add_argument("--precisions", nargs="+", choices=("fp32", "tf32", "bf16", "fp16"), default=None, metavar="P",
                   help="default fp32 tf32 bf16; --quick fp32 bf16")
    p.add_argument("--repeats", type=int, default=None, metavar="N", help="timed runs per row (default 2; --quick 1)")
    p.add_argument("--train-steps", type=int, default=None, metavar="N", help="default 50; --quick 3")
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="CPU threads of torch, here and in the commands (default: torch's own; --quick on the CPU: 1)")
    p.add_argument("--sections", nargs="+", choices=SECTIONS, default=None,
                   help="only these sections (default: all; --quick: all but compile)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    plan = make_plan(args)
    if plan.threads is not None:
        torch.set_num_threads(plan.threads)
    out = Path(args.out or os.environ.get("OUT") or REPO / "benchmarks" / "results" / "gpu_check")
    report = Report(plan, out)
    report.log(f"alit GPU check on {report.env['device']} | torch {report.env['torch']} | plan {asdict(plan)}")
    work = Path(tempfile.mkdtemp(prefix="alit-gpu-check-"))  # tokens, runs, data: never in OUT
    try:
        run_sections(report, plan, work)
    finally:
        report.save()
        shutil.rmtree(work, ignore_errors=True)
    failed = [r for r in report.rows if r["status"].startswith("failed")]
    report.log(f"\n{(out / 'gpu_check.md').read_text()}\n{len(report.rows)} rows, {len(failed)} failed, "
               f"{report.elapsed():.0f} s; table: {out / 'gpu_check.md'} (JSON: {out / 'gpu_check.json'})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
