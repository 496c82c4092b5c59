"""The three stages end to end on a tiny model (16 px, 4 iterations, width 64, depth 1) in-process: run
folders, log.jsonl, checkpoints, alit.load(RUN), resume equivalence, non-finite steps, unreadable
files, the perceptual-loss error, and the `alit train` command as a user runs it."""
from __future__ import annotations

import importlib.util
import json
import math
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

import alit
import alit.train as T
from alit.errors import AlitError
from alit.train import checkpoint
from alit.train.distill import DistillStage
from alit.train import loop
from alit.train.loop import fit

MODEL = ("model_overrides={image_size: 16, num_iters: 4, encoder_width: 64, decoder_width: 64, encoder_heads: 2, "
         "decoder_heads: 2, encoder_depth: 1, decoder_depth: 1, base: {latent_channels: 16}}")
SMALL = [MODEL,
         "batch_size=4", "workers=0", "warmup=0", "image_every=2", "checkpoint_every=2"]
MODEL_Q = "model_overrides={quantize: true}"  # with --init, only `quantize` of model_overrides applies
CONSTANT_LR = ["lr=1.0e-3", "min_lr=1.0e-3"]  # max_steps then changes nothing but the length


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for i in range(6):
        x = np.linspace(0, 1, 48)
        img = np.stack([np.outer(x, x) * rng.uniform(0.3, 1), np.outer(x[::-1], x) * rng.uniform(0.3, 1),
                        rng.uniform(0, 1, (48, 48)) * 0.3], -1)
        Image.fromarray((img * 255).astype(np.uint8)).save(root / f"{i}.png")
    return root


def records(run):
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


def test_distill_run_folder(photos, tmp_path):
    run = T.run("distill", "tiny", data=photos, out=tmp_path / "run", max_steps=3, progress=False,
                overrides=SMALL + ["base=random"])
    recs = records(run)
    assert [r["step"] for r in recs] == [1, 2, 3]
    assert all(isinstance(r["loss"], float) and math.isfinite(r["loss"]) for r in recs)
    assert {"nll/0", "code/3", "quantizer/3", "lr", "images_per_s", "grad_norm/model"} <= set(recs[0])
    assert [s for s, _ in checkpoint.checkpoints(run)] == [2, 3]
    # on the preview images, at image_every and at the end: how much own latents help the decoder
    assert [r["step"] for r in recs if "latent_reliance/last" in r] == [2, 3]
    gaps = [r[k] for r in recs for k in ("latent_reliance/first", "latent_reliance/last") if k in r]
    assert all(abs(g) < 1e-3 for g in gaps)  # a random model ignores them, and the log says so
    assert "step 2: the latent decoder ignores the latents" in (run / "train.log").read_text()
    tok = alit.load(run)  # the newest checkpoint's EMA weights, straight from the run folder
    ema = load_file(str(checkpoint.latest(run) / "model.safetensors"))
    assert all(torch.equal(v, ema[k]) for k, v in tok.state_dict().items())
    state = checkpoint.load_state(checkpoint.latest(run))
    raw = state["model"]
    assert not all(torch.equal(raw[k], ema[k]) for k in raw)  # EMA differs from the raw weights
    assert all(torch.equal(raw[k], ema[k]) for k in raw if k.startswith("base."))  # frozen base
    assert tok.config.image_size == 16 and tok.config.num_iters == 4
    text = (run / "train.log").read_text()
    assert "smoke test" in text and "checkpoint step-00000003" in text
    if importlib.util.find_spec("tensorboard") is not None:
        assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    assert T.recipe_loader.load(run / "recipe.yaml", "distill").max_steps == 3
    with pytest.raises(AlitError, match="already holds a run"):
        T.run("distill", "tiny", data=photos, out=run, max_steps=3, progress=False, overrides=SMALL + ["base=random"])
    with pytest.raises(AlitError, match="nothing to do"):
        T.run("distill", None, out=run, resume=True, progress=False)


