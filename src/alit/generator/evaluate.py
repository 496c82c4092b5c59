"""How good a generator is (`alit eval generator`):

- held-out bits per token at every length, against a unigram baseline fitted on the training ids
  of the same length (add-one smoothing; all training ids where none has that length);
- the lengths drawn under "auto" against the training data's, by total variation distance;
- memorisation: each sample's nearest training sequence of its length by Hamming distance on the
  ids, and the share of exact copies;
- FD: the Frechet distance of Inception features (the rFID network of `alit eval`) between decoded
  samples and the decoded held-out tokens (the tokenizer's own reconstructions: the best a
  generator of its tokens can match), null with the reason where its weights cannot be had.

`evaluate_generator` runs them all and writes OUT/results.json, sample PNGs and OUT/index.html.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from ..encoding import Encoding
from ..eval.metrics import FrechetStats, InceptionFeatures, MetricUnavailable, frechet_distance
from ..images import save_png
from .data import GeneratorData
from .generator import Generator
from .loss import sequence_nll
from .report import write_page
from .sample import Samples

LN2 = math.log(2)


@torch.no_grad()
def heldout_bits(gen: Generator, heldout: GeneratorData, train: GeneratorData, batch_size: int = 64) -> dict:
    """{"per_length": {L: {sequences, bits_per_token, unigram_bits_per_token, length_bits}}, "all": ...}
    for every length with held-out sequences; bits per token are of the ids given the length."""
    device = next(gen.parameters()).device
    per_length, totals = {}, torch.zeros(4, dtype=torch.float64)  # ids, id bits, unigram bits, length bits
    for L in heldout.lengths:
        rows = heldout.rows_of_length(L)
        if len(rows) == 0:
            continue
        bits = torch.zeros(2, dtype=torch.float64)
        for chunk in rows.split(batch_size):
            nll = sequence_nll(gen, heldout.batch(chunk).to(device))
            bits += torch.stack([nll.ids.sum(), nll.length.sum()]).double().cpu() / LN2
        unigram = _unigram_bits(train, L, heldout.ids[rows, :L].long())
        n_ids = len(rows) * L
        per_length[L] = {"sequences": len(rows), "bits_per_token": float(bits[0] / n_ids),
                         "unigram_bits_per_token": unigram / n_ids, "length_bits": float(bits[1] / len(rows))}
        totals += torch.tensor([n_ids, bits[0], unigram, bits[1]], dtype=torch.float64)
    n_ids, id_bits, unigram, length_bits = totals.tolist()
    return {"per_length": per_length,
            "all": {"sequences": len(heldout), "bits_per_token": id_bits / n_ids,
                    "unigram_bits_per_token": unigram / n_ids, "length_bits": length_bits / len(heldout)}}


def _unigram_bits(train: GeneratorData, L: int, ids: torch.Tensor) -> float:
    """Total bits of ids [n, L] under the add-one unigram of the training ids of length L (all
    training ids when none has that length)."""
    rows = train.rows_of_length(L)
    fit = train.ids[rows, :L] if len(rows) else train.ids
    fit = fit[fit >= 0].long()
    counts = torch.bincount(fit, minlength=train.vocab_size).double() + 1
    log_p = counts.log() - counts.sum().log()  # [K]
    return float(-log_p[ids].sum() / LN2)


def length_histograms(samples: Samples, train: GeneratorData) -> dict:
    """Sampled lengths against the training data's: counts and the total variation distance."""
    sampled = samples.encoding.lengths.tolist()
    data = train.length_histogram()
    counts = {L: sampled.count(L) for L in train.lengths}
    tv = 0.5 * sum(abs(counts[L] / len(sampled) - data[L] / len(train)) for L in train.lengths)
    return {"num_samples": len(sampled), "sampled": counts, "data": data, "total_variation": tv}


def memorisation(samples: Samples, train: GeneratorData, chunk: int = 4096) -> dict:
    """Each sample's nearest training sequence of its length by Hamming distance on the ids."""
    enc = samples.encoding
    nearest = []  # per sample: the share of positions where it differs from its nearest
    for j in range(len(enc)):
        L = int(enc.lengths[j])
        rows = train.rows_of_length(L)
        if len(rows) == 0:
            nearest.append(1.0)  # no training sequence of this length: nothing to copy
            continue
        ids = enc.ids[j, :L]
        best = min(int((train.ids[part, :L].long() != ids).sum(1).min()) for part in rows.split(chunk))
        nearest.append(best / L)
    copies = sum(d == 0 for d in nearest)
    return {"samples": len(nearest), "exact_copies": copies, "share_exact_copies": copies / len(nearest),
            "mean_nearest_hamming": sum(nearest) / len(nearest), "min_nearest_hamming": min(nearest),
            "nearest_hamming": nearest}


