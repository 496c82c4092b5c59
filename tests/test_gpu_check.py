"""benchmarks/gpu_check.sh: the one prepared GPU check, run here as `--device cpu --quick` (the same
sections at tiny sizes, one thread), and its guard rails: a failing section is one row and the
rest go on; past the time budget the rest are skipped, each with a row."""
from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SECTIONS = ("bench", "agreement", "tokenize", "train", "torchrun")
OPERATIONS = ("encode, ", "decode, ", "full rollout")


@pytest.fixture(scope="module")
def gpu_check():
    """benchmarks/gpu_check.py as a module (registered: its dataclass needs sys.modules)."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        yield importlib.import_module("gpu_check")
    finally:
        sys.path.remove(str(REPO / "benchmarks"))


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    """One real run, as a user starts it; a budget no machine reaches, however loaded, so nothing is
    skipped (the time budget's own verdict is tested with an injected budget below)."""
    out = tmp_path_factory.mktemp("gpu_check")
    env = {k: v for k, v in os.environ.items() if k != "OUT"}
    done = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_check.sh"), "--device", "cpu", "--quick",
                           "--out", str(out), "--budget-s", "1000000"], capture_output=True, text=True, env=env,
                          timeout=3600)  # only a guard against a hang
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    return out, done.stdout, json.loads((out / "gpu_check.json").read_text())


def test_quick_run_measures_every_section(quick):
    out, stdout, result = quick
    rows = result["rows"]
    assert f"table: {out}/gpu_check.md" in stdout
    assert {r["section"] for r in rows} == set(SECTIONS)
    assert all(r["status"] == "ok" for r in rows if r["section"] != "torchrun"), \
        [r for r in rows if r["status"] != "ok"]
    for r in rows:
        if r["section"] in ("bench", "tokenize", "train"):
            assert r["images_per_s"] > 0 and r["ms_per_image"] * r["images_per_s"] == pytest.approx(1e3), r
    # bench: both models, both precisions, every operation, with memory and host syncs
    bench = [r for r in rows if r["section"] == "bench"]
    for model in ("default (64 px)", "tiny (64 px, random weights)"):
        for p in ("fp32", "bf16"):
            mine = [r["what"] for r in bench if r["model"] == model and r["precision"] == p and r["batch"] == 2]
            assert len(mine) == 5 and all(any(w.startswith(op) for w in mine) for op in OPERATIONS), mine
    assert all(r["peak_mb"] > 0 and r["host_syncs"] >= 0 for r in bench)
    assert all(r["syncs_per_iteration"] is not None for r in bench if not r["what"].startswith("decode"))
    # the same images on the CPU in fp32, twice: equal to the last id
    agreement = [r for r in rows if r["section"] == "agreement" and r["precision"] == "fp32"]
    assert len(agreement) == 4 and all(r["agreement"] == 1.0 for r in agreement)
    assert [r["precision"] for r in rows if r["section"] == "tokenize"] == ["fp32", "bf16"]
    assert "2 micro-steps" in next(r["what"] for r in rows if r["section"] == "train")
    assert all(r["status"].startswith("skipped: needs 2 GPUs") for r in rows if r["section"] == "torchrun")


def test_quick_run_writes_one_markdown_table(quick):
    out, _, result = quick
    table = [line for line in (out / "gpu_check.md").read_text().splitlines() if line.startswith("|")]
    assert table[0] == ("| section | model | what | precision | batch | images/s | ms/image | peak MiB | "
                        "host syncs/iter | agreement | status |")
    assert len(table) == 2 + len(result["rows"])
    assert sum("| 100.0% | ok |" in line for line in table) >= 4
    assert (out / "gpu_check.log").read_text().count("\n") > len(result["rows"])
    assert result["environment"]["total_s"] > 0 and result["plan"]["train_steps"] == 3


def test_a_failing_section_is_a_row_and_the_budget_skips_the_rest(gpu_check, tmp_path):
    plan = gpu_check.make_plan(gpu_check.parse_args(["--device", "cpu", "--quick"]))
    report = gpu_check.Report(plan, tmp_path)
    report.run("bench", {"model": "m"}, lambda: 1 / 0)
    report.run("train", {}, lambda: [{"what": "w", "images_per_s": 2.0, "ms_per_image": 500.0}])
    plan.budget_s = 0
    report.run("tokenize", {"precision": "bf16"}, lambda: pytest.fail("ran past the budget"))
    statuses = [r["status"] for r in report.rows]
    assert statuses[0] == "failed: ZeroDivisionError: division by zero" and statuses[1] == "ok"
    assert statuses[2].startswith("skipped: would end past the time budget")
    saved = json.loads((tmp_path / "gpu_check.json").read_text())["rows"]
    assert [r["section"] for r in saved] == ["bench", "train", "tokenize"]  # saved after each section
    assert "ZeroDivisionError" in (tmp_path / "gpu_check.log").read_text()


def test_tokenize_precision_falls_back_to_dtype(gpu_check, monkeypatch):
    monkeypatch.setattr(gpu_check, "tokenize_help", lambda: "usage: alit tokenize [--dtype {fp32,bf16,fp16}]")
    assert gpu_check.precision_flag("bf16") == ["--dtype", "bf16"] and gpu_check.precision_flag("tf32") is None
    monkeypatch.setattr(gpu_check, "tokenize_help", lambda: "usage: alit tokenize [--precision P]")
    assert gpu_check.precision_flag("tf32") == ["--precision", "tf32"]


def test_the_plans(gpu_check):
    full = gpu_check.make_plan(gpu_check.parse_args(["--device", "cuda"]))
    assert full.models == ["default", "small"] and full.batches == [32, 64]
    assert full.precisions == ["fp32", "tf32", "bf16"] and full.train_steps == 50 and full.threads is None
    assert full.train_batch // full.train_micro > 1  # gradient accumulation
    quick = gpu_check.make_plan(gpu_check.parse_args(["--device", "cpu", "--quick", "--precisions", "fp32"]))
    assert quick.precisions == ["fp32"] and quick.threads == 1 and quick.models == ["default", "tiny"]


@pytest.mark.slow
def test_compile_section_compares_eager_and_compiled(tmp_path):
    """`--sections compile` (not in --quick: compiling takes a minute here): three rows, eager against
    torch.compile, each with its speed-up, compile time and agreement."""
    env = {k: v for k, v in os.environ.items() if k != "OUT"}
    done = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_check.sh"), "--device", "cpu", "--quick",
                           "--sections", "compile", "--out", str(tmp_path), "--budget-s", "1000000"],
                          capture_output=True, text=True, env=env, timeout=3600)  # only a guard against a hang
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    rows = json.loads((tmp_path / "gpu_check.json").read_text())["rows"]
    assert [r["what"].split(",")[0] for r in rows] == ["encode 16 tokens", "encode 128 tokens", "decode 128 tokens"]
    assert all(r["status"] == "ok" and r["images_per_s"] > 0 and "x eager" in r["what"] for r in rows), rows