def test_quantizer_warmup_restarts_every_code_then_distill_continues_with_init(photos, tmp_path):
    run = T.run("distill", "tiny", data=photos, out=tmp_path / "warm", max_steps=4, progress=False,
                overrides=SMALL + CONSTANT_LR + ["base=random", "restart_dead_codes=2", "quantizer_warmup=2"])
    recs = records(run)
    # bypassed: no quantiser loss; then every code restarts onto that step's distinct latents
    assert all(r[f"quantizer/{t}"] == 0 for r in recs[:2] for t in range(4))
    assert all(r["quantizer/0"] > 0 for r in recs[2:])
    latents = 4 * (8 + 16 + 24 + 32)  # batch 4 x the latents of 4 iterations of 8 tokens
    assert recs[1]["restarted_codes"] == latents  # all 1024 codes unused, 320 distinct candidates
    assert "latent quantiser bypassed for the first 2 steps" in (run / "train.log").read_text()
    with pytest.raises(AlitError, match="restart_dead_codes dividing it"):
        T.run("distill", "tiny", data=photos, out=tmp_path / "bad", max_steps=1, progress=False,
              overrides=SMALL + ["base=random", "restart_dead_codes=3", "quantizer_warmup=2"])

    more = T.run("distill", "tiny", data=photos, out=tmp_path / "more", max_steps=1, progress=False,
                 overrides=SMALL + ["warmup=1"], init=run)
    assert f"initial weights: {run}" in (more / "train.log").read_text()
    start = alit.load(run)
    state = checkpoint.load_state(checkpoint.latest(more))["model"]
    assert all(torch.equal(state[k], v) for k, v in start.state_dict().items() if k.startswith("base."))
    assert alit.load(more).config == start.config
    with pytest.raises(AlitError, match="not both"):
        T.run("distill", "tiny", data=photos, out=tmp_path / "both", max_steps=1, progress=False,
              overrides=SMALL + ["base=random"], init=run)
    # a continuous model gains a quantiser: everything else is carried over
    cont = T.run("distill", "tiny", data=photos, out=tmp_path / "cont", max_steps=1, progress=False,
                 overrides=[SMALL[0].replace("model_overrides={", "model_overrides={quantize: false, ")] + SMALL[1:]
                 + ["base=random"])
    quant = T.run("distill", "tiny", data=photos, out=tmp_path / "quant", max_steps=2, progress=False,
                  overrides=[MODEL_Q] + SMALL[1:] + ["restart_dead_codes=1", "quantizer_warmup=1"], init=cont)
    assert "with a new latent quantiser" in (quant / "train.log").read_text()
    before, after = alit.load(cont), checkpoint.load_state(checkpoint.step_dir(quant, 2))["model"]
    assert not before.config.quantize and alit.load(quant).config.quantize
    assert torch.equal(after["base.quantize.embedding.weight"], before.state_dict()["base.quantize.embedding.weight"])


def test_base_distill_finetune_chain(photos, tmp_path):
    base = T.run("base", "tiny", data=photos, out=tmp_path / "base", max_steps=2, progress=False,
                 overrides=SMALL + ["gan.schedule=[[0, 0.5]]", "gan.channels=8"])
    recs = records(base)
    assert {"codebook_loss", "commitment_loss", "gan/d_loss", "gan/adaptive_weight", "l1"} <= set(recs[-1])
    base_model = alit.weights.load_module(base, expect="base")
    dist_run = T.run("distill", "tiny", data=photos, out=tmp_path / "distill", max_steps=2, progress=False,
                     base=base, overrides=SMALL)
    tok = alit.load(dist_run)
    assert all(torch.equal(v, tok.base.state_dict()[k]) for k, v in base_model.state_dict().items())
    ft = T.run("finetune", "tiny", data=photos, out=tmp_path / "finetune", max_steps=3, progress=False,
               init=dist_run, overrides=SMALL + ["gan.schedule=[[1, 0.2]]", "gan.channels=8"])
    recs = records(ft)
    assert [r["iteration"] for r in recs] == [0, 1, 2]  # one rollout iteration per step, cycling
    assert "gan/g_loss" not in recs[0] and "gan/d_loss" in recs[1]  # GAN after step 1
    extra = checkpoint.load_state(checkpoint.latest(ft))["extra"]["adversarial"]
    assert any(k.startswith("discriminators.3.") for k in extra)  # one per iteration
    tuned = alit.load(ft)
    assert not torch.equal(tuned.base.decoder.conv_out.weight, tok.base.decoder.conv_out.weight)
    shared = T.run("finetune", "tiny", data=photos, out=tmp_path / "shared", max_steps=2, progress=False,
                   init=dist_run, overrides=SMALL + ["discriminator=shared", "gan.schedule=[[0, 0.2]]",
                                                     "iteration_cycle=[3, 1]", "truncate_rollout=true"])
    assert [r["iteration"] for r in records(shared)] == [3, 1]  # the recipe's cycle, in its order
    assert "truncated rollout: iteration t trains through its own pass only" in (shared / "train.log").read_text()
    extra = checkpoint.load_state(checkpoint.latest(shared))["extra"]["adversarial"]
    assert not any(k.startswith("discriminators.1.") for k in extra)
    with pytest.raises(AlitError, match=r"names iteration 9, but the model has \d+"):
        T.run("finetune", "tiny", data=photos, out=tmp_path / "bad", max_steps=1, progress=False,
              init=dist_run, overrides=SMALL + ["iteration_cycle=[0, 9]"])


