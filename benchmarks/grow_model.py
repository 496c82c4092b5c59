"""Grow a trained ALIT without changing what it computes: new parts that start as identities.

    python benchmarks/grow_model.py RUN --decoder-depth 4 [--encoder-depth N] [--error-feedback] --out GROWN

RUN is a model folder or a training run (its EMA weights). Each new block is appended after the
existing ones of its stack with the output projections of its attention and MLP set to zero, so it
adds nothing to the residual stream until training moves those projections (a pre-LN block is then
x + 0 + 0). The grown model's outputs equal RUN's (checked here, on random images, before saving),
and GROWN can be given to `alit train distill --init GROWN` or `alit train finetune --init GROWN`.
--error-feedback turns on the config key of that name (ours): the projection of the decoder's code
error into the encoder's image tokens starts at zero, so it too changes nothing until trained.

Why (benchmarks/results/default_model_log.md, section 10): the default model's error stops falling
after 48 of its 128 tokens on the training photos as on the held-out ones, with or without its
quantiser, which points at the capacity of the 2-block stacks rather than at over-fitting.
"""
from __future__ import annotations

import argparse

import torch

from alit.model.alit import ALIT
from alit.tokenizer import load
from alit.train.sources import model_dir
from alit.weights import save


def grow(model: ALIT, encoder_depth: int | None = None, decoder_depth: int | None = None,
         error_feedback: bool = False) -> ALIT:
    """A new ALIT, deeper where asked (and with error feedback if asked), carrying every weight of
    `model`; new blocks are identities, a new feedback projection is zero."""
    cfg = model.config
    encoder_depth = encoder_depth or cfg.encoder_depth
    decoder_depth = decoder_depth or cfg.decoder_depth
    if encoder_depth < cfg.encoder_depth or decoder_depth < cfg.decoder_depth:
        raise SystemExit(f"grow_model: the depths only grow (now encoder {cfg.encoder_depth}, "
                         f"decoder {cfg.decoder_depth})")
    grown = ALIT(cfg.replace(encoder_depth=encoder_depth, decoder_depth=decoder_depth,
                             error_feedback=cfg.error_feedback or error_feedback))
    missing, unexpected = grown.load_state_dict(model.state_dict(), strict=False)
    new = ("encoder.blocks.", "decoder.blocks.", "encoder.feedback.")
    assert not unexpected and all(k.startswith(new) for k in missing)
    with torch.no_grad():
        stacks = ((grown.encoder.blocks, cfg.encoder_depth), (grown.decoder.blocks, cfg.decoder_depth))
        for stack, old in stacks:
            for block in list(stack)[old:]:  # pre-LN: x + attn(ln1 x) + mlp(ln2 .) is x while both end in 0
                for linear in (block.attn.proj, block.mlp.proj):
                    linear.weight.zero_()
                    linear.bias.zero_()
    return grown


@torch.no_grad()
def max_difference(a: ALIT, b: ALIT, batch: int = 4) -> float:
    """The largest difference between the two models' predicted codes at every length."""
    images = torch.rand(batch, 3, a.config.image_size, a.config.image_size,
                        generator=torch.Generator().manual_seed(0))
    ra, rb = a.rollout(images, "off", pixels=False), b.rollout(images, "off", pixels=False)
    return max((x - y).abs().max().item() for x, y in zip(ra.codes, rb.codes))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run", help="model folder or training run (its EMA weights)")
    p.add_argument("--encoder-depth", type=int, default=None, help="new encoder depth (default: unchanged)")
    p.add_argument("--decoder-depth", type=int, default=None, help="new decoder depth (default: unchanged)")
    p.add_argument("--error-feedback", action="store_true",
                   help="turn on error_feedback (a zero projection of the code error into the image tokens)")
    p.add_argument("--out", required=True, help="folder for the grown model")
    args = p.parse_args(argv)
    folder = model_dir(args.run)
    model = load(folder)
    grown = grow(model, args.encoder_depth, args.decoder_depth, args.error_feedback).eval()
    diff = max_difference(model, grown)
    if diff > 1e-5:
        raise SystemExit(f"grow_model: the grown model differs from {folder} by {diff:.2e}")
    cfg = grown.config
    save(grown.state_dict(), cfg, args.out,
         source=f"{folder}, grown to encoder depth {cfg.encoder_depth}, decoder depth {cfg.decoder_depth}"
                + (", error feedback" if cfg.error_feedback else ""))
    print(f"{args.out}: encoder depth {cfg.encoder_depth}, decoder depth {cfg.decoder_depth}, "
          f"error feedback {'on' if cfg.error_feedback else 'off'}, "
          f"{sum(p.numel() for p in grown.parameters()):,} parameters; same outputs as {folder} "
          f"(largest difference {diff:.1e})")


if __name__ == "__main__":
    main()
