"""Samples into files: one PNG per sample and samples.json, a list with one record per sample
(`file`, `num_tokens`, `log_likelihood`, `length_log_likelihood`, `seconds`, `class`, `seed`,
`index`), as `alit generate` writes them."""
from __future__ import annotations

import json
from pathlib import Path

from ..files import atomic_write
from ..images import save_png
from .sample import Samples


def write_samples(samples: Samples, tok, out: str | Path, class_names: tuple[str, ...] = (),
                  batch_size: int = 32) -> list[dict]:
    """Decode `samples` with `tok` (their tokenizer) into OUT/sample-NNNN.png; write OUT/samples.json
    (class_names: the generator's, `config.classes`)."""
    out = Path(out)
    enc = samples.encoding
    digits = max(4, len(str(len(enc) - 1)))
    # a class id past the names is the null class: an unconditional sample
    classes = [class_names[c] if c < len(class_names) else None for c in samples.classes.tolist()]
    records = []
    for start in range(0, len(enc), batch_size):
        images = tok.decode(enc[start:start + batch_size])
        for j in range(images.shape[0]):
            i = start + j
            file = f"sample-{i:0{digits}d}.png"
            save_png(images[j], out / file)
            records.append({"file": file, "num_tokens": int(enc.lengths[i]),
                            "log_likelihood": float(samples.log_likelihood[i]),
                            "length_log_likelihood": float(samples.length_log_likelihood[i]),
                            "seconds": float(samples.seconds[i]), "class": classes[i], "seed": samples.seed,
                            "index": i})
    atomic_write(out / "samples.json", lambda tmp: tmp.write_text(json.dumps(records, indent=1) + "\n"))
    return records
