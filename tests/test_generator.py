"""The generator (alit/generator/) on the tokens that a real `alit tokenize` run wrote of 12 demo
photos in two class folders, with a tiny random-weight tokenizer saved to a folder: the loss falls,
the KV cache gives the ids of recomputing every prefix, p(L) is learned, sampling cost follows the
length (counted in positions fed, not timed), save/load, a tokenizer mismatch is refused, samples
decode to images, `alit generate` and `alit eval generator` as a user runs them."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

import alit
from alit.cli import main
from alit.errors import AlitError
from alit.generator import GeneratorData, TrainOptions, config_for, load_generator, train_generator
from alit.generator.evaluate import heldout_bits, memorisation
from alit.generator.loss import sequence_loss, sequence_nll
from alit.generator.model import KVCache
from alit.generator.sample import Samples
from alit.generator.train import lr_at

from conftest import class_folders

FAST = TrainOptions(steps=60, batch_size=8, lr=3e-3, min_lr=3e-4, warmup_steps=5, seed=0)


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """One thread: on a busy 2-core machine, two threads per step are slower than one."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tok(model_dir):
    return alit.load(model_dir)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """12 real photos, alternately in the class folders a/ and b/."""
    return class_folders(tmp_path_factory.mktemp("photos"))


def tokenize(photos, model_dir, out, *how) -> Path:
    assert main(["tokenize", str(photos), "--out", str(out), "--checkpoint", str(model_dir), "--no-progress",
                 "--workers", "0", *how]) == 0
    return out


@pytest.fixture(scope="module")
def tokens(photos, model_dir, tmp_path_factory):
    """Lengths chosen per photo by an L1 rule: 8 and 64 tokens with this random tokenizer."""
    return tokenize(photos, model_dir, tmp_path_factory.mktemp("tokens") / "t", "--criterion", "l1:0.25")


@pytest.fixture(scope="module")
def tokens16(photos, model_dir, tmp_path_factory):
    return tokenize(photos, model_dir, tmp_path_factory.mktemp("tokens16") / "t", "--num-tokens", "16")


@pytest.fixture(scope="module")
def data(tokens):
    return GeneratorData(tokens, classes=True)


@pytest.fixture(scope="module")
def trained(data):
    """(generator, the loss of every step): tiny, 60 steps, with classes."""
    losses = []
    gen = train_generator(data, config_for(data, "tiny"), FAST, log=lambda step, logs: losses.append(logs["loss"]))
    return gen, losses


@pytest.fixture(scope="module")
def gen(trained):
    return trained[0]


@pytest.fixture(scope="module")
def gen_dir(gen, data, tmp_path_factory):
    return gen.save(tmp_path_factory.mktemp("gen") / "g", data=str(data.root), source="test")


def test_data_from_tokenize(data, tokens):
    ds = alit.TokenDataset(tokens)
    assert len(data) == 12 and data.classes == ("a", "b") and data.lengths == (8, 16, 24, 32, 40, 48, 56, 64)
    assert sorted(set(data.num_tokens.tolist())) == [8, 64] and data.vocab_size == 1024
    assert data.class_ids.tolist() == [("a", "b").index(k.split("/")[0]) for k in ds.keys]
    batch = data.batch([0, 1, 2, 3])
    for j in range(4):
        L = int(data.num_tokens[j])
        assert batch.ids[j, :L].tolist() == ds[j][1].tolist() and (batch.ids[j, L:] == -1).all()
        assert data.lengths[int(batch.length_index[j])] == L
    assert GeneratorData(tokens).class_ids.tolist() == [0] * 12  # no classes: the null class of none
    with pytest.raises(AlitError, match=r"class\(es\) b that the generator does not know"):
        GeneratorData(tokens, classes=("a",))


def test_loss_falls_and_every_parameter_learns(trained, data):
    gen, losses = trained
    assert len(losses) == FAST.steps
    assert losses[0] == pytest.approx(torch.log(torch.tensor(1024.0)).item(), abs=0.3)  # a uniform guess
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5
    fresh = train_generator(data, config_for(data, "tiny"), TrainOptions(steps=0))
    loss, _ = sequence_loss(fresh.train(), data.batch(range(12)))
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in fresh.parameters())
    with torch.no_grad():
        assert sequence_loss(gen, data.batch(range(12)))[0] < loss - 1.0


