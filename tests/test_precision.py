"""The precision switch (alit.precision) and what it must keep: ids chosen in float32 under autocast,
decoding in every dtype, TF32 flags as documented; and the encode path's host syncs (counted on the
CPU by the operations that would wait for a GPU), the cached fingerprint, Stalled's single scoring."""
from __future__ import annotations

import pytest
import torch
from torch.overrides import TorchFunctionMode

import alit
from alit.base.vqgan import Codebook
from alit.criteria import EightBit, SSIMAbove, Stalled
from alit.encoding import model_fingerprint
from alit.losses.autoencoder import vector_quantize
from alit.model.quantizer import VectorQuantizer
from alit.precision import PRECISIONS, check_precision, compute_in, nearest_code


def close_codes(K: int = 512, d: int = 12, n: int = 4000) -> tuple[torch.Tensor, torch.Tensor]:
    """Unit vectors near codes of a unit codebook: their distances to the nearest codes differ in
    the 3rd-4th digit, where bfloat16 (8 bits of mantissa) ties them."""
    g = torch.Generator().manual_seed(0)
    codes = torch.nn.functional.normalize(torch.randn(K, d, generator=g), dim=-1)
    z = codes[torch.randint(0, K, (n,), generator=g)] + 0.3 * torch.randn(n, d, generator=g)
    return torch.nn.functional.normalize(z, dim=-1), codes


@pytest.mark.parametrize("amp", [torch.bfloat16, torch.float16])
def test_every_quantiser_picks_the_float32_ids_under_autocast(amp):
    z, codes = close_codes()
    exact = nearest_code(z, codes)
    with torch.autocast("cpu", dtype=amp):
        naive = (z.pow(2).sum(1, keepdim=True) + codes.pow(2).sum(1) - 2 * z @ codes.t()).argmin(1)
        assert (naive != exact).float().mean() > 0.001  # the bug being guarded: low-precision distances flip ids
        assert torch.equal(nearest_code(z, codes), exact)
        vq = VectorQuantizer(codes.shape[0], codes.shape[1])
        vq.codebook.weight.data.copy_(codes)
        assert torch.equal(vq(z[None]).ids[0], exact)  # the latent quantiser
        book = Codebook(codes.shape[0], codes.shape[1])
        book.embedding.weight.data.copy_(codes)
        assert torch.equal(book(z), exact)  # the base VQGAN's targets
        h = z[:16 * 16].T.reshape(1, codes.shape[1], 16, 16)  # [1, C, G, G]
        assert torch.equal(vector_quantize(h, codes).ids[0], exact[:256])  # base training


def test_the_switch_sets_tf32_as_documented_and_restores_it():
    matmul, conv = torch.backends.cuda.matmul, torch.backends.cudnn.conv
    before = matmul.fp32_precision, conv.fp32_precision
    for name, flag in [("fp32", "ieee"), ("tf32", "tf32"), ("bf16", "ieee"), ("fp16", "ieee")]:
        with compute_in(name, "cpu"):
            assert (matmul.fp32_precision, conv.fp32_precision) == (flag, flag)
            assert torch.is_autocast_enabled("cpu") == (name in ("bf16", "fp16"))
            if name in ("bf16", "fp16"):
                assert torch.get_autocast_dtype("cpu") == {"bf16": torch.bfloat16, "fp16": torch.float16}[name]
        assert (matmul.fp32_precision, conv.fp32_precision) == before
    with torch.autocast("cpu", dtype=torch.bfloat16), compute_in(None, "cpu"):
        assert torch.is_autocast_enabled("cpu")  # None: the caller's context stays
    with torch.autocast("cpu", dtype=torch.bfloat16), compute_in("fp32", "cpu"):
        assert not torch.is_autocast_enabled("cpu")  # fp32 means fp32
    assert [check_precision(p) for p in (torch.bfloat16, "float16", "FP32")] == ["bf16", "fp16", "fp32"]
    with pytest.raises(ValueError, match="precision must be one of fp32, tf32, bf16, fp16"):
        check_precision("int8")
    assert PRECISIONS == ("fp32", "tf32", "bf16", "fp16")


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_decode_in_every_dtype_is_close_to_float32(tok, images, precision):
    enc = tok.encode(images, num_tokens=torch.tensor([64, 8, 24, 8]))
    exact = tok.decode(enc)
    for kwargs in ({"precision": precision}, {"dtype": alit.precision.AUTOCAST[precision]}):
        out = tok.decode(enc, **kwargs)
        assert out.dtype == torch.float32 and out.shape == exact.shape  # in the model's dtype
        # a random-weight model, measured: bf16 0.0067 (1.7 levels of 255), fp16 0.0008 mean
        assert (out - exact).abs().mean() < {"bf16": 0.01, "fp16": 0.002}[precision]
        assert (out - exact).abs().max() < 0.15
    cast = alit.build("tiny").to(torch.bfloat16)
    cast.load_state_dict(tok.state_dict())
    assert cast.decode(enc).dtype == torch.bfloat16  # a cast model returns its own dtype