def test_vae_base_and_distill(photos, tmp_path):
    base = T.run("base", "tiny-vae", data=photos, out=tmp_path / "vae", max_steps=1, progress=False,
                 overrides=SMALL)
    assert "kl_loss" in records(base)[0]
    with pytest.raises(AlitError, match="vae base.*--set model="):
        T.run("distill", "tiny", data=photos, out=tmp_path / "wrong", max_steps=1, progress=False, base=base,
              overrides=SMALL)
    run = T.run("distill", "tiny", data=photos, out=tmp_path / "d", max_steps=1, progress=False, base=base,
                overrides=SMALL + ["model=tiny-vae-continuous"])
    tok = alit.load(run)
    assert tok.config.base.kind == "vae" and not tok.config.quantize
    assert "nll/0" not in records(run)[0] and "code/0" in records(run)[0]


def test_resume_equals_uninterrupted(photos, tmp_path):
    common = SMALL + CONSTANT_LR + ["base=random", "halting=threshold"]
    full = T.run("distill", "tiny", data=photos, out=tmp_path / "full", max_steps=4, progress=False,
                 overrides=common)
    part = T.run("distill", "tiny", data=photos, out=tmp_path / "part", max_steps=2, progress=False,
                 overrides=common)
    T.run("distill", None, out=part, max_steps=4, resume=True, progress=False)
    assert [r["step"] for r in records(part)] == [1, 2, 3, 4]
    a, b = (checkpoint.load_state(checkpoint.latest(r)) for r in (full, part))
    assert a["step"] == b["step"] == 4
    for k in a["model"]:
        assert torch.allclose(a["model"][k], b["model"][k], atol=1e-6, rtol=1e-5), k
    ea, eb = (load_file(str(checkpoint.latest(r) / "model.safetensors")) for r in (full, part))
    assert all(torch.allclose(ea[k], eb[k], atol=1e-6, rtol=1e-5) for k in ea)
    assert [r["loss"] for r in records(full)] == pytest.approx([r["loss"] for r in records(part)], rel=1e-5)


# the numbers of short seeded runs, recorded on the training loop before its refactoring into named
# steps (issue #34; bit-identical weights there): each stage's losses per step, then the sum of
# |EMA weights| outside the frozen base. Another CPU or torch may round differently: hence rel 1e-5
GOLDEN = {
    "base": ([0.45281535387039185, 0.501295804977417, 0.2818133234977722], 18515.834461653736),
    "distill": ([41.98373031616211, 41.589454650878906, 41.093711853027344, 40.59754180908203], 4771.1392756171645),
    "finetune": ([0.7734156250953674, 0.7507251501083374, 0.7218886017799377], 4762.149752752517),
}


