"""`alit train generator` on the shared engine, run as a user runs it: on the tokens that a real
`alit tokenize --views 2` wrote of 12 demo photos in two class folders (a tiny random-weight
tokenizer): the run folder loads as a generator (the newest checkpoint's EMA weights), classes come
from the first folder, 2 torchrun processes reach the weights of 1 with the same global batch, and a
run killed with SIGKILL after a checkpoint resumes to the weights of an uninterrupted one."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import alit
from alit.cli import main
from alit.errors import AlitError
from alit.data import BatchPlan
from alit.generator import GeneratorData
from alit.generator.loss import sequence_loss
from alit.train import checkpoint
from alit.train.generator import GeneratorStage
from conftest import class_folders, kill_at_first_checkpoint
from test_train_dist import ENV, weights_at  # the launcher and checkpoints of the other stages' runs
from test_train_dist import command as train_command

# constant lr: a run stopped early at step k has exactly the first k steps of a longer run
COMMON = ["batch_size=8", "warmup=0", "lr=3.0e-3", "min_lr=3.0e-3", "checkpoint_every=2", "keep_checkpoints=10",
          "classes=true", "class_dropout=0.3"]  # no dropout: its masks depend on how a batch is split
STEPS = 6


@pytest.fixture(scope="module")
def tokens(model_dir, tmp_path_factory):
    """24 sequences (12 photos x 2 views, alternately in class folders a/ and b/) of lengths 8 and 64."""
    root = class_folders(tmp_path_factory.mktemp("photos"))
    out = tmp_path_factory.mktemp("tokens") / "t"
    assert main(["tokenize", str(root), "--out", str(out), "--checkpoint", str(model_dir), "--no-progress",
                 "--workers", "0", "--views", "2", "--criterion", "l1:0.25"]) == 0
    return out


def command(data, out, max_steps, nproc=1, resume=False, settings=COMMON):
    return train_command(data, out, max_steps, nproc, resume, settings, stage="generator")


def launch(*args, **kwargs):
    # the timeout is a hang guard only: the verdict does not depend on speed
    done = subprocess.run(command(*args, **kwargs), capture_output=True, text=True, env=ENV, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def losses(run: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (run / "log.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def reference(tokens, tmp_path_factory):
    """One process, STEPS steps, a checkpoint every 2."""
    run = tmp_path_factory.mktemp("runs") / "one"
    launch(tokens, run, STEPS)
    return run


def test_the_run_folder_is_a_generator(tokens, reference):
    data = GeneratorData(tokens, classes=True)
    assert len(data) == 24 and [k[-2:] for k in data.keys] == ["#0", "#1"] * 12
    gen = alit.load_generator(reference)  # the newest checkpoint's EMA weights
    assert gen.config.classes == ("a", "b") and gen.config.tokenizer == data.fingerprint
    ema = load_file(str(checkpoint.step_dir(reference, STEPS) / "model.safetensors"))
    assert all(torch.equal(v, ema[k]) for k, v in gen.state_dict().items())
    assert json.loads((reference / "config.json").read_text())["data"] == str(tokens)
    log = losses(reference)
    assert len(log) == STEPS and log[-1] < log[0]
    assert "generator: preset 'tiny'" in (reference / "train.log").read_text()
    enc = gen.sample(3, class_="b", seed=0)
    assert set(enc.lengths.tolist()) <= set(data.lengths) and enc.ids.max() < data.vocab_size
    # step 1's logged loss: the mean NLL per predicted token of its global batch under the initial weights
    stage = initial_stage(tokens)
    item, skipped = next(iter(stage.training_data(BatchPlan(8, 8)).loader))
    assert skipped == [] and item.batch.ids.shape[0] == 8 and (item.batch.classes == 2).any()  # some dropped
    with torch.no_grad():
        assert sequence_loss(stage.model, item.batch)[0].item() == pytest.approx(log[0], rel=1e-6)


def initial_stage(tokens) -> GeneratorStage:
    recipe = alit.train.load_recipe("generator", "tiny", data=tokens, overrides=COMMON)
    torch.manual_seed(recipe.seed)  # as the loop does
    return GeneratorStage(recipe, torch.device("cpu"), lambda line: None)


def test_each_process_reads_its_share_of_the_global_batch(tokens):
    """Rank r of 2 reads half r of each step's global batch, with the same classes dropped."""
    stage = initial_stage(tokens)
    whole = iter(stage.training_data(BatchPlan(8, 8, first_step=3)).loader)
    halves = [iter(stage.training_data(BatchPlan(8, 2, rank=r, world=2, first_step=3)).loader) for r in (0, 1)]
    for _ in range(3):  # steps 3-5, each 2 micro-steps x 2 processes x 2 sequences
        want = next(whole)[0]
        got = [next(halves[r])[0] for m in (0, 1) for r in (0, 1)]
        assert all((g.step_ids, g.step_sequences) == (want.step_ids, want.step_sequences) for g in got)
        assert want.step_ids == int((want.batch.ids >= 0).sum())
        for field in ("length_index", "classes"):
            assert torch.equal(torch.cat([getattr(g.batch, field) for g in got]), getattr(want.batch, field))
        ids = [torch.nn.functional.pad(g.batch.ids, (0, 64 - g.batch.ids.shape[1]), value=-1) for g in got]
        assert torch.equal(torch.cat(ids), torch.nn.functional.pad(want.batch.ids, (0, 64 - want.batch.ids.shape[1]),
                                                                   value=-1))


def test_two_processes_match_one(tokens, reference, tmp_path):
    """The global batch's NLL per token, classes dropped by position: the same updates up to float
    rounding: measured on a 2-core CPU, torch 2.14.1, raw and EMA weights within 1.5e-6 at step 2,
    3.3e-6 at step 4, 4.4e-6 at step 6 (Adam's normalised steps carry the rounding of the sums)."""
    run = tmp_path / "two"
    launch(tokens, run, STEPS, nproc=2)
    assert "batch 8 = 2 process(es) x 1 micro-step(s) x 4 images" in (run / "train.log").read_text()
    assert losses(run) == pytest.approx(losses(reference), abs=1e-5)
    for step in (2, 4, 6):
        for a, b in zip(weights_at(run, step), weights_at(reference, step)):
            worst = max((a[k] - b[k]).abs().max().item() for k in a)
            assert worst < 2e-5, f"step {step}: largest difference {worst:.3g}"


def test_sigkill_then_resume_equals_uninterrupted(tokens, reference, tmp_path):
    run = tmp_path / "killed"
    killed_at = kill_at_first_checkpoint(command(tokens, run, STEPS), run, ENV)
    assert killed_at == 2 < STEPS  # the first checkpoint (checkpoint_every=2), where the child waited
    launch(tokens, run, STEPS, resume=True)
    assert f"resuming at step {killed_at + 1}" in (run / "train.log").read_text()
    for a, b in zip(weights_at(run, STEPS), weights_at(reference, STEPS)):
        assert all(torch.equal(a[k], b[k]) for k in b)
    assert losses(run) == losses(reference)


def test_recipe_refusals(tokens, tmp_path):
    with pytest.raises(AlitError, match="model must be one of tiny, small, base"):
        alit.train.load_recipe("generator", "tiny", overrides=["model=huge"])
    with pytest.raises(AlitError, match=r"class_dropout must be in \[0, 1\)"):
        alit.train.load_recipe("generator", "tiny", overrides=["class_dropout=1.5"])
    assert alit.train.load_recipe("generator", "default").max_time == 1800