def test_a_tokenizer_keeps_its_precision(tok, images):
    half = alit.build("tiny")
    half.load_state_dict(tok.state_dict())
    half.precision = "bf16"  # what alit.load(..., precision="bf16") sets
    enc = half.encode(images, num_tokens=64)
    assert torch.equal(enc.ids, tok.encode(images, num_tokens=64, precision="bf16").ids)
    assert enc.model == tok.encode(images, num_tokens=64).model  # the same weights, the same model


class HostSyncs(TorchFunctionMode):
    """Counts the tensor operations that make the host wait for a GPU: reading a value (bool, int,
    float, item, tolist), nonzero, and indexing with a boolean mask (its size depends on the data)."""

    READS = {"__bool__", "__int__", "__float__", "__index__", "item", "tolist", "nonzero", "masked_select",
             "numpy", "unique", "cpu"}

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        masked = name in ("__getitem__", "__setitem__", "index_put_", "index_put") and any(
            isinstance(a, torch.Tensor) and a.dtype == torch.bool
            for a in _flat(args[1] if len(args) > 1 else None))
        self.count += name in self.READS or masked
        return func(*args, **(kwargs or {}))


def _flat(index):
    return index if isinstance(index, (tuple, list)) else (index,)


def count_syncs(tok, images, **kwargs) -> tuple[int, int]:
    """(host syncs, iterations) of one encode."""
    with HostSyncs() as syncs:
        enc = tok.encode(images, **kwargs)
    return syncs.count, enc.iterations


@pytest.mark.parametrize("how", ["budgets", "rule", "stalled"])
def test_early_exit_waits_for_the_device_at_most_once_an_iteration(tok, images, how):
    """A call's syncs grow by at most one per iteration (a call also reads a few values once: the
    images' range, the budgets, the Encoding's checks)."""
    images = torch.cat([images, images.flip(-1)])  # 8 images, so that they leave at several lengths
    short, long = {
        "budgets": ({"num_tokens": 8}, {"num_tokens": torch.tensor([8, 64, 16, 16, 40, 8, 64, 24])}),
        "rule": ({"criterion": EightBit(alit.L1Below(0.99))}, {"criterion": EightBit(alit.L1Below(0.2))}),
        "stalled": ({"criterion": EightBit(Stalled(alit.L1Below(0.99), 0.0005))},
                    {"criterion": EightBit(Stalled(SSIMAbove(0.99), 0.0))}),
    }[how]
    tok.encode(images, **short)  # the first call lays the CPU's conv weights out channels-last
    syncs_short, iters_short = count_syncs(tok, images, **short)
    syncs_long, iters_long = count_syncs(tok, images, **long)
    assert iters_short == 1 and iters_long >= 4
    assert syncs_long - syncs_short <= iters_long - iters_short, (syncs_short, syncs_long, iters_long)
    assert syncs_short <= 5  # the images' range, the budgets, the Encoding's lengths and ids


