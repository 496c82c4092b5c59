"""Compute follows the tokens an image needs (issue 7), on tiny random-weight models: no pixels
unless a criterion needs them, pixel-free criteria, compaction, bfloat16, and `alit bench`.
Calls are counted with forward hooks on the real modules."""
from __future__ import annotations

import copy
import json
import os

import pytest
import torch

import alit
import alit.bench
from alit.bench import OPERATIONS, bench, format_iterations, format_table, profile_iterations, time_operation
from alit.criteria import CriterionInput, first_accepted, parse_criterion
from alit.errors import AlitError
from alit.measure import HostSyncs
from alit.model.layers import Transformer

from conftest import ForwardCalls, run_alit


class ByTag:
    """A pixel-free criterion: image i (tagged by its first pixel) is good enough after need[i]
    iterations. It also reads the decoder's prediction, as a real one would."""

    needs_pixels = False

    def __init__(self, need_by_value: dict[float, int], read_pixels: bool = False):
        self.need_by_value, self.read_pixels = need_by_value, read_pixels
        self.lengths = []

    def __call__(self, inp: CriterionInput) -> torch.Tensor:
        assert inp.codes.shape[0] == inp.images.shape[0] == inp.latents.shape[0]
        assert inp.gt_prob.shape == inp.target_ids.shape and inp.code_error.shape == inp.target_ids.shape
        if self.read_pixels:
            assert inp.reconstructions.shape == inp.images.shape
        self.lengths.append(inp.num_tokens)
        need = torch.tensor([self.need_by_value[round(v, 3)] for v in inp.images[:, 0, 0, 0].tolist()])
        return need * 8 <= inp.num_tokens


def tagged(values, seed=0):
    x = torch.rand(len(values), 3, 64, 64, generator=torch.Generator().manual_seed(seed))
    x[:, 0, 0, 0] = torch.tensor(values)
    return x


@pytest.mark.parametrize("halting", ["off", "threshold"])
def test_fixed_length_encode_never_runs_the_base_decoder(tok, images, halting):
    with ForwardCalls(tok.base.decoder) as pixels, ForwardCalls(tok.decoder) as latent_decoder:
        enc = tok.encode(images, num_tokens=torch.tensor([8, 24, 64, 16]), halting=halting)
    assert pixels.batches == []
    assert enc.lengths.tolist() == [8, 24, 64, 16]
    if halting == "off":  # tokens alone need no latent decoder either
        assert latent_decoder.batches == []
    else:  # halting needs the prediction, except after the last iteration
        assert len(latent_decoder.batches) == enc.iterations - 1


def test_pixel_free_criteria_never_run_the_base_decoder(tok, images):
    with torch.no_grad():
        roll = tok.rollout(images)
    probs = [roll.logits[i].softmax(-1).gather(-1, roll.targets.ids[..., None]).mean().item() for i in range(8)]
    for crit in (alit.ConfidenceAbove(sorted(probs)[3]), alit.CodeErrorBelow(1e-6)):
        with ForwardCalls(tok.base.decoder) as pixels:
            enc = tok.encode(images, criterion=crit)
        assert pixels.batches == [], crit
        # the same choice as the rule applied to a full rollout
        chosen = first_accepted(crit, images, roll)
        assert enc.lengths.tolist() == [tok.config.lengths[i] for i in chosen.tolist()], crit


def test_pixel_free_criterion_gets_the_step_and_pixels_only_on_demand(tok):
    x = tagged([0.2, 0.4, 0.6])
    crit = ByTag({0.2: 3, 0.4: 1, 0.6: 2})
    with ForwardCalls(tok.base.decoder) as pixels, ForwardCalls(tok.encoder.blocks) as passes:
        enc = tok.encode(x, criterion=crit)
    assert enc.lengths.tolist() == [24, 8, 16] and pixels.batches == []
    assert passes.batches == [3, 2, 1] and crit.lengths == [8, 16, 24]
    lazy = ByTag({0.2: 3, 0.4: 1, 0.6: 2}, read_pixels=True)
    with ForwardCalls(tok.base.decoder) as pixels:
        again = tok.encode(x, criterion=lazy)
    assert pixels.batches == [3, 2, 1] and torch.equal(again.ids, enc.ids)


def test_confidence_needs_a_vqgan_base_and_criteria_parse(images):
    torch.manual_seed(0)
    vae = alit.build("tiny-vae")
    with pytest.raises(ValueError, match="VQGAN"):
        vae.encode(images, criterion=alit.ConfidenceAbove(0.5))
    assert vae.encode(images, criterion=alit.CodeErrorBelow(1e3)).lengths.tolist() == [8] * 4
    assert repr(parse_criterion("conf:0.6")) == "ConfidenceAbove(0.6)"
    assert repr(parse_criterion("code:0.05")) == "CodeErrorBelow(0.05)"
    for bad in ("conf:1.5", "conf:0", "code:-1"):
        with pytest.raises(AlitError, match="bad criterion"):
            parse_criterion(bad)


