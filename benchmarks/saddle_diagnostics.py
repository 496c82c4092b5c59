"""How image-dependent is ALIT's latent path at initialisation? (issue #12, the stage-1 saddle)

For a freshly built model on a trained base, with N training photos, prints per variant:
  enc_share   std across images of the encoder's latent outputs / their mean magnitude
  z_share     the same for the decoder's input after `from_latent` (what the decoder can read),
              against the magnitude of the decoder's latent position table
  swap        mean |decoder output| change when every image gets the next image's latents,
              relative to the mean |output|
  distinct    distinct latent codes over the batch's first-iteration tokens (quantised models)

    python benchmarks/saddle_diagnostics.py --base runs/base64 --data data/p128/train
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from alit.images import find_images, load_image
from alit.model.alit import ALIT
from alit.train.stage_helpers import preset_config
from alit.train.sources import load_base


def measure(model: ALIT, images: torch.Tensor) -> dict:
    model.train()  # batch statistics, as in the first training step
    with torch.no_grad():
        state = model.start(images)
        x = model.encoder.blocks(state.x)
        raw = x[:, 1 + model.encoder.num_image_tokens:]  # [B, L0, W]
        factorized = model.encoder.latents(x)
        latents, ids, _ = model.bottleneck(factorized)
        z = model.decoder.from_latent(latents)  # [B, L0, Wd]
        out = model.decoder(latents)
        swapped = model.decoder(latents.roll(1, 0))
    share = lambda v: (v.std(0).mean() / v.abs().mean()).item()
    res = {"enc_share": share(raw), "z_std_over_images": z.std(0).mean().item(),
           "latent_pos_magnitude": model.decoder.latent_pos[:z.shape[1]].abs().mean().item(),
           "swap": ((swapped - out).abs().mean() / out.abs().mean()).item()}
    res["z_share"] = res["z_std_over_images"] / res["latent_pos_magnitude"]
    if ids is not None:
        res["distinct"] = int(ids.unique().numel())
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--model", default="tiny-vae")
    ap.add_argument("--images", type=int, default=32)
    ap.add_argument("--out", default="benchmarks/results/saddle_diagnostics.json")
    args = ap.parse_args()
    torch.manual_seed(0)
    paths = find_images([args.data])[0][:args.images]
    results = {}
    for quantize in (False, True):
        for latent_norm in (False, True):
            cfg = preset_config(args.model, {"quantize": quantize, "latent_norm": latent_norm})
            base, _ = load_base(args.base, cfg.image_size)
            model = ALIT(cfg.replace(base=base.cfg))
            model.base.load_state_dict(base.state_dict())
            images = torch.stack([load_image(p, cfg.image_size) for p in paths])
            name = f"{'quantised' if quantize else 'continuous'}, latent_norm={latent_norm}"
            results[name] = measure(model, images)
            print(name, {k: round(v, 5) for k, v in results[name].items()})
    Path(args.out).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
