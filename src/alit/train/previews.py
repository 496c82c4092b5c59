"""What a run shows of its model while it trains: reconstruction grids for TensorBoard, and how
much an ALIT decoder relies on each image's own latents."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.utils import make_grid

# below this NLL (or MSE) gain from an image's own latents over another image's, the decoder
# ignores them (`latent_reliance`)
IGNORED_GAP = 1e-3


@torch.no_grad()
def latent_reliance(model: nn.Module, roll) -> dict[str, float]:
    """How much each image's own latents help the decoder of an ALIT `roll`out (eval mode): the
    stage-1 loss (CE for a VQGAN base, MSE for a VAE) with every image's latents given to the next
    image, minus the loss with its own, at the first and last iteration. About 0 means the decoder
    ignores the latents."""
    if roll.latents[0].shape[0] < 2:
        return {}
    out = {}
    for name, t in (("first", 0), ("last", len(roll.latents) - 1)):
        other = model.decoder(roll.latents[t].roll(1, 0))
        if model.is_vqgan:
            ids = roll.targets.ids.reshape(-1)
            loss = [F.cross_entropy(o.float().reshape(-1, o.shape[-1]), ids) for o in (roll.logits[t], other)]
        else:
            loss = [F.mse_loss(o.float(), roll.targets.codes.float()) for o in (roll.codes[t], other)]
        out[f"latent_reliance/{name}"] = (loss[1] - loss[0]).item()
    return out


def ignored_latents(step: int, scalars: dict[str, float]) -> str | None:
    """The warning for a step's record when the decoder ignores the latents (None: it does not)."""
    if not any(k.startswith("latent_reliance/") and v < IGNORED_GAP for k, v in scalars.items()):
        return None
    numbers = ", ".join(f"{k} {v:.4g}" for k, v in scalars.items()) or "-"
    return (f"step {step}: the latent decoder ignores the latents ({numbers}: another image's latents predict "
            f"as well as the image's own); see the README's 'Known limit'")


def previews_grid(images: torch.Tensor, columns: list[torch.Tensor]) -> torch.Tensor:
    """Rows of [input, column 0, column 1, ...] per image -> one grid image [3, H', W']."""
    tiles = torch.stack([images] + [c.float().clamp(0, 1) for c in columns], 1)  # [B, 1+C, 3, H, W]
    return make_grid(tiles.flatten(0, 1).cpu(), nrow=1 + len(columns), padding=1)