def test_first_accepted_needs_the_rollout_for_a_pixel_free_criterion(tok, images):
    with torch.no_grad():
        roll = tok.rollout(images, pixels=False)
    with pytest.raises(AlitError, match="pass the Rollout"):
        first_accepted(alit.ConfidenceAbove(0.5), images, [images] * 8)
    with pytest.raises(AlitError, match="pixels=True"):
        first_accepted(alit.L1Below(0.07), images, roll)
    assert first_accepted(alit.CodeErrorBelow(1e3), images, roll).tolist() == [0] * 4


def test_compaction_runs_the_sum_of_iterations_and_changes_nothing(tok):
    values, need = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8], [1, 1, 2, 2, 4, 4, 8, 8]
    x = tagged(values)
    results = {}
    for compact in (True, False):
        with ForwardCalls(tok.encoder.blocks) as passes:
            results[compact] = tok.encode(x, criterion=ByTag(dict(zip(values, need))), _compact=compact)
        results[compact, "passes"] = passes.batches
    assert results[True, "passes"] == [8, 6, 4, 4, 2, 2, 2, 2]  # 30 image-iterations
    assert results[False, "passes"] == [8] * 8                  # 64
    a, b = results[True], results[False]
    assert a.lengths.tolist() == [8 * n for n in need] and torch.equal(a.lengths, b.lengths)
    assert torch.equal(a.ids, b.ids) and torch.equal(a.latents, b.latents)


def test_last_block_rows_match_the_full_computation():
    torch.manual_seed(0)
    blocks = Transformer(32, 2, 4).eval()
    x = torch.randn(2, 11, 32)
    with torch.no_grad():
        full, part = blocks(x), blocks(x, rows=slice(1, 7))
    torch.testing.assert_close(part, full[:, 1:7], atol=1e-6, rtol=0)


def test_bfloat16_encode_is_close_to_float32(tok, images, tmp_path):
    images, budgets = images[:2], torch.tensor([8, 24])
    ref = tok.encode(images, num_tokens=budgets)
    with torch.no_grad():
        ref_pixels = tok.rollout(images, num_iters=3).reconstructions
        low_pixels = tok.rollout(images, num_iters=3, dtype=torch.bfloat16).reconstructions
    errors = [(a.float() - b).abs().mean().item() for a, b in zip(low_pixels, ref_pixels)]
    scale = ref_pixels[-1].abs().mean().item()
    assert max(errors) < 0.05 * scale, (errors, scale)  # bf16 has ~3 significant digits
    auto = tok.encode(images, num_tokens=budgets, dtype=torch.bfloat16)
    assert auto.latents.dtype == torch.float32 and torch.equal(auto.lengths, ref.lengths)
    assert (auto.ids == ref.ids).float().mean() > 0.8  # near ties may flip a few ids
    # weights cast to bf16: `alit.load(path, dtype=)` / `tok.to(torch.bfloat16)`
    from alit.weights import save
    save(tok.state_dict(), tok.config, tmp_path / "ckpt")
    low = alit.load(tmp_path / "ckpt", dtype="bf16")
    assert low.dtype == torch.bfloat16
    enc = low.encode(images, num_tokens=budgets)
    assert enc.latents.dtype == torch.bfloat16 and torch.equal(enc.lengths, ref.lengths)
    out = low.decode(enc)
    assert out.dtype == torch.bfloat16 and out.shape == images.shape
    assert (out.float() - tok.decode(ref)).abs().mean() < 0.02
    with pytest.raises(ValueError, match="dtype must be"):
        alit.load(tmp_path / "ckpt", dtype=torch.int8)


def test_base_convolutions_run_channels_last_on_the_cpu():
    """bf16 convs on a CPU are fast only channels-last, weights too (a norm may return NCHW); the
    pixel decoder is channels-last in fp32 too, while the fp32 base encoder keeps the weights as
    built, which the reference tolerances are measured with."""
    torch.manual_seed(0)
    tok = alit.build("tiny")
    x = torch.rand(1, 3, 64, 64)

    def layouts(module):
        return {w.is_contiguous(memory_format=torch.channels_last) for w in
                (m.weight for m in module.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size != (1, 1))}

    with torch.no_grad():
        low = tok.rollout(x, num_iters=1, dtype=torch.bfloat16).reconstructions[0]
        assert layouts(tok.base.encoder) == {True} and layouts(tok.base.decoder) == {True}
        assert low.dtype == torch.bfloat16 and low.is_contiguous()
        ref = tok.rollout(x, num_iters=1).reconstructions[0]
        assert layouts(tok.base.encoder) == {False} and layouts(tok.base.decoder) == {True}
        assert ref.is_contiguous()
        cast = copy.deepcopy(tok).to(torch.bfloat16)
        cast.rollout(x, num_iters=1)
        assert layouts(cast.base.encoder) == {True} and layouts(cast.base.decoder) == {True}


