"""Image files reconstructed at every token length and at the one a criterion chooses, as PNGs.

Scored as `alit demo` and `alit eval` score: the input resized and centre-cropped to the model's size
on the 8-bit grid, each reconstruction clamped and rounded to 8 bits (as its PNG holds it), the rule
judging those in float64 (float32 on MPS), the same numbers the table prints.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from .criteria import first_accepted, needs_pixels
from .eval.inputs import Batch, Protocol, animated_warning, batches, protocol, upscale_warning
from .images import frame_count, save_png
from .progress import progress_bar
from .scoring import pixel_metrics, table_dtype


@dataclass(frozen=True)
class Reconstruction:
    path: Path          # the input file
    folder: str         # its folder under the output folder
    tokens: int         # the length the rule chose
    l1: list[float]     # 8-bit L1 at each of the model's lengths


def reconstruct_files(tok, folders: dict[Path, str], out: Path, rule, batch_size: int = 8,
                      on_error: Callable[[str], None] | None = None,
                      on_warning: Callable[[str], None] = lambda line: None,
                      progress: bool = True) -> list[Reconstruction]:
    """Write OUT/<folder>/input.png (as the model saw it), len<L>.png at every length L and chosen.png
    (the shortest length `rule`, from alit.criteria.parse_criterion, accepts; the longest when none does)
    for each file of `folders` (file -> its folder name). A file that cannot be read goes to
    on_error(message) and the others go on (None: it raises); an enlarged or animated image to on_warning(line)
    (`alit.progress.say` keeps a bar intact); progress: a bar on stderr when it is a terminal.
    Returns one Reconstruction per file written, in order."""
    proto, size = protocol("resize-crop"), tok.config.image_size
    done = []
    with progress_bar(len(folders), "alit reconstruct", progress) as bar:
        for batch in batches(list(folders), size, proto, batch_size, on_error=on_error, bar=bar):
            for path, hw in batch.upscaled:
                on_warning(upscale_warning(path, hw, size))
            for path in batch.paths:
                frames = frame_count(path)  # a header read: only where the warning is given
                if frames > 1:
                    on_warning(animated_warning(path, frames))
            done += _reconstruct_batch(tok, batch, proto, rule, folders, out)
    return done


def _reconstruct_batch(tok, batch: Batch, proto: Protocol, rule, folders: dict[Path, str],
                       out: Path) -> list[Reconstruction]:
    device = next(tok.parameters()).device
    lengths = tok.config.lengths
    images = batch.images.to(device)  # [b, 3, S, S] on the 8-bit grid
    roll = tok.rollout(images)
    recons = [proto.finish(r) for r in roll.reconstructions]  # per length: [b, 3, S, S], 8-bit
    wide = table_dtype(device)  # the rule sees the table's numbers
    inputs, scored = images.to(wide), [r.to(wide) for r in recons]
    chosen = first_accepted(rule, inputs, scored if needs_pixels(rule) else roll).tolist()  # [b]
    l1 = torch.stack([pixel_metrics(inputs, r)["l1"] for r in scored], 1).tolist()  # [b, T]
    done = []
    for j, path in enumerate(batch.paths):
        folder = out / folders[path]
        folder.mkdir(parents=True, exist_ok=True)
        save_png(images[j], folder / "input.png")
        for i, L in enumerate(lengths):
            save_png(recons[i][j], folder / f"len{L:03d}.png")
        save_png(recons[chosen[j]][j], folder / "chosen.png")
        done.append(Reconstruction(path, folders[path], lengths[chosen[j]], l1[j]))
    return done
