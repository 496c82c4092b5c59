"""Recipes (YAML -> dataclasses, by name, --set with type checks), durations, the lr schedule and
AdamW's parameter groups."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from alit.errors import AlitError
from alit.train import recipe as R
from alit.train import recipe_loader as L
from alit.train.stages import STAGES
from alit.train.optim import lr_at, param_groups


def test_every_shipped_recipe_loads():
    names = L.shipped()
    assert {"base-tiny", "distill-tiny", "finetune-tiny"} <= set(names)
    paper = [n for n in names if n.endswith(("-in100", "-in1k"))]
    assert {"distill-small-vqgan-quantized-in100", "distill-small-vqgan-continuous-in100",
            "distill-small-vae-quantized-in100", "distill-small-vqgan-quantized-in1k",
            "finetune-small-vqgan-quantized-in100"} <= set(paper)
    for name in names:
        stage = name.split("-")[0]
        r = L.load(name, stage)
        assert r.stage == stage and isinstance(r, STAGES[stage].recipe)


def test_one_registry_names_the_stages():
    from alit.train import STAGE_NAMES, stage_spec
    from alit.train.stage import Stage

    assert STAGE_NAMES == tuple(STAGES) == ("base", "distill", "finetune", "generator")
    for name, spec in STAGES.items():
        assert spec.name == name and issubclass(spec.stage, Stage) and isinstance(L.load("tiny", name), spec.recipe)
    with pytest.raises(AlitError, match="unknown stage 'nope'; choose from base, distill, finetune, generator"):
        stage_spec("nope")
    with pytest.raises(AlitError, match="a 'distill' recipe cannot become a 'finetune' one"):
        L.load("tiny", "distill", ["stage=finetune"])
    # the pixel-loss section: the same fields, flat in both recipes that decode to pixels
    section = {f.name for f in dataclasses.fields(R.PixelLosses)}
    assert section == {"perceptual", "perceptual_weight", "perceptual_path", "pixel_weight", "ssim_weight", "gan"}
    for name in ("base", "finetune"):
        r = L.load("tiny", name, ["perceptual=hed", "gan.channels=8"])
        assert isinstance(r, R.PixelLosses) and (r.perceptual, r.gan.channels) == ("hed", 8)
    assert not isinstance(L.load("tiny", "distill"), R.PixelLosses)


def test_paper_hyperparameters():
    d = L.load("small-vqgan-quantized-in100", "distill")
    assert d.batch_size == 256 and d.peak_lr == pytest.approx(1.5e-4)
    assert (d.max_steps, d.warmup) == ("200ep", "20ep")
    assert d.betas == (0.9, 0.95) and d.weight_decay == 0.05 and d.grad_clip == 3.0
    assert d.iteration_weights == [2.5, 2.0, 1.5, 1.25, 1.0, 1.0, 1.0, 1.0]
    assert d.crop_scale == (0.8, 1.0) and d.crop_ratio == (3 / 4, 4 / 3) and d.hflip
    f = L.load("small-vqgan-quantized-in100", "finetune")
    assert f.batch_size == 96 and f.peak_lr == pytest.approx(1e-4 * 96 / 256)
    assert f.perceptual == "lpips" and f.discriminator == "per_iteration"
    assert [w for _, w in f.gan.schedule] == [0.2, 0.8] and f.gan.channels == 64 and f.gan.layers == 3
    assert f.gan.max_adaptive_weight == 1e4


def test_tiny_recipes_run_offline():
    for stage in ("base", "finetune"):
        assert L.load("tiny", stage).perceptual in ("none", "hed")


def test_find_by_name_and_path(tmp_path):
    assert L.find("tiny", "distill").name == "distill-tiny.yaml"
    assert L.find("distill-tiny", "distill").name == "distill-tiny.yaml"
    f = tmp_path / "mine.yaml"
    f.write_text("stage: distill\nbatch_size: 4\n")
    assert L.load(str(f), "distill").batch_size == 4
    with pytest.raises(AlitError, match="no distill recipe named 'nope'.*tiny"):
        L.find("nope", "distill")
    with pytest.raises(AlitError, match="not a 'base' one"):
        L.load(str(f), "base")


def test_unknown_keys_are_errors(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("stage: distill\nbatch_sise: 4\n")
    with pytest.raises(AlitError, match="unknown key.*batch_sise"):
        L.load(str(f), "distill")
    f.write_text("stage: finetune\ngan:\n  chanels: 4\n")
    with pytest.raises(AlitError, match="chanels"):
        L.load(str(f), "finetune")
    # a stage-specific key in another stage's recipe
    f.write_text("stage: distill\nperceptual: none\n")
    with pytest.raises(AlitError, match="perceptual"):
        L.load(str(f), "distill")


def test_overrides_are_type_checked():
    r = L.load("tiny", "finetune", ["lr=1e-3", "batch_size=16", "betas=[0.8, 0.99]", "perceptual=hed",
                                     "gan.schedule=[[10, 0.2], [5ep, 0.8]]", "model_overrides.encoder_depth=1",
                                     "grad_clip=null", "data=some/dir"])
    assert r.lr == 1e-3 and isinstance(r.lr, float) and r.batch_size == 16 and r.betas == (0.8, 0.99)
    assert r.gan.schedule == [(10, 0.2), ("5ep", 0.8)] and r.model_overrides == {"encoder_depth": 1}
    nested = L.load("tiny", "base", ["model_overrides.base.channels=64", "model_overrides.image_size=32"])
    assert nested.model_overrides == {"base": {"channels": 64}, "image_size": 32}
    assert r.grad_clip is None and r.data == "some/dir"
    bad = {"lr=abc": "lr must be a number", "batch_size=1.5": "batch_size must be an integer",
           "hflip=3": "hflip must be true or false", "betas=[0.9]": "betas must be", "nope=1": "unknown key",
           "gan.nope=1": "unknown key 'nope'", "lr.x=1": "has no sub-keys", "perceptual=vgg": "perceptual must be one of",
           "max_steps=10epochs": "max_steps must be a step count", "batch_size=0": "batch_size must be >= 1",
           "precision=fp8": "precision must be one of", "noequals": "key=value",
           "iteration_cycle=[]": "iteration_cycle must be a non-empty list", "iteration_cycle=[1, -2]":
           "iteration_cycle must be a non-empty list", "ssim_weight=-0.5": "ssim_weight must be 0 or more",
           "crop_ratio=[2, 1]": r"crop_ratio must satisfy 0 < lo <= hi \(width / height\), got \[2.0, 1.0\]",
           "crop_scale=[0, 1]": "crop_scale must satisfy"}
    for item, message in bad.items():
        with pytest.raises(AlitError, match=message):
            L.load("tiny", "finetune", [item])


def test_durations():
    assert R.parse_duration(120, None) == 120
    assert R.parse_duration("2.5ep", 10.0) == 25
    with pytest.raises(AlitError, match="dataset size is unknown"):
        R.parse_duration("3ep", None, "max_steps")
    with pytest.raises(AlitError, match="step count"):
        R.parse_duration("3 epochs", 10.0)


def test_recipe_round_trip():
    r = L.load("tiny", "finetune")
    again = L.from_dict(r.to_dict())
    assert again == r
    assert "stage: finetune" in R.dump(r)


def test_lr_schedule():
    peak, warm, total = 1.0, 10, 110
    assert lr_at(1, peak, warm, total) == pytest.approx(0.1)
    assert lr_at(10, peak, warm, total) == pytest.approx(1.0)
    assert lr_at(11, peak, warm, total) == pytest.approx(1.0)
    assert lr_at(61, peak, warm, total, 0.0) == pytest.approx(0.5)
    assert 0 < lr_at(110, peak, warm, total) < 1e-3
    lrs = [lr_at(s, peak, warm, total) for s in range(11, 111)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))
    assert lr_at(5, 2.0, 0, 10, 2.0) == 2.0  # min_lr == lr: constant


def test_no_weight_decay_on_biases_norms_embeddings():
    import alit

    model = alit.build("tiny")
    groups = param_groups(model, 0.05)
    decayed = {id(p) for p in groups[0]["params"]}
    names = {n for n, p in model.named_parameters() if id(p) in decayed}
    assert groups[0]["weight_decay"] == 0.05 and groups[1]["weight_decay"] == 0.0
    assert "encoder.blocks.0.attn.qkv.weight" in names and "decoder.head.0.weight" in names
    assert "base.encoder.conv_in.weight" in names
    for n in names:
        assert n.endswith("weight") and "ln" not in n and "norm" not in n
    for n in ("encoder.pos", "encoder.cls", "encoder.step_emb", "encoder.mask_token", "decoder.latent_pos",
              "quantizer.codebook.weight", "base.quantize.embedding.weight", "encoder.ln_pre.weight",
              "encoder.blocks.0.attn.qkv.bias"):
        assert n not in names
    total = sum(len(g["params"]) for g in groups)
    assert total == len([p for p in model.parameters() if p.requires_grad])
    model.base.requires_grad_(False)
    assert not any(p is q for g in param_groups(model, 0.05) for p in g["params"]
                   for q in model.base.parameters())
    assert torch.is_tensor(groups[0]["params"][0])


def test_lr_multipliers_scale_the_lr_of_the_parameters_they_name():
    import alit
    from alit.train.optim import adamw, set_lr

    model = alit.build("tiny", error_feedback=True)
    opt = adamw(model, 1e-3, (0.9, 0.95), 0.05, torch.device("cpu"), {"encoder.feedback": 10})
    scaled = {id(p) for g in opt.param_groups if g["lr_scale"] == 10 for p in g["params"]}
    assert scaled == {id(model.encoder.feedback.weight), id(model.encoder.feedback.bias)}
    set_lr(opt, 2e-4)
    lrs = {(g["lr_scale"], g["weight_decay"]): g["lr"] for g in opt.param_groups}
    assert lrs == {(1.0, 0.05): 2e-4, (1.0, 0.0): 2e-4, (10, 0.05): pytest.approx(2e-3), (10, 0.0): pytest.approx(2e-3)}
    # without multipliers: the two groups as before, every parameter once
    assert [g["lr_scale"] for g in param_groups(model, 0.05)] == [1.0, 1.0]
    with pytest.raises(AlitError, match="recipe: lr_multipliers: encoder.fedback names no trainable parameter"):
        param_groups(model, 0.05, {"encoder.fedback": 10})
    with pytest.raises(AlitError, match="lr_multipliers.encoder.feedback must be a positive number"):
        R.FinetuneRecipe(lr_multipliers={"encoder.feedback": 0})


def test_precision_resolves_per_device_and_warns_where_bf16_is_emulated():
    from alit.train.loop import precision_note, resolve_precision

    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu) is None  # fp32 on a CPU unless asked
    assert resolve_precision("bf16", cpu) is torch.bfloat16
    with pytest.raises(AlitError, match="fp16 needs a GPU"):
        resolve_precision("fp16", cpu)
    note = precision_note(torch.bfloat16, cpu, native=False)
    assert "no native bf16" in note and "precision=fp32" in note
    assert precision_note(torch.bfloat16, cpu, native=True) is None
    assert precision_note(None, cpu, native=False) is None  # fp32: nothing to say
    assert precision_note(torch.bfloat16, torch.device("cuda"), native=False) is None


def test_a_retired_key_of_an_older_run_is_ignored(tmp_path):
    """recipe.yaml of runs made before qkv_init_std was removed holds it at its default, None."""
    old = tmp_path / "recipe.yaml"
    old.write_text(R.dump(L.load("tiny", "distill")) + "qkv_init_std: null\n")
    assert L.load(old, "distill") == L.load("tiny", "distill")
    old.write_text(R.dump(L.load("tiny", "distill")) + "qkv_init_std: 0.1\n")
    with pytest.raises(AlitError, match="qkv_init_std is no longer a recipe option"):
        L.load(old, "distill")
