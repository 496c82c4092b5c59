"""How tests/reference/ was made: the paper-code reference cases, re-stored as safetensors.

    python tests/reference/from_shared.py SRC   # SRC: the reference folder of the project's shared files

Every `.pt` file of a case (plain dicts of tensors, read with torch.load(weights_only=True)) is
written as `.safetensors` with the same keys, dtypes, shapes and values (checked bit for bit after
writing); the JSON files and the official key manifests are copied as they are. The source README,
which describes every file and key, is README.md here. Nothing else is changed.
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

HERE = Path(__file__).resolve().parent


def restore(src: Path, dst: Path) -> None:
    for case in sorted(p for p in src.iterdir() if p.is_dir()):
        out = dst / case.name
        out.mkdir(parents=True, exist_ok=True)
        for f in sorted(case.iterdir()):
            if f.suffix == ".pt":
                tensors = torch.load(f, weights_only=True)
                tensors = {k: v.detach().clone().contiguous() for k, v in tensors.items()}
                target = out / f"{f.stem}.safetensors"
                save_file(tensors, target, metadata={"source": f"{case.name}/{f.name}"})
                back = load_file(target)
                assert back.keys() == tensors.keys() and all(
                    back[k].dtype == v.dtype and torch.equal(back[k], v) for k, v in tensors.items()), target
            elif f.suffix in (".json", ".md", ".txt"):
                shutil.copyfile(f, out / f.name)
    shutil.copyfile(src / "README.md", dst / "README.md")


if __name__ == "__main__":
    restore(Path(sys.argv[1]), HERE)
