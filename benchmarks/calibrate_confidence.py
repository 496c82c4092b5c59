"""Calibrate the pixel-free length criteria against the paper's L1 rule, on real photos with a
trained model (issue 7, item 4), and measure bfloat16 against float32 (item 5).

    python benchmarks/calibrate_confidence.py --checkpoint CKPT --data PHOTOS_DIR [--l1 0.07] [--bf16]

For every image, one rollout gives every length's raw L1 error, the decoder's mean probability
of the base ids (VQGAN base: what `alit.ConfidenceAbove` reads) and its mean code error (what
`alit.CodeErrorBelow` reads). For each threshold of a grid, the pixel-free criterion chooses a
length per image; the script reports how often it chooses the same length as `L1Below(--l1)`, the
mean lengths and the mean |difference|, and picks the threshold with the most agreement. Then it
times both encodes (`tok.encode(images, criterion=...)`, per-image compaction on) on the same
images: the time saved is the pixel decodes the pixel-free rule skips.

--bf16: also the error of bfloat16 (weights cast, as `alit.load(path, dtype=torch.bfloat16)`)
against float32: mean and max absolute pixel error of the reconstruction at every length, and
how often the length chosen by L1Below changes.

Random-weight models give meaningless numbers here: this needs a trained model (the bundled
default model, once it exists) and real photos (`alit data photos --out DIR`, its heldout/ part).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

import alit
from alit.criteria import first_accepted
from alit.images import find_images, load_image
from alit.scoring import l1_error
from alit.tokens.budget import threshold_choice


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="a trained model folder (or 'default')")
    p.add_argument("--data", required=True, help="image folder (searched recursively)")
    p.add_argument("--l1", type=float, default=0.07, help="the L1 rule to calibrate against (default 0.07)")
    p.add_argument("--limit", type=int, default=None, help="only the first N images")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--bf16", action="store_true", help="also measure bfloat16 against float32")
    p.add_argument("--device", default=None)
    p.add_argument("--out", default=None, help="also write the results as JSON")
    args = p.parse_args()
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    tok = alit.load(args.checkpoint).to(device)
    paths, problems = find_images([args.data])
    paths = paths[:args.limit]
    for line in problems:
        print(f"skipped: {line}")
    if not paths:
        raise SystemExit(f"no images under {args.data}")
    S, lengths = tok.config.image_size, torch.tensor(tok.config.lengths)
    batches = [torch.stack([load_image(q, S) for q in paths[i:i + args.batch_size]]).to(device)
               for i in range(0, len(paths), args.batch_size)]
    l1_rule = alit.L1Below(args.l1)

    # --- one rollout per batch: every length's L1, confidence and code error ---
    l1, conf, code_err, chosen_l1 = [], [], [], []
    for x in batches:
        with torch.no_grad():
            roll = tok.rollout(x)
        l1.append(torch.stack([l1_error(x, r) for r in roll.reconstructions], 1).cpu())  # [b, T]
        code_err.append(torch.stack([(c - roll.targets.codes).abs().mean((1, 2)) for c in roll.codes], 1).cpu())
        if roll.logits is not None:
            conf.append(torch.stack([lg.softmax(-1).gather(-1, roll.targets.ids[..., None]).mean((1, 2))
                                     for lg in roll.logits], 1).cpu())
        chosen_l1.append(first_accepted(l1_rule, x, roll).cpu())
    l1, code_err, chosen_l1 = torch.cat(l1), torch.cat(code_err), torch.cat(chosen_l1)
    conf = torch.cat(conf) if conf else None
    results = {"checkpoint": args.checkpoint, "images": len(paths), "l1_rule": repr(l1_rule),
               "mean_tokens_l1": lengths[chosen_l1].float().mean().item()}
    print(f"{len(paths)} images; {l1_rule}: mean {results['mean_tokens_l1']:.1f} tokens")

    # --- the threshold grids: agreement with the L1 choice ---
    signals = {"code": (code_err, "below", alit.CodeErrorBelow)}
    if conf is not None:
        signals["conf"] = (conf, "above", alit.ConfidenceAbove)
    best = {}
    for name, (signal, direction, make) in signals.items():
        grid = torch.quantile(signal.flatten(), torch.linspace(0.02, 0.98, 49)).unique().tolist()
        # the library's threshold rule (the longest length where none passes); "above" as "-signal below"
        sign = -1 if direction == "above" else 1
        below = (sign * signal).numpy()
        rows = []
        for thr in grid:
            chosen = torch.from_numpy(threshold_choice(below, sign * thr))
            rows.append({"threshold": thr, "same_length": (chosen == chosen_l1).float().mean().item(),
                         "mean_tokens": lengths[chosen].float().mean().item(),
                         "mean_abs_diff_tokens": (lengths[chosen] - lengths[chosen_l1]).abs().float().mean().item()})
        top = max(rows, key=lambda r: (r["same_length"], -r["mean_abs_diff_tokens"]))
        best[name] = make(top["threshold"])
        results[name] = {"grid": rows, "best": top}
        print(f"{best[name]!r}: same length as {l1_rule} for {top['same_length']:.1%} of images; mean "
              f"{top['mean_tokens']:.1f} tokens (L1: {results['mean_tokens_l1']:.1f}), mean |difference| "
              f"{top['mean_abs_diff_tokens']:.1f} tokens")
        corr = torch.corrcoef(torch.stack([signal.flatten(), l1.flatten()]))[0, 1].item()
        results[name]["pearson_with_l1"] = corr
        print(f"    correlation with L1 over all images and lengths: {corr:+.3f}")

    # --- time: encode with the L1 rule against the pixel-free rules (interleaved, best of 2) ---
    times = {repr(c): [] for c in [l1_rule, *best.values()]}
    for _ in range(2):
        for crit in [l1_rule, *best.values()]:
            start = time.perf_counter()
            for x in batches:
                tok.encode(x, criterion=crit)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            times[repr(crit)].append(time.perf_counter() - start)
    results["encode_s"] = {k: min(v) for k, v in times.items()}
    for k, v in results["encode_s"].items():
        print(f"encode of all images with {k}: {v:.2f} s ({v / results['encode_s'][repr(l1_rule)]:.2f}x the L1 rule)")

    if args.bf16:
        results["bf16"] = bf16_error(tok, batches, l1_rule, lengths)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1) + "\n")
        print(f"wrote {args.out}")


def bf16_error(tok, batches, l1_rule, lengths) -> dict:
    low = alit.AdaptiveTokenizer(tok.config).to(next(tok.parameters()).device)
    low.load_state_dict(tok.state_dict())
    low = low.eval().to(torch.bfloat16)
    mean_err, max_err, changed, n = 0.0, 0.0, 0, 0
    per_length = torch.zeros(len(lengths))
    for x in batches:
        with torch.no_grad():
            r32, r16 = tok.rollout(x), low.rollout(x)
        errs = torch.stack([(a.float() - b).abs().flatten(1).mean(1) for a, b in zip(r16.reconstructions,
                                                                                  r32.reconstructions)], 1)
        per_length += errs.sum(0).cpu()
        mean_err += errs.sum().item() / len(lengths)
        max_err = max(max_err, max((a.float() - b).abs().max().item()
                                   for a, b in zip(r16.reconstructions, r32.reconstructions)))
        c32 = first_accepted(l1_rule, x, r32)
        c16 = first_accepted(l1_rule, x, [r.float() for r in r16.reconstructions])
        changed += (c32 != c16).sum().item()
        n += x.shape[0]
    out = {"mean_abs_pixel_error": mean_err / n, "max_abs_pixel_error": max_err,
           "mean_abs_pixel_error_per_length": (per_length / n).tolist(), "chosen_length_changed": changed / n}
    print(f"bf16 against fp32: mean |pixel error| {out['mean_abs_pixel_error']:.4f}, max {max_err:.3f}; "
          f"{l1_rule} chooses another length for {out['chosen_length_changed']:.1%} of images")
    return out


if __name__ == "__main__":
    main()
