"""Every reference case of the paper's code in the repository (tests/reference/) is reproduced within
the README's tolerances; the paper-side .pt form of a case is read too."""
import shutil

import pytest
import torch

from safetensors.torch import load_file

import alit
from alit.model.halting import Halting
from alit.reference_tensors import rollout_tensors
from alit.verify import TOLERANCES, verify_case, summarize

from conftest import REFERENCE, run_alit

CASES = sorted(p.name for p in REFERENCE.iterdir() if (p / "state_dict.safetensors").is_file())


def test_the_cases_are_in_the_repository():
    """The fidelity tests must not skip on a user's clone: the cases live inside the repository."""
    repo = REFERENCE.parents[1]
    assert REFERENCE.is_relative_to(repo) and (repo / "pyproject.toml").is_file()
    assert (REFERENCE / "official_checkpoint_keys" / "param_counts.json").is_file()
    assert (REFERENCE / "README.md").is_file() and (REFERENCE / "NOTES.md").is_file()


def test_there_are_reference_cases():
    assert {"vqgan_quantized_tiny", "vae_continuous_tiny"} <= set(CASES)


@pytest.mark.parametrize("case", CASES)
def test_reference_case_within_tolerance(case):
    checks = verify_case(REFERENCE / case)
    failing = [c.line() for c in checks if not c.ok]
    assert failing == []
    keys = {c.key for c in checks}
    # every stored tensor is recomputed: the integer outputs exactly
    assert any(k.endswith("reconstructed_imgs") for k in keys)
    assert "total_loss" in keys
    worst = summarize(checks)
    assert worst["integer"] == (0.0, 0.0)
    assert worst["tokens"][0] <= TOLERANCES["tokens"][0] * 2  # atol + rtol * |ref|, |ref| ~ 1


def test_intermediate_tensors_come_through_hooks_that_are_removed_after():
    tok = alit.build("tiny", image_size=16, num_iters=3)
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    ours = rollout_tensors(tok, x, Halting("threshold", 0.0))  # every token halts
    assert not any(m._forward_hooks for m in tok.modules())
    with torch.no_grad():
        roll = tok.rollout(x, Halting("threshold", 0.0))
    N, T = tok.config.num_image_tokens, tok.config.num_iters
    for t in range(T):
        assert torch.equal(ours[f"iter{t}/decoded_code"], roll.codes[t])
        L, W = tok.config.tokens_per_iter * (t + 1), tok.config.encoder_width
        assert ours[f"iter{t}/encoder_in"].shape == ours[f"iter{t}/encoder_out"].shape == (2, 1 + N + L, W)
        assert ours[f"iter{t}/latent_factorized"].shape == (2, L, tok.config.latent_dim)
    # the paper's code also halts after the last iteration, which our rollout skips
    halted = ours[f"iter{T - 1}/halting_x_out"][:, 1:1 + N]
    assert torch.equal(halted, (tok.encoder.mask_token + tok.encoder.pos[1:1 + N]).expand(2, -1, -1))


def test_cli_passes_every_case_and_fails_a_tampered_one(tmp_path):
    ok = run_alit("verify-reference", *(REFERENCE / c for c in CASES))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "largest error [tokens]" in ok.stdout

    case = tmp_path / "tampered"
    shutil.copytree(REFERENCE / "vqgan_quantized_tiny", case)
    out = load_file(case / "outputs.safetensors")
    out["iter3/decoded_code"] = out["iter3/decoded_code"] + 1e-3  # a plausible small mistake
    out["iter2/quantizer_indices"][0, 0] += 1
    out["iter9/something_new"] = torch.zeros(2)
    (case / "outputs.safetensors").unlink()
    torch.save(out, case / "outputs.pt")  # the paper-side form of the same file is read as well
    bad = run_alit("verify-reference", case)
    assert bad.returncode == 1
    fails = [line for line in bad.stdout.splitlines() if line.startswith("FAIL")]
    assert len(fails) == 3, bad.stdout
    assert any("iter3/decoded_code" in f for f in fails)
    assert any("iter2/quantizer_indices" in f for f in fails)
    assert any("iter9/something_new" in f and "cannot compute" in f for f in fails)


def test_cli_rejects_a_folder_that_is_not_a_case(tmp_path):
    r = run_alit("verify-reference", tmp_path)
    assert r.returncode == 2
    assert "not a reference case" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_cli_names_a_corrupt_case_file_in_one_line(tmp_path):
    case = tmp_path / "corrupt"
    shutil.copytree(REFERENCE / "vqgan_quantized_tiny", case)
    data = (case / "inputs.safetensors").read_bytes()
    (case / "inputs.safetensors").chmod(0o644)
    (case / "inputs.safetensors").write_bytes(data[:100])
    r = run_alit("verify-reference", case)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "inputs.safetensors" in r.stderr