def test_decode_reads_back_from_the_device_three_times_whatever_the_batch(tok, images):
    enc = tok.encode(torch.cat([images, images]), num_tokens=torch.tensor([8, 64, 16, 16, 40, 8, 64, 24]))
    tok.decode(enc)
    with HostSyncs() as syncs:
        tok.decode(enc)
    assert syncs.count <= 3  # the ids' check, the lengths to group by, the Encoding's lengths


def test_stalled_scores_each_length_once_and_chooses_as_before(tok, images):
    calls = []

    class Counted(SSIMAbove):
        def score(self, images, reconstructions):
            calls.append(1)
            return super().score(images, reconstructions)

    rule = Stalled(Counted(0.99), 0.0005)
    enc = tok.encode(images, criterion=EightBit(rule))
    T = enc.iterations
    assert len(calls) <= 4 * T  # at most once per length for the images still there (4 here)
    calls.clear()
    with torch.no_grad():
        roll = tok.rollout(images)
    # the looking-back call (c(images, recons, previous)) that first_accepted uses: the same lengths
    expected = alit.criteria.first_accepted(EightBit(rule), images, roll.reconstructions)
    assert enc.lengths.tolist() == [tok.config.lengths[i] for i in expected.tolist()]


def test_the_fingerprint_is_computed_once_and_again_after_a_weight_changes(tok, monkeypatch):
    model = alit.build("tiny")
    model.load_state_dict(tok.state_dict())
    computed = []
    real = alit.encoding._fingerprint
    monkeypatch.setattr(alit.encoding, "_fingerprint", lambda m: computed.append(1) or real(m))
    first = model_fingerprint(model)
    assert [model_fingerprint(model) for _ in range(5)] == [first] * 5 and len(computed) == 1
    with torch.no_grad():
        model.encoder.pos.add_(1.0)  # in place, as an optimiser step does
    assert model_fingerprint(model) != first and len(computed) == 2
    model.load_state_dict(tok.state_dict())
    assert model_fingerprint(model) == first and len(computed) == 3
    model.to(torch.bfloat16)
    assert model_fingerprint(model) == first and len(computed) == 4  # a cast copy is the same model


class Float64Ops(TorchFunctionMode):
    """Names of the operations that returned a float64 tensor."""

    def __init__(self):
        super().__init__()
        self.names = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if isinstance(out, torch.Tensor) and out.dtype == torch.float64:
            self.names.append(getattr(func, "__name__", str(func)))
        return out


def test_accelerators_score_in_float32_so_mps_never_meets_float64(tok, images):
    from alit.scoring import table_dtype

    mps, cuda = torch.device("mps"), torch.device("cuda")
    assert table_dtype(mps) == torch.float32 and table_dtype(torch.device("cpu")) == torch.float64
    rule = EightBit(Stalled(SSIMAbove(0.99), 0.0))
    assert rule._wide(mps) == rule._wide(cuda) == torch.float32 and rule._wide(torch.device("cpu")) == torch.float64
    # the rule on an accelerator's tensors (the meta device stands in: no values, the same dtypes)
    x = torch.rand(2, 3, 64, 64, device="meta")
    with Float64Ops() as wide:
        accepted, score = rule.judge(x, x, None)
        rule.judge(x, x, score)
    assert wide.names == [] and accepted.dtype == torch.bool and score.dtype == torch.float32
    # what runs on the device for a fixed length, a decode and a fingerprint (its float64 is on the CPU)
    model = alit.build("tiny")
    model.load_state_dict(tok.state_dict())
    model.encode(images[:1], num_tokens=8)  # the fingerprint, computed once (on the CPU, in float64)
    with Float64Ops() as wide:
        model.decode(model.encode(images, num_tokens=torch.tensor([8, 64, 16, 8])))
    assert wide.names == []
