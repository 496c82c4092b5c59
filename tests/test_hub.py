"""The Hugging Face Hub: save_pretrained -> from_pretrained round trips, the model card, a repository
read from the hub's own cache with HF_HUB_OFFLINE, and push_to_hub through huggingface_hub's API.

Nothing here reaches the real Hub: from_pretrained of a repository id is tested on a hub cache laid
out as huggingface_hub lays it out (HF_HUB_CACHE, refs/main -> snapshots/<commit>/), with
HF_HUB_OFFLINE=1; push_to_hub is checked against a stand-in for huggingface_hub.HfApi that records
the calls (it cannot be tested against the real Hub here).
"""
from __future__ import annotations

import json
import os
import shutil

import pytest
import torch

import alit
from alit.tokenizer import AdaptiveTokenizer

from conftest import run_alit

pytest.importorskip("huggingface_hub")


@pytest.fixture
def tok():
    torch.manual_seed(0)
    return alit.build("tiny")


def assert_equal_models(a, b):
    assert a.config == b.config and type(b) is AdaptiveTokenizer
    sa, sb = a.state_dict(), b.state_dict()
    assert set(sa) == set(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    ea, eb = a.encode(x, num_tokens=32), b.encode(x, num_tokens=32)
    assert torch.equal(ea.ids, eb.ids) and torch.equal(a.decode(ea), b.decode(eb))
    assert a.fingerprint() == b.fingerprint()


def test_save_pretrained_round_trip_and_model_card(tok, tmp_path):
    folder = tok.save_pretrained(tmp_path / "my-model", figures={"l1": {8: 0.14, 64: 0.12}},
                                 recipe="stage: distill\nsteps: 10\n")
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    umask = os.umask(0o022)
    os.umask(umask)
    # shareable as any new file is (safetensors alone writes the weights owner-only, 0o600)
    assert {p.name: p.stat().st_mode & 0o777 for p in folder.iterdir()} == dict.fromkeys(
        ["README.md", "config.json", "model.safetensors"], 0o666 & ~umask)
    assert_equal_models(tok, AdaptiveTokenizer.from_pretrained(folder))
    assert_equal_models(tok, alit.load(folder))
    card = (folder / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: alit\n")
    assert "# my-model" in card and "8 to 64 1D tokens (8 rollout iterations of 8)" in card
    assert "a VQGAN (256 codes of 32 dims)" in card and "codebook of 1024 entries" in card
    assert json.dumps(tok.config.to_dict(), indent=1) in card  # its config
    assert "```yaml\nstage: distill\nsteps: 10\n```" in card  # the recipe
    assert "| metric | 8 | 64 |" in card and "| l1 | 0.14 | 0.12 |" in card  # the figures
    assert 'AdaptiveTokenizer.from_pretrained("my-model")' in card
    assert "](http" not in card  # no link to a package page: alit has none to link to


def test_the_card_of_a_trained_or_loaded_model(tok, tmp_path):
    # a run folder keeps the recipe it ran; the card of a model loaded from it shows it
    run = tmp_path / "run"
    tok.save_pretrained(run)
    (run / "recipe.yaml").write_text("stage: finetune\nlr: 0.0001\n")
    loaded = alit.load(run)
    loaded.save_pretrained(tmp_path / "out")
    card = (tmp_path / "out" / "README.md").read_text()
    assert "stage: finetune" in card and "No measured figures were recorded" in card
    # the bundled model's card: what it is, its origin, figures from an `alit demo` summary
    summary = tmp_path / "summary.json"
    summary.write_text(json.dumps({"mean_l1": {"8": 0.1425, "64": 0.1422}, "mean_psnr": {"8": 14.75, "64": 14.82}}))
    alit.load("default").save_pretrained(tmp_path / "bundled", figures=summary)
    card = (tmp_path / "bundled" / "README.md").read_text()
    assert "origin: alit train" in card and "| mean PSNR (dB) | 14.75 | 14.82 |" in card
    with pytest.raises(alit.AlitError, match="figures: expected"):
        tok.save_pretrained(tmp_path / "x", figures={"l1": 3})


def _hub_cache(root, repo: str, folder, commit: str = "0123456789abcdef0123456789abcdef01234567"):
    """A repository in huggingface_hub's cache layout, as a download would have left it."""
    repo_dir = root / f"models--{repo.replace('/', '--')}"
    snap = repo_dir / "snapshots" / commit
    snap.mkdir(parents=True)
    for p in folder.iterdir():
        shutil.copy(p, snap / p.name)
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text(commit)
    return snap


def test_from_pretrained_reads_the_hub_cache_offline(tok, tmp_path):
    tok.save_pretrained(tmp_path / "model")
    _hub_cache(tmp_path / "hub", "someone/alit-tiny", tmp_path / "model")
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1"}
    code = ("import alit, torch; from alit.tokenizer import AdaptiveTokenizer; "
            "a = AdaptiveTokenizer.from_pretrained('someone/alit-tiny'); b = alit.load('hf:someone/alit-tiny'); "
            "c = alit.load('hf:someone/alit-tiny@main'); "
            "print(a.fingerprint(), b.fingerprint(), c.fingerprint())")
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [tok.fingerprint()] * 3
    # a repository that is not in the cache: one line, exit 2
    r = run_alit("reconstruct", tmp_path / "nothing.png", "--out", tmp_path / "o", "--checkpoint",
                 "hf:someone/not-cached", env=env)
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert "hf:someone/not-cached: not in the Hugging Face cache" in r.stderr and "HF_HUB_OFFLINE is set" in r.stderr


def test_push_to_hub_uses_huggingface_hubs_api(tok, tmp_path, monkeypatch):
    import huggingface_hub

    calls = []

    class FakeApi:  # records what a real HfApi would be asked to do
        def __init__(self, token=None):
            calls.append(("init", token))

        def create_repo(self, repo_id, private=None, exist_ok=False):
            calls.append(("create_repo", repo_id, private, exist_ok))

        def upload_folder(self, repo_id, folder_path, revision=None, commit_message=None):
            files = sorted(os.listdir(folder_path))
            card = open(os.path.join(folder_path, "README.md")).read()
            calls.append(("upload_folder", repo_id, files, revision, commit_message, "# me/alit-tiny" in card))
            return huggingface_hub.CommitInfo(commit_url="https://huggingface.co/me/alit-tiny/commit/abc",
                                              commit_message=commit_message, commit_description="",
                                              oid="abc")

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    url = tok.push_to_hub("me/alit-tiny", private=True, token="hf_x")
    assert url == "https://huggingface.co/me/alit-tiny/commit/abc"
    assert calls == [("init", "hf_x"), ("create_repo", "me/alit-tiny", True, True),
                     ("upload_folder", "me/alit-tiny", ["README.md", "config.json", "model.safetensors"], None,
                      "Upload alit model", True)]

    class Failing(FakeApi):
        def create_repo(self, *a, **k):
            raise RuntimeError("401 Unauthorized:\n invalid token")

    monkeypatch.setattr(huggingface_hub, "HfApi", Failing)
    with pytest.raises(alit.AlitError, match="push to hf:me/alit-tiny failed: 401 Unauthorized: invalid token$"):
        tok.push_to_hub("me/alit-tiny")