def test_kv_cache_gives_the_hidden_states_of_the_whole_sequence(gen, data):
    batch = data.batch([0, 1, 2])
    tokens = gen.sequence(batch.classes, batch.length_index, batch.ids)  # [3, 65]
    with torch.no_grad():
        whole = gen(tokens)
        cache = KVCache(gen.config, 3, "cpu", torch.float32)
        steps = [gen(tokens[:, :2], cache)] + [gen(tokens[:, i:i + 1], cache) for i in range(2, tokens.shape[1])]
    assert cache.pos == tokens.shape[1]
    torch.testing.assert_close(torch.cat(steps, 1), whole, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("how", [dict(), dict(num_tokens=8, class_="b", cfg=2.0, temperature=0.8, top_k=20, top_p=0.9)])
def test_cache_and_no_cache_draw_the_same_ids(gen, how):
    a = gen.generate(6, seed=1, **how)
    b = gen.generate(6, seed=1, use_cache=False, **how)
    assert torch.equal(a.encoding.ids, b.encoding.ids) and torch.equal(a.encoding.lengths, b.encoding.lengths)
    torch.testing.assert_close(a.log_likelihood, b.log_likelihood, atol=1e-4, rtol=1e-6)


def test_a_sample_depends_on_the_seed_and_its_index_only(gen):
    six = gen.generate(6, seed=2, batch_size=6).encoding
    three = gen.generate(3, seed=2, batch_size=2).encoding
    assert torch.equal(six[:3].ids, three.ids)
    assert not torch.equal(gen.generate(6, seed=3).encoding.ids, six.ids)


def test_sampling_cost_follows_the_length(gen):
    """Positions fed to the transformer, per sample: 1 (the length) + L with the cache; the whole
    prefix at every step without it."""
    fed = []
    handle = gen.register_forward_hook(lambda m, args, out: fed.append(args[0].shape[1]))
    try:
        for L in (8, 64):
            for use_cache in (True, False):
                fed.clear()
                gen.generate(4, num_tokens=L, seed=0, batch_size=4, use_cache=use_cache)
                want = 1 + 2 + (L - 1) if use_cache else 1 + sum(range(2, L + 2))
                assert len(fed) == 1 + L and sum(fed) == want
    finally:
        handle.remove()


def test_the_length_prior_is_learned(tokens16):
    data = GeneratorData(tokens16)
    gen = train_generator(data, config_for(data, "tiny"), TrainOptions(steps=60, batch_size=8, lr=3e-3, warmup_steps=5))
    s = gen.generate(32, "auto", seed=0)
    assert s.encoding.lengths.tolist() == [16] * 32
    assert (s.length_log_likelihood > -0.1).all()  # p(L = 16) above 0.9


def test_save_and_load(gen, gen_dir, tok, model_dir):
    again = alit.load_generator(gen_dir)
    assert again.config == gen.config and again.tokenizer_checkpoint == str(model_dir)
    assert all(torch.equal(a, b) for a, b in zip(gen.state_dict().values(), again.state_dict().values()))
    assert torch.equal(again.sample(4, seed=5).ids, gen.sample(4, seed=5).ids)
    assert json.loads((gen_dir / "config.json").read_text())["format"] == "alit-generator"
    load_generator(gen_dir / "config.json", tokenizer=tok)  # its own tokenizer: accepted


def test_a_tokenizer_mismatch_is_refused(gen, gen_dir, tmp_path, model_dir):
    torch.manual_seed(7)
    other = alit.build("tiny")
    with pytest.raises(AlitError, match=f"tokens of tokenizer {gen.config.tokenizer}; the tokenizer given is "
                                        f"{other.fingerprint()}") as e:
        load_generator(gen_dir, tokenizer=other)
    assert "\n" not in str(e.value)
    with pytest.raises(AlitError, match="use the one it was trained on"):
        gen.check_tokenizer(other)
    with pytest.raises(AlitError, match="a tokenizer, not a generator"):
        load_generator(model_dir)


def test_samples_decode_to_images(gen, tok):
    enc = gen.sample(5, seed=4)
    assert enc.model == tok.fingerprint() and enc.codebook_size == 1024
    images = tok.decode(enc)
    assert images.shape == (5, 3, 64, 64) and 0 <= images.min() and images.max() <= 1
    assert torch.equal(gen.load_tokenizer().decode(enc), images)


def test_held_out_bits_and_memorisation(gen, data):
    bits = heldout_bits(gen, data, data)
    assert set(bits["per_length"]) == {8, 64}
    for v in bits["per_length"].values():  # on its own training sequences: far below the unigram
        assert v["bits_per_token"] < v["unigram_bits_per_token"] - 1
    copies = Samples(alit.Encoding(data.num_tokens[:4], data.batch(range(4)).ids, None, 8, data.fingerprint, 1024),
                     data.class_ids[:4], *torch.zeros(3, 4, dtype=torch.float64), seed=0)
    m = memorisation(copies, data)
    assert (m["exact_copies"], m["mean_nearest_hamming"]) == (4, 0.0)
    nll = sequence_nll(gen, data.batch([0]))
    assert nll.ids.shape == (1, int(data.num_tokens[0]))


def test_cli_generate(gen, gen_dir, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["generate", "--generator", str(gen_dir), "--num", "3", "--out", str(out), "--seed", "0",
                 "--batch-size", "2", "--class", "a", "--top-k", "50"]) == 0
    records = json.loads((out / "samples.json").read_text())
    assert [r["file"] for r in records] == ["sample-0000.png", "sample-0001.png", "sample-0002.png"]
    want = gen.generate(3, class_="a", seed=0, top_k=50)
    for r, L, ll in zip(records, want.encoding.lengths.tolist(), want.log_likelihood.tolist()):
        assert Image.open(out / r["file"]).size == (64, 64)
        assert (r["num_tokens"], r["class"], r["seed"]) == (L, "a", 0) and r["seconds"] > 0
        assert r["log_likelihood"] == pytest.approx(ll, abs=1e-3)  # batches of 2 here, 3 there: rounding
    assert "3 images" in capsys.readouterr().out


def test_cli_refusals_are_one_line(gen_dir, model_dir, tmp_path, capsys):
    def refused(*argv):
        assert main(list(map(str, argv))) == 2
        err = capsys.readouterr().err.strip().splitlines()
        command = " ".join(map(str, argv[:2])) if argv[0] == "eval" else argv[0]  # `eval generator` is one command
        assert len(err) == 1 and err[0].startswith(f"alit {command}: error: ")
        return err[0]

    common = ["--num", 2, "--out", tmp_path / "o"]
    assert "one of the lengths" in refused("generate", "--generator", gen_dir, "--num-tokens", 20, *common)
    assert "unknown class 'c'" in refused("generate", "--generator", gen_dir, "--class", "c", *common)
    assert "a tokenizer, not a generator" in refused("generate", "--generator", model_dir, *common)
    assert "--num must be at least 1" in refused("generate", "--generator", gen_dir, "--num", 0, "--out", tmp_path)
    # the bundled generator records no training tokens: the hint, not "not a generator"
    assert "give --train TOKENS_DIR" in refused("eval", "generator", "--generator", "default", "--data", tmp_path)


def test_cli_eval_generator(gen_dir, tokens, tokens16, tmp_path, capsys):
    out = tmp_path / "eval"
    assert main(["eval", "generator", "--generator", str(gen_dir), "--data", str(tokens16), "--out", str(out),
                 "--num", "24", "--per-length", "2", "--offline"]) == 0
    r = json.loads((out / "results.json").read_text())
    assert list(r["bits"]["per_length"]) == ["16"] and r["train"]["path"] == str(tokens)  # as the generator records
    assert r["lengths"]["num_samples"] == 24 and 0 <= r["lengths"]["total_variation"] <= 1
    assert sum(r["lengths"]["sampled"].values()) == 24 and r["memorisation"]["samples"] == 24
    assert r["fd"]["value"] is None and "offline" in r["fd"]["reason"]
    every = r["samples"]["every_length"]
    assert list(every) == [str(L) for L in range(8, 65, 8)] and all(len(v["files"]) == 2 for v in every.values())
    assert all((out / f).is_file() for v in every.values() for f in v["files"])
    page = (out / "index.html").read_text()
    assert "samples/len064-1.png" in page and "bits.png" in page and "lengths.png" in page
    assert "FD: not computed" in capsys.readouterr().out


def test_lr_schedule():
    o = TrainOptions(steps=100, lr=1e-3, min_lr=1e-4, warmup_steps=10)
    assert lr_at(0, o) == pytest.approx(1e-4) and lr_at(9, o) == pytest.approx(1e-3)
    assert lr_at(99, o) == pytest.approx(1e-4) and lr_at(10, o) > lr_at(50, o) > lr_at(99, o)


def test_the_bundled_default_generator(tmp_path, capsys):
    """`alit.load_generator("default")`, and `alit generate` without --generator: the shipped generator
    of the bundled tokenizer's tokens (benchmarks/train_default_generator.sh), within 10 MB."""
    from alit.generator.generator import default_generator_dir

    assert sum(f.stat().st_size for f in default_generator_dir().iterdir()) <= 10 * 2 ** 20
    gen = alit.load_generator("default")
    gen.check_tokenizer(alit.load("default"))
    assert gen.tokenizer_checkpoint == "default" and gen.config.classes == ()
    assert main(["generate", "--num", "2", "--out", str(tmp_path), "--seed", "0", "--batch-size", "2"]) == 0
    records = json.loads((tmp_path / "samples.json").read_text())
    assert [Image.open(tmp_path / r["file"]).size for r in records] == [(64, 64)] * 2
    assert [r["num_tokens"] for r in records] == gen.sample(2, seed=0).lengths.tolist()
