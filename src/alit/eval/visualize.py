"""`alit visualize`: which image regions each latent token explains, from the decoder's attention.

The decoder's sequence is [cls ; N grid queries ; L latents]. `decoder_attention` runs the decoder
and recomputes every block's softmax attention weights from what its attention received; the
weight that grid query n gives latent j, averaged over heads, is how much position n reads token j.
For each rollout iteration t (L = L0 (t + 1) latents) and each token j, that column over the G x G
grid is drawn as a heat map (min-max normalised per token, as the paper's figures) over the image.
The default block is the one the paper's figures use: index 6 of 8 (3/4 of the depth).

The decoder itself runs (no copy of its forward to drift from it as it is optimised); forward hooks
on each block's attention record its input, and the weights recomputed from that input must
reproduce the attention's output (`proj(weights @ v)`), so a changed attention fails loudly
instead of drawing wrong maps.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from ..errors import AlitError
from ..images import read_image, save_png
from ..progress import tracked
from .inputs import protocol
from .report import Page, pyplot


@torch.no_grad()
def decoder_attention(decoder, latents: torch.Tensor, check: bool = True) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """latents [B, L, d] -> (decoder output [B, N, out], per block the attention weights
    [B, heads, 1+N+L, 1+N+L]; rows are queries, columns keys, each row sums to 1).

    The decoder runs as it is (its output is `decoder(latents)`, bit for bit); hooks record what
    each block's attention receives, and the weights are recomputed from that input. With `check`,
    the weights must reproduce each attention's output (the block may compute only some query rows:
    those rows are compared), else RuntimeError.
    """
    calls = []

    def before(module, args, kwargs):
        rows = args[1] if len(args) > 1 else kwargs.get("rows")
        calls.append({"module": module, "input": args[0], "rows": rows})

    def after(module, args, kwargs, output):
        calls[-1]["output"] = output

    handles = []
    for block in decoder.blocks:
        handles.append(block.attn.register_forward_pre_hook(before, with_kwargs=True))
        handles.append(block.attn.register_forward_hook(after, with_kwargs=True))
    try:
        out = decoder(latents)
    finally:
        for handle in handles:
            handle.remove()
    if len(calls) != len(decoder.blocks):
        raise RuntimeError(f"decoder attention: {len(calls)} attention calls for {len(decoder.blocks)} blocks; "
                           "the decoder no longer calls each block's attention once")
    weights = []
    for call in calls:
        h = call["input"]  # [B, S, W]: the block's ln1 output
        w, v = _softmax_weights(call["module"], h)  # [B, heads, S, S], [B, heads, S, W/heads]
        if check:
            used = w if call["rows"] is None else w[:, :, call["rows"]]  # [B, heads, R, S]
            B, heads, R, _ = used.shape
            again = call["module"].proj((used @ v).transpose(1, 2).reshape(B, R, h.shape[2]))
            if again.shape != call["output"].shape or not torch.allclose(again, call["output"], rtol=1e-4,
                                                                          atol=1e-5):
                raise RuntimeError("decoder attention: the recomputed softmax weights do not reproduce the "
                                   "block's attention output; alit.model.layers.Attention has changed")
        weights.append(w)
    return out, weights


def _softmax_weights(attn, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """softmax(q k^T / sqrt(D/heads)) and v of a packed-qkv attention module (rows q, k, v)."""
    B, S, D = h.shape
    heads = attn.heads
    qkv = attn.qkv(h).view(B, S, 3, heads, D // heads)  # [B, S, 3, h, D/h]
    q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each [B, h, S, D/h]
    scores = (q @ k.transpose(-2, -1)) * (D // heads) ** -0.5  # [B, h, S, S]
    return scores.softmax(-1), v


def default_layer(depth: int) -> int:
    """The block the paper's figures use (6 of 8), as a fraction of the depth."""
    return min(depth - 1, round(0.75 * depth))


@torch.no_grad()
def token_maps(tok, image: torch.Tensor, layer: int | str | None = None) -> dict:
    """Attention of the grid over each latent token, per iteration.

    image: [3, S, S] in [0, 1]. layer: block index, "mean" (over blocks) or None (default_layer).
    Returns {"maps": [per iteration: [L_t, G, G] float tensors, heads averaged], "layer": ...,
    "reconstructions": [per iteration [3, S, S] clamped], "lengths": [...]}.
    """
    depth = len(tok.decoder.blocks)
    if layer is None:
        layer = default_layer(depth)
    if layer != "mean" and not (isinstance(layer, int) and 0 <= layer < depth):
        raise AlitError(f"--layer must be a block index in 0..{depth - 1} or 'mean', got {layer!r}")
    device = next(tok.parameters()).device
    roll = tok.rollout(image[None].to(device))
    G, N = tok.config.grid_size, tok.config.num_image_tokens
    maps = []
    for latents in roll.latents:
        _, weights = decoder_attention(tok.decoder, latents)
        w = torch.stack(weights).mean(0) if layer == "mean" else weights[layer]  # [1, h, S, S]
        w = w[0].mean(0)  # heads averaged: [S, S]
        L = latents.shape[1]
        grid_to_token = w[1:1 + N, 1 + N:1 + N + L]  # [N, L]: query n's weight on latent j
        maps.append(grid_to_token.T.reshape(L, G, G).float().cpu())
    return {"maps": maps, "layer": layer, "lengths": roll.lengths,
            "reconstructions": [r[0].clamp(0, 1).cpu() for r in roll.reconstructions]}