def test_seeded_runs_keep_their_golden_numbers(photos, tmp_path):
    common = [MODEL, "batch_size=4", "micro_batch_size=2", "workers=0", "warmup=1", "image_every=2",
              "checkpoint_every=2"]
    base = T.run("base", "tiny", data=photos, out=tmp_path / "base", max_steps=3, progress=False,
                 overrides=common + ["gan.schedule=[[1, 0.5]]", "gan.channels=8", "restart_dead_codes=2",
                                     "perceptual=none"])
    distill = T.run("distill", "tiny", data=photos, out=tmp_path / "distill", max_steps=4, progress=False,
                    overrides=common + ["base=random", "halting=paper", "restart_dead_codes=2", "quantizer_warmup=2"])
    finetune = T.run("finetune", "tiny", data=photos, out=tmp_path / "finetune", max_steps=3, progress=False,
                     init=distill, overrides=common + ["gan.schedule=[[1, 0.2]]", "gan.channels=8", "perceptual=none",
                                                       "ssim_weight=0.5", "halting=threshold", "restart_dead_codes=1"])
    for name, run in (("base", base), ("distill", distill), ("finetune", finetune)):
        losses, weights = GOLDEN[name]
        assert [r["loss"] for r in records(run)] == pytest.approx(losses, rel=1e-5), name
        ema = load_file(str(checkpoint.latest(run) / "model.safetensors"))
        total = sum(v.double().abs().sum().item() for k, v in ema.items() if not k.startswith("base."))
        assert total == pytest.approx(weights, rel=1e-5), name


class NaNAt(DistillStage):
    """A distill stage whose loss (or, with grads_only, only its gradients) is NaN at chosen steps."""

    bad: set[int] = set()
    grads_only = False

    def micro_step(self, images, step, micro, backward):
        logs = super().micro_step(images, step, micro, lambda loss: backward(loss * math.nan if step in self.bad else loss))
        if step in self.bad and not self.grads_only:
            logs["loss"] = logs["loss"] * math.nan
        return logs


def test_nonfinite_steps_are_skipped_then_stop(photos, tmp_path):
    recipe = T.load_recipe("distill", "tiny", data=photos, overrides=SMALL + ["base=random", "max_nonfinite=2",
                                                                            "checkpoint_every=1", "keep_checkpoints=5"])
    NaNAt.bad = {2}
    recipe.max_steps = 3
    run = fit(recipe, NaNAt, tmp_path / "nan", torch.device("cpu"), progress=False)
    recs = records(run)
    assert [r["step"] for r in recs] == [1, 2, 3]
    assert recs[1]["nonfinite"] is True and recs[1]["loss"] is None and "nonfinite" not in recs[2]
    s1, s2 = (checkpoint.load_state(checkpoint.step_dir(run, s)) for s in (1, 2))
    assert all(torch.equal(s1["model"][k], s2["model"][k]) for k in s1["model"])  # update skipped
    assert "non-finite loss" in (run / "train.log").read_text()
    NaNAt.grads_only = True  # a finite loss with non-finite gradients is skipped too
    run = fit(recipe, NaNAt, tmp_path / "nan_grads", torch.device("cpu"), progress=False)
    recs = records(run)
    assert recs[1]["nonfinite"] is True and math.isfinite(recs[1]["loss"]) and "grad_norm/model" not in recs[1]
    s1, s2 = (checkpoint.load_state(checkpoint.step_dir(run, s)) for s in (1, 2))
    assert all(torch.equal(s1["model"][k], s2["model"][k]) for k in s1["model"])
    NaNAt.grads_only = False
    NaNAt.bad = {2, 3}
    recipe.max_steps = 5
    with pytest.raises(AlitError, match="non-finite for 2 steps in a row"):
        fit(recipe, NaNAt, tmp_path / "nan2", torch.device("cpu"), progress=False)
    assert [r["step"] for r in records(tmp_path / "nan2")] == [1, 2, 3]


