"""Runs as a user starts them, in subprocesses: 2 DDP processes (torchrun, gloo on CPU) reach the
weights of 1 process with the same global batch, latent_norm's running averages too; a run resumes
with another process count; a run killed with SIGKILL after a checkpoint, or stopped by Ctrl-C or
SIGTERM (which checkpoint the step reached), resumes to the weights of an uninterrupted run."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from alit.train import checkpoint
from conftest import held, kill_at_first_checkpoint

MODEL = ("model_overrides={image_size: 16, num_iters: 4, encoder_width: 64, decoder_width: 64, encoder_heads: 2, "
         "decoder_heads: 2, encoder_depth: 1, decoder_depth: 1, base: {latent_channels: 16}}")
# constant lr: a run stopped early at step k has exactly the first k steps of a longer run
COMMON = [MODEL, "batch_size=4", "workers=0", "warmup=0", "lr=1.0e-3", "min_lr=1.0e-3", "checkpoint_every=2",
          "keep_checkpoints=10", "image_every=0", "base=random", "halting=threshold",
          "restart_dead_codes=4"]  # restarts gather candidates from every process: they must agree too
STEPS = 8
TORCHRUN = Path(sys.executable).with_name("torchrun")


def command(data, out, max_steps, nproc=1, resume=False, settings=COMMON, stage="distill"):
    """`alit train STAGE` on nproc processes (torchrun for more than one), or its resume."""
    args = ["train", stage, "--out", str(out), "--max-steps", str(max_steps), "--no-progress"]
    args += ["--resume"] if resume else ["--config", "tiny", "--data", str(data), "--set", *settings]
    if nproc == 1:
        return [sys.executable, "-m", "alit", *args]
    launcher = [str(TORCHRUN)] if TORCHRUN.exists() else [sys.executable, "-m", "torch.distributed.run"]
    return [*launcher, "--standalone", f"--nproc_per_node={nproc}", "-m", "alit", *args]


ENV = dict(os.environ, OMP_NUM_THREADS="1")  # the same threads in every run: comparable float sums


def launch(*args, **kwargs):
    # the timeout only guards against a hang: a loaded machine runs these tiny runs far within it
    done = subprocess.run(command(*args, **kwargs), capture_output=True, text=True, env=ENV, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def weights_at(run: Path, step: int):
    ckpt = checkpoint.step_dir(run, step)
    return checkpoint.load_state(ckpt)["model"], load_file(str(ckpt / "model.safetensors"))


def steps_logged(run: Path) -> list[int]:
    return [json.loads(line)["step"] for line in (run / "log.jsonl").read_text().splitlines()]


def assert_close(a: dict, b: dict, atol: float, rtol: float = 1e-4, code_atol: float | None = None):
    """code_atol: the tolerance for the latent codebook, whose restarted rows are copies of encoder
    outputs (activations, so float differences of the runs arrive amplified); a code restarted onto
    another input would differ by ~0.1-1."""
    assert a.keys() == b.keys()
    worst = max((a[k] - b[k]).abs().max().item() for k in a)
    for k in a:
        tol = code_atol if code_atol is not None and k.startswith("quantizer.") else atol
        assert torch.allclose(a[k], b[k], atol=tol, rtol=rtol), f"{k}: largest difference {worst:.3g}"


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(1)
    for i in range(6):
        Image.fromarray(rng.integers(0, 255, (24 + 4 * i, 30, 3), dtype=np.uint8)).save(root / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def reference(photos, tmp_path_factory):
    """One process, STEPS steps, a checkpoint every 2."""
    run = tmp_path_factory.mktemp("runs") / "one"
    launch(photos, run, STEPS)
    return run


def test_two_processes_match_one(photos, reference, tmp_path):
    run = tmp_path / "two"
    done = launch(photos, run, 4, nproc=2)
    assert steps_logged(run) == [1, 2, 3, 4]  # rank 0 alone writes
    assert "batch 4 = 2 process(es) x 1 micro-step(s) x 2 images" in (run / "train.log").read_text()
    # step 4 restarts the unused latent codes onto candidates gathered from both processes, in the
    # global batch's order (measured on a 2-core CPU, torch 2.14.1: codebook within 1.8e-7, the rest
    # within 5.7e-7 up to step 6; a code restarted onto another input would differ by ~0.1-1)
    assert json.loads((run / "log.jsonl").read_text().splitlines()[3]).get("restarted_codes", 0) > 0
    for step in (2, 4):
        raw2, ema2 = weights_at(run, step)
        raw1, ema1 = weights_at(reference, step)
        assert_close(raw2, raw1, atol=2e-5, code_atol=1e-3)
        assert_close(ema2, ema1, atol=2e-5, code_atol=1e-3)
    # ...and a run goes on with another number of processes: 2 -> 1 process, steps 5-6. The next
    # restart (step 8) is left out: after one, codes restarted onto near-equal inputs are near-equal,
    # which of them an input picks can differ by rounding, and so can which codes count as unused
    launch(photos, run, 6, resume=True)
    assert steps_logged(run) == [1, 2, 3, 4, 5, 6]
    text = (run / "train.log").read_text()
    assert "started with 2 process(es), continues with 1" in text
    raw, ema = weights_at(run, 6)
    raw_ref, ema_ref = weights_at(reference, 6)
    assert_close(raw, raw_ref, atol=5e-5, code_atol=1e-3)
    assert_close(ema, ema_ref, atol=5e-5, code_atol=1e-3)
    assert done.returncode == 0


# the biases that shift every image's latents alike: the standardiser removes such a shift, so their
# gradient is zero but for rounding, and Adam's normalised steps follow that noise
SHIFTS = ("encoder.ln_post.bias", "encoder.to_latent.bias")


def test_two_processes_match_one_with_latent_norm(photos, tmp_path):
    """latent_norm standardises with the statistics of the global batch on every process (summed
    over the processes, gradient included), so 2 processes x 2 images train as 1 x 4 and update the
    same running averages. Continuous latents: a nearest code would turn the rounding noise that the
    standardiser amplifies (where the batch variance is below eps) into other ids. Measured on a
    2-core CPU, torch 2.14.1, steps 1-2: weights within 2.0e-5 (SHIFTS 1.1e-4), running mean within
    6e-8 after step 1 (then it follows SHIFTS: 5.3e-5), running variance within 0.11% of itself;
    with each process's own statistics: weights 4e-3 apart, running mean 5.6e-4 and 0.015, variance 116%."""
    model = MODEL.replace("decoder_depth: 1,", "decoder_depth: 1, latent_norm: true, quantize: false,")
    settings = [model, *COMMON[1:], "checkpoint_every=1"]
    for nproc in (1, 2):
        launch(photos, tmp_path / f"{nproc}", 2, nproc=nproc, settings=settings)
    for step, mean_atol in ((1, 1e-6), (2, 5e-4)):
        raw2, ema2 = weights_at(tmp_path / "2", step)
        raw1, ema1 = weights_at(tmp_path / "1", step)
        assert torch.equal(ema2["latent_norm.batches"], torch.full((4,), step))  # a batch per step and iteration
        assert torch.allclose(ema2["latent_norm.running_mean"], ema1["latent_norm.running_mean"], rtol=0, atol=mean_atol)
        assert torch.allclose(ema2["latent_norm.running_var"], ema1["latent_norm.running_var"], rtol=1e-2, atol=0)
        rest = [k for k in raw1 if k not in SHIFTS and not k.startswith("latent_norm.")]
        for a, b in ((raw2, raw1), (ema2, ema1)):
            assert_close(part(a, rest), part(b, rest), atol=5e-5)
            assert_close(part(a, SHIFTS), part(b, SHIFTS), atol=5e-4)