@pytest.fixture
def one_thread():
    """One thread: on a shared CPU two threads of tiny ops spend 10-40x longer waiting for each other."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


ONE_THREAD = dict(os.environ, OMP_NUM_THREADS="1")


def test_bench_times_every_operation_in_every_precision(tok, one_thread):
    result = bench(tok, batch=2, precision=["fp32", "bf16"], repeats=2, name="tiny")
    rows = result["rows"]
    assert [(r["precision"], r["operation"]) for r in rows] == [(p, op) for p in ("fp32", "bf16") for op in OPERATIONS]
    assert result["batch"] == 2 and result["precisions"] == ["fp32", "bf16"] and result["model"] == "tiny"
    by_op = {r["operation"]: r for r in rows if r["precision"] == "fp32"}
    lengths = tok.config.lengths
    assert by_op["encode_shortest"]["mean_tokens"] == lengths[0] and by_op["encode_shortest"]["iterations"] == 1
    assert by_op["encode_longest"]["mean_tokens"] == lengths[-1] and by_op["encode_longest"]["iterations"] == 8
    assert lengths[0] <= by_op["encode_rule"]["mean_tokens"] <= lengths[-1]
    assert by_op["decode"]["iterations"] is None and by_op["rollout"]["iterations"] == 8
    for r in rows:
        assert len(r["runs_s"]) == 2 and r["seconds"] == min(r["runs_s"]) > 0
        assert r["images_per_s"] * r["ms_per_image"] == pytest.approx(1e3)
        assert r["peak_memory_mb"] > 0 and isinstance(r["host_syncs"], int)
        if r["iterations"]:
            assert r["host_syncs_per_iteration"] == r["host_syncs"] / r["iterations"]
    table = format_table(result)
    assert table.count("\n| fp32 |") == table.count("\n| bf16 |") == 5
    assert "| precision | operation | tokens/image | images/s | ms/image | peak MiB |" in table


def test_timed_regions_synchronise_only_at_their_ends(monkeypatch):
    """The warm-up, then sync / call / sync per run: nothing inside a timed call waits for the device."""
    events = []
    monkeypatch.setattr(alit.bench, "synchronizer", lambda device: lambda: events.append("sync"))
    row = time_operation(lambda: (events.append("call"), None), torch.device("cpu"), repeats=3)
    assert events == ["call", "sync"] + ["sync", "call", "sync"] * 3
    assert len(row["runs_s"]) == 3 and row["iterations"] is None and row["mean_tokens"] is None


def test_host_syncs_counts_what_would_wait_for_a_gpu():
    x = torch.arange(6.0)
    with HostSyncs(torch.device("cpu")) as free:
        y = (x * 2 + 1).softmax(0)
        torch.argsort(y)
    with HostSyncs(torch.device("cpu")) as syncs:
        x.sum().item()        # a scalar read by Python
        int(x.max())
        x.tolist()            # a whole tensor read by Python
        x[x > 2]              # a boolean mask: the result's shape depends on the data
        torch.nonzero(x)
    assert free.count == 0 and syncs.count == 5
    assert x.tolist() == [0, 1, 2, 3, 4, 5] and "tolist" not in vars(torch.Tensor)  # put back


def test_per_iteration_profile_reports_every_iteration(tok, one_thread):
    result = profile_iterations(tok, batch=2, repeats=1)
    assert [r["tokens"] for r in result["iterations"]] == tok.config.lengths
    last = result["iterations"][-1]
    assert 0 < result["setup_s"] < last["tokens_at_s"] <= last["pixels_at_s"] <= result["rollout_s"]
    assert result["peak_memory"]["peak_mb"] > 0 and result["batch"] == 2
    assert "latent dec" in format_iterations(result)


def test_bench_cli_writes_one_table_and_json(tmp_path):
    out = tmp_path / "bench.json"
    r = run_alit("bench", "--preset", "tiny", "--batch-size", "2", "--repeats", "1", "--precision", "fp32", "bf16",
                 "--out", out, env=ONE_THREAD)
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("| fp32 |") == r.stdout.count("| bf16 |") == 5 and "host syncs" in r.stdout
    result = json.loads(out.read_text())
    for key in ("model", "config", "device", "batch", "repeats", "precisions", "rows", "notes"):
        assert key in result, key
    assert result["model"] == "preset tiny (random weights)" and result["precisions"] == ["fp32", "bf16"]
    assert {"precision", "operation", "what", "seconds", "images_per_s", "ms_per_image", "peak_memory_mb",
            "host_syncs", "host_syncs_per_iteration", "mean_tokens", "iterations"} <= set(result["rows"][0])


def test_bench_cli_arguments(tmp_path, capsys, one_thread):
    from alit.cli import main

    with pytest.raises(SystemExit):
        main(["bench", "--help"])
    help_text = capsys.readouterr().out
    assert "--precision P" in help_text and "--dtype" not in help_text  # the older spelling stays quiet
    assert main(["bench", "--preset", "tiny", "--checkpoint", str(tmp_path)]) == 2
    assert "exactly one of" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["bench", "--preset", "tiny", "--precision", "tf33"])
    assert "invalid choice: 'tf33'" in capsys.readouterr().err
    out = tmp_path / "b.json"
    assert main(["bench", "--preset", "tiny", "--batch-size", "1", "--repeats", "1", "--dtype", "bf16",
                 "--out", str(out)]) == 0
    assert json.loads(out.read_text())["precisions"] == ["bf16"]  # --dtype: autocast now, as --precision