def test_unreadable_files_are_named(photos, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for f in sorted(photos.iterdir())[:3]:
        (data / f.name).write_bytes(f.read_bytes())
    (data / "zz_broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    run = T.run("distill", "tiny", data=data, out=tmp_path / "run", max_steps=2, progress=False,
                overrides=SMALL + ["base=random"])
    skipped = [s for r in records(run) for s in r.get("skipped_files", [])]
    assert len(skipped) == 1 and "zz_broken.jpg" in skipped[0]
    text = (run / "train.log").read_text()
    assert "zz_broken.jpg" in text and "1 unreadable file(s) skipped so far" in text


def test_missing_lpips_weights_stop_the_run(photos, tmp_path):
    with pytest.raises(AlitError, match="perceptual=hed"):
        T.run("finetune", "tiny", data=photos, out=tmp_path / "ft", max_steps=1, progress=False,
              overrides=SMALL + ["init=random", "perceptual=lpips", f"perceptual_path={tmp_path / 'none.pth'}"])
    assert not (tmp_path / "ft" / "checkpoints").exists()


def test_cli(photos, tmp_path):
    out = tmp_path / "cli"
    cmd = [sys.executable, "-m", "alit", "train", "distill", "--config", "tiny", "--data", str(photos),
           "--out", str(out), "--max-steps", "1", "--no-progress", "--set", *SMALL, "base=random"]
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert f"run folder: {out} (its newest model: alit.load('{out}'))" in done.stdout
    assert records(out)[0]["step"] == 1
    bad = subprocess.run(cmd[:-1] + ["batch_size=zero"], capture_output=True, text=True)
    assert bad.returncode == 2 and "batch_size must be an integer" in bad.stderr


def test_steps_in_time_fits_the_schedule_to_the_measured_pace():
    from alit.train.schedule import steps_in_time

    assert steps_in_time(100.0, 10.0, 0, 20, 10_000, 10_000) == 200  # 0.5 s/step: 200 steps in 100 s
    assert steps_in_time(100.0, 10.0, 0, 19, 10_000, 10_000) == 10_000  # before the first fit: unchanged
    assert steps_in_time(100.0, 11.0, 0, 21, 200, 10_000) == 190  # every step after: slower, shorter
    assert steps_in_time(100.0, 10.0, 0, 20, 150, 150) == 150  # never longer than max_steps
    assert steps_in_time(100.0, 10.0, 0, 150, 150, 150) == 150  # ...not even by one step at a time
    assert steps_in_time(100.0, 20.0, 0, 200, 230, 10_000) == 1000  # faster than at first: longer again
    assert steps_in_time(100.0, 99.0, 0, 20, 10_000, 10_000) == 21  # too slow: still one more step
    assert steps_in_time(100.0, 100.0, 0, 7, 10_000, 10_000) == 7  # spent: this step is the last
    assert steps_in_time(100.0, 20.0, 50, 250, 9_000, 9_000) == 50 + 1000  # a resumed run counts its own steps


def test_max_time_stops_with_a_checkpoint_and_a_complete_schedule(photos, tmp_path, monkeypatch):
    # a clock that advances 0.25 s whenever the run reads it (at the monitor's start, before the
    # first step, then once a step): step k is measured at 0.25 (k + 1) s, on any machine at any load
    ticks = iter(range(10**9))
    monkeypatch.setattr(loop, "clock", lambda: 1000.0 + 0.25 * next(ticks))
    run = T.run("distill", "tiny", data=photos, out=tmp_path / "run", max_steps=100_000, progress=False,
                overrides=SMALL + ["base=random", "max_time=10", "checkpoint_every=1000", "image_every=0",
                                   "lr=1.0e-3", "min_lr=1.0e-4"])
    recs = records(run)
    # fitted at step 20 (5.25 s) to the int(10 / 0.2625) = 38 steps that fit in 10 s; at step 38
    # (9.75 s) one more step still fits, and step 39 ends at 10 s: the budget is spent
    assert [r["step"] for r in recs] == list(range(1, 40))
    assert [s for s, _ in checkpoint.checkpoints(run)] == [39]  # the end always writes one
    # the cosine schedule was re-fitted to end at the last step: it ends near min_lr
    assert recs[-1]["lr"] < 2.0e-4 < 9.9e-4 < recs[10]["lr"]
    assert (recs[0]["time"], recs[-1]["time"]) == (0.5, 10.0)  # the budget held, on the run's clock
    assert "step 20: 38 steps fit in max_time 10 s; the lr schedule now ends there" in (run / "train.log").read_text()


@pytest.mark.parametrize("halting", ["off", "threshold"])
def test_truncated_rollout_keeps_values_and_cuts_the_earlier_passes_from_the_gradient(halting):
    from alit.model.alit import ALIT
    from alit.train.finetune import FinetuneForward
    from alit.train.stage_helpers import preset_config

    config = preset_config("tiny", {"image_size": 16, "num_iters": 3, "encoder_width": 64, "decoder_width": 64,
                                    "encoder_heads": 2, "decoder_heads": 2, "base": {"latent_channels": 16}})
    torch.manual_seed(0)
    model = ALIT(config).train()
    images = torch.rand(2, 3, 16, 16)
    grads = {}
    for truncate in (False, True):
        forward = FinetuneForward(model, truncate=truncate)
        model.zero_grad(set_to_none=True)
        pixels, qloss = forward(images, 2, model.resolve_halting(halting, images.device))
        (pixels.mean() + qloss).backward()
        grads[truncate] = (pixels.detach(), {n: p.grad for n, p in model.named_parameters()})
    (full, g_full), (cut, g_cut) = grads[False], grads[True]
    assert torch.allclose(full, cut, atol=1e-6)  # the same forward values
    # the step embedding of iteration 2 trains either way; those of iterations 0 and 1 only through the full graph
    step_full, step_cut = g_full["encoder.step_emb"], g_cut["encoder.step_emb"]
    assert step_full[:2].abs().sum() > 0 and step_cut[2].abs().sum() > 0
    assert step_cut[:2].abs().sum() == 0
    assert g_full["encoder.patch_embed.weight"] is not None and g_cut["encoder.patch_embed.weight"] is None
    assert not torch.allclose(g_full["encoder.blocks.0.attn.qkv.weight"],
                              g_cut["encoder.blocks.0.attn.qkv.weight"])
    # iteration 0 has no earlier pass: truncation changes nothing there
    model.zero_grad(set_to_none=True)
    FinetuneForward(model, truncate=True)(images, 0, model.resolve_halting(halting, images.device))[0].mean().backward()
    assert model.encoder.patch_embed.weight.grad is not None


def test_lr_multipliers_in_a_run_with_error_feedback(photos, tmp_path):
    import alit

    fed = MODEL[:-1] + ", error_feedback: true}"
    overrides = [fed, *SMALL[1:], "init=random", "perceptual=none", "ema=0", "iteration_cycle=[1]"]
    run = T.run("finetune", "tiny", data=photos, out=tmp_path / "ft", max_steps=2, progress=False,
                overrides=overrides + ["lr_multipliers={encoder.feedback: 10}"])
    assert "lr of encoder.feedback.*: 10 x the schedule's (lr_multipliers)" in (run / "train.log").read_text()
    feedback = alit.load(run).encoder.feedback.weight
    assert feedback.abs().max() > 0  # it started at zero; iteration 1's loss trains it
    with pytest.raises(AlitError, match="recipe: lr_multipliers: encoder.fedback names no trainable parameter"):
        T.run("finetune", "tiny", data=photos, out=tmp_path / "bad", max_steps=1, progress=False,
              overrides=overrides + ["lr_multipliers={encoder.fedback: 10}"])


def test_a_first_signal_asks_to_stop_and_a_second_stops_at_once():
    from alit.train.interrupt import StopRequests

    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    now = [100.0]
    with StopRequests(clock=lambda: now[0]) as stop:
        assert stop.requested is None
        signal.raise_signal(signal.SIGTERM)
        assert stop.requested == "SIGTERM"  # noted; the loop checkpoints the step and stops
        now[0] += 0.5
        signal.raise_signal(signal.SIGINT)  # passed on by a launcher at once: the same request
        assert stop.requested == "SIGTERM"
        now[0] += 1.0
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
    assert {sig: signal.getsignal(sig) for sig in before} == before  # the handlers are put back