def part(weights: dict, keys) -> dict:
    return {k: weights[k] for k in keys}


# the child waits after logging step 3 until a stop signal has come
AT_STEP_3 = (
    "import sys, time\nimport alit.train.interrupt as interrupt, alit.train.monitor as monitor\n"
    "receive, step, asked = interrupt.StopRequests._receive, monitor.Monitor.step, []\n"
    "def received(self, *args):\n    asked.append(1)\n    receive(self, *args)\n"
    "def step_then_wait(self, record):\n    step(self, record)\n"
    "    while record['step'] == 3 and not asked:\n        time.sleep(0.01)\n"
    "interrupt.StopRequests._receive, monitor.Monitor.step = received, step_then_wait\n")


def test_sigkill_then_resume_equals_uninterrupted(photos, reference, tmp_path):
    run = tmp_path / "killed"
    killed_at = kill_at_first_checkpoint(command(photos, run, STEPS), run, ENV)
    assert killed_at == 2 < STEPS  # the first checkpoint (checkpoint_every=2), where the child waited
    launch(photos, run, STEPS, resume=True)
    assert steps_logged(run) == list(range(1, STEPS + 1))  # each step logged once, after the resume too
    raw, ema = weights_at(run, STEPS)
    raw_ref, ema_ref = weights_at(reference, STEPS)
    for k in raw_ref:
        assert torch.equal(raw[k], raw_ref[k]), k
    for k in ema_ref:
        assert torch.equal(ema[k], ema_ref[k]), k
    ref_log = [json.loads(x)["loss"] for x in (reference / "log.jsonl").read_text().splitlines()]
    log = [json.loads(x)["loss"] for x in (run / "log.jsonl").read_text().splitlines()]
    assert log == ref_log


def logged_so_far(run: Path) -> list[int]:
    """The steps of the complete lines of a log.jsonl being written."""
    path = run / "log.jsonl"
    lines = path.read_text().split("\n")[:-1] if path.is_file() else []
    return [json.loads(line)["step"] for line in lines]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_checkpoints_the_step_reached_then_resume_equals_uninterrupted(photos, reference, tmp_path, sig):
    run = tmp_path / "stopped"
    # 1000 steps at a constant lr: its first steps are the reference's
    proc = subprocess.Popen(held(command(photos, run, 1000), AT_STEP_3), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=ENV)
    deadline = time.time() + 900  # only a guard against a hang: the verdict does not depend on speed
    try:
        while len(logged_so_far(run)) < 3:  # poll until step 3 is logged (the child then waits for the signal)
            assert proc.poll() is None, f"the run ended before step 3: {proc.stderr.read()}"
            assert time.time() < deadline, "step 3 not reached within 900 s"
            time.sleep(0.01)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=900)  # a guard against a hang
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    reached = logged_so_far(run)[-1]
    assert reached == 4 < STEPS  # the step under way when the signal came (the child waited after step 3)
    assert checkpoint.checkpoints(run)[-1][0] == reached  # the step reached, checkpointed
    said = f"{sig.name} at step {reached}: checkpoint step-{reached:08d} written; " \
           f"`alit train distill --out {run} --resume` continues from step {reached + 1}"
    assert said in err
    launch(photos, run, STEPS, resume=True)
    assert steps_logged(run) == list(range(1, STEPS + 1))  # each step once: it went on at reached + 1
    assert f"resuming at step {reached + 1}" in (run / "train.log").read_text()
    raw, ema = weights_at(run, STEPS)
    raw_ref, ema_ref = weights_at(reference, STEPS)
    assert all(torch.equal(raw[k], raw_ref[k]) for k in raw_ref)
    assert all(torch.equal(ema[k], ema_ref[k]) for k in ema_ref)