@torch.no_grad()
def frechet(tok, samples: Samples, heldout: GeneratorData, *, weights=None, batch_size: int = 32) -> dict:
    """FD between decoded samples and decoded held-out tokens; value None with the reason when
    the Inception network or its weights are missing."""
    result = {"value": None, "reason": None, "network": "pytorch-fid InceptionV3 pool3 (the rFID network)",
              "reference": "the tokenizer's decoding of the held-out tokens", "samples": len(samples.encoding),
              "reference_images": len(heldout)}
    try:
        net = InceptionFeatures(weights).to(next(tok.parameters()).device)
        stats = [FrechetStats(), FrechetStats()]
        for start in range(0, len(samples.encoding), batch_size):
            stats[0].update(net(tok.decode(samples.encoding[start:start + batch_size])))
        rows = torch.arange(len(heldout))
        for chunk in rows.split(batch_size):
            stats[1].update(net(tok.decode(_encoding(heldout, chunk, tok))))
        result["value"] = frechet_distance(stats[0], stats[1])
    except MetricUnavailable as e:
        result["reason"] = str(e)
    return result


def _encoding(data: GeneratorData, rows: torch.Tensor, tok) -> Encoding:
    batch = data.batch(rows)
    return Encoding.from_ids(batch.ids, data.num_tokens[rows], model=tok)


def samples_at_every_length(gen: Generator, tok, out: Path, per_length: int, seed: int, batch_size: int) -> dict:
    """per_length samples at each length, decoded to OUT/samples/len<L>-<j>.png -> {L: {files,
    seconds_per_sample, mean_log_likelihood}}."""
    folder = out / "samples"
    folder.mkdir(parents=True, exist_ok=True)
    result = {}
    for L in gen.config.lengths:
        s = gen.generate(per_length, num_tokens=L, seed=seed, batch_size=batch_size)
        images = tok.decode(s.encoding)
        files = [save_png(images[j], folder / f"len{L:03d}-{j}.png").relative_to(out).as_posix()
                 for j in range(per_length)]
        result[L] = {"files": files, "seconds_per_sample": float(s.seconds.mean()),
                     "mean_log_likelihood": float(s.log_likelihood.mean())}
    return result


def evaluate_generator(gen: Generator, tok, heldout: GeneratorData, train: GeneratorData, out: str | Path, *,
                       num_samples: int = 256, per_length: int = 8, seed: int = 0, batch_size: int = 64,
                       fid_weights=None, log=print) -> dict:
    """Every measure above; writes OUT/results.json, OUT/samples/*.png and OUT/index.html."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for data in (heldout, train):
        data.check_config(gen.config)
    gen.check_tokenizer(tok)
    log(f"bits per token on {len(heldout)} held-out sequences")
    bits = heldout_bits(gen, heldout, train, batch_size)
    log(f"{num_samples} samples under num_tokens=auto")
    # classes as often as in the training data (one drawn per sample); None without classes
    pick = torch.randint(len(train), (num_samples,), generator=torch.Generator().manual_seed(seed))
    classes = train.class_ids[pick] if gen.config.num_classes else None
    auto = gen.generate(num_samples, "auto", classes, seed=seed, batch_size=batch_size)
    log(f"{per_length} samples at each of {len(gen.config.lengths)} lengths")
    every = samples_at_every_length(gen, tok, out, per_length, seed, batch_size)
    images = tok.decode(auto.encoding[:per_length * 2])
    auto_files = [save_png(images[j], out / "samples" / f"auto-{j}.png").relative_to(out).as_posix()
                  for j in range(len(images))]
    log("memorisation and FD")
    results = {
        "generator": {"config": gen.config.to_dict(), "parameters": sum(p.numel() for p in gen.parameters())},
        "tokenizer": gen.config.tokenizer, "heldout": {"path": str(heldout.root), "sequences": len(heldout)},
        "train": {"path": str(train.root), "sequences": len(train)}, "seed": seed,
        "bits": bits, "lengths": length_histograms(auto, train), "memorisation": memorisation(auto, train),
        "fd": frechet(tok, auto, heldout, weights=fid_weights, batch_size=batch_size),
        "samples": {"every_length": every, "auto": {"files": auto_files, "lengths": auto.encoding.lengths.tolist(),
                                                    "seconds_per_sample": float(auto.seconds.mean())}},
    }
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    write_page(results, out)
    return results