def _heat(m: np.ndarray, size: int) -> np.ndarray:
    """A [G, G] map -> [size, size, 3] jet colours in [0, 1], min-max normalised."""
    pyplot()
    import matplotlib

    t = torch.from_numpy(m)[None, None].float()
    up = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False)[0, 0].numpy()
    lo, hi = up.min(), up.max()
    up = (up - lo) / (hi - lo) if hi > lo else np.zeros_like(up)
    return matplotlib.colormaps["jet"](up)[..., :3]


def _tile_grid(image: np.ndarray, maps: torch.Tensor, columns: int, tile: int) -> np.ndarray:
    """One overlay tile per token, in rows of `columns`, each labelled with its index -> uint8 [H, W, 3]."""
    L = maps.shape[0]
    rows = math.ceil(L / columns)
    pad = 2
    canvas = Image.new("RGB", (columns * (tile + pad) + pad, rows * (tile + pad) + pad), (255, 255, 255))
    base = np.asarray(Image.fromarray(image).resize((tile, tile), Image.BICUBIC), dtype=np.float64) / 255
    draw = ImageDraw.Draw(canvas)
    for j in range(L):
        blend = 0.6 * _heat(maps[j].numpy(), tile) + 0.4 * base  # the paper draws the image at alpha 0.4
        x, y = pad + (j % columns) * (tile + pad), pad + (j // columns) * (tile + pad)
        canvas.paste(Image.fromarray((blend * 255).round().astype(np.uint8)), (x, y))
        draw.rectangle([x, y, x + 6 * len(str(j)) + 3, y + 11], fill=(0, 0, 0))
        draw.text((x + 2, y), str(j), fill=(255, 255, 255))
    return np.asarray(canvas)


def _assignment(image: np.ndarray, maps: torch.Tensor, size: int) -> np.ndarray:
    """Each grid cell coloured by the token it attends to most (tab20 colours), over the image."""
    pyplot()
    import matplotlib

    owner = maps.argmax(0).numpy()  # [G, G]
    colours = matplotlib.colormaps["tab20"](owner % 20)[..., :3]  # [G, G, 3]
    colours = np.asarray(Image.fromarray((colours * 255).astype(np.uint8)).resize((size, size), Image.NEAREST),
                         dtype=np.float64) / 255
    base = np.asarray(Image.fromarray(image).resize((size, size), Image.BICUBIC), dtype=np.float64) / 255
    return ((0.55 * colours + 0.45 * base) * 255).round().astype(np.uint8)


def visualize(tok, image_path: str | Path, out: str | Path, layer: int | str | None = None,
              tile: int = 96, columns: int | None = None, progress: bool = True) -> dict:
    """Write input.png, per iteration t: iter<t>_attention.png (a tile per token),
    iter<t>_assignment.png, iter<t>_reconstruction.png, attention.npz and index.html.
    progress: a bar over the iterations on stderr when it is a terminal."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    image, _ = protocol("resize-crop").prepare(read_image(image_path, tok.config.image_size),
                                               tok.config.image_size)
    result = token_maps(tok, image, layer)
    L0 = tok.config.tokens_per_iter
    columns = columns or (L0 if L0 <= 16 else 16)
    pixels = (image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)  # [S, S, 3]
    save_png(image, out / "input.png")
    size = max(tok.config.image_size, 256)
    page = Page(f"alit visualize: {Path(image_path).name}")
    page.definitions([
        ("image", f"{image_path} (resize-crop to {tok.config.image_size} px)"),
        ("attention", f"decoder block {result['layer']} of {len(tok.decoder.blocks)}, heads averaged: the "
                      f"weight each of the {tok.config.grid_size} x {tok.config.grid_size} grid queries gives "
                      "each latent token, min-max normalised per token (jet: red = most)"),
        ("assignment", "each grid cell coloured by the token it attends to most"),
    ])
    page.figure("input.png", "input", width=size, pixelated=tok.config.image_size < 256)
    arrays = {}
    iterations = tracked(enumerate(zip(result["maps"], result["lengths"])), len(result["lengths"]),
                         "alit visualize", progress, unit="iteration")
    for t, (maps, L) in iterations:
        arrays[f"iter{t}"] = maps.numpy()
        Image.fromarray(_tile_grid(pixels, maps, columns, tile)).save(out / f"iter{t}_attention.png")
        Image.fromarray(_assignment(pixels, maps, size)).save(out / f"iter{t}_assignment.png")
        save_png(result["reconstructions"][t], out / f"iter{t}_reconstruction.png")
        page.heading(f"Iteration {t}: {L} tokens")
        page.figure(f"iter{t}_reconstruction.png", f"reconstruction from {L} tokens", width=size,
                    pixelated=tok.config.image_size < 256)
        page.figure(f"iter{t}_assignment.png", "most-attended token per grid cell", width=size)
        page.figure(f"iter{t}_attention.png", f"attention over the grid for tokens 0..{L - 1}")
    np.savez_compressed(out / "attention.npz", **arrays)
    info = {"image": str(image_path), "layer": result["layer"], "lengths": result["lengths"],
            "grid_size": tok.config.grid_size, "files": sorted(p.name for p in out.iterdir())}
    (out / "visualize.json").write_text(json.dumps(info, indent=1) + "\n")
    page.write(out / "index.html")
    return info
