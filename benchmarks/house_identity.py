"""Fingerprints of what alit computes, to show a refactoring changed no output (issue #34).

Runs, with the installed `alit` command: the reference cases, the bundled model's demo, a tokenize run
of the demo photos at a fixed length and by the model's rule, and a seeded three-stage training run of
a tiny model (base -> distill -> finetune, a few steps each). Prints one JSON object of SHA-256 digests;
two checkouts give the same object exactly when these outputs are identical.

    python benchmarks/house_identity.py > before.json   # then, after the change:
    python benchmarks/house_identity.py | diff before.json -
"""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from PIL import Image
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[1]
ALIT = [sys.executable, "-m", "alit"]
TINY = ("model_overrides={image_size: 16, num_iters: 4, encoder_width: 64, decoder_width: 64, encoder_heads: 2, "
        "decoder_heads: 2, encoder_depth: 1, decoder_depth: 1, base: {latent_channels: 16}}")
SMALL = [TINY, "batch_size=4", "workers=0", "warmup=0", "image_every=2", "checkpoint_every=2"]


def run(*args: str) -> str:
    done = subprocess.run([*ALIT, *args], capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"alit {' '.join(args)} failed:\n{done.stderr[-2000:]}")
    return done.stdout


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def weights_digest(folder: Path) -> str:
    files = sorted(folder.rglob("*.safetensors"))
    newest = max(files, key=lambda f: f.stat().st_mtime)
    state = load_file(newest)
    return digest(b"".join(k.encode() + state[k].contiguous().numpy().tobytes() for k in sorted(state)))


def tokens_digest(folder: Path) -> str:
    table = pq.read_table(sorted(folder.glob("part-*.parquet"))).sort_by("key").to_pylist()
    return digest(json.dumps(table, default=str).encode())


def photos(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for i in range(6):
        x = np.linspace(0, 1, 48)
        img = np.stack([np.outer(x, x) * rng.uniform(0.3, 1), np.outer(x[::-1], x) * rng.uniform(0.3, 1),
                        rng.uniform(0, 1, (48, 48)) * 0.3], -1)
        Image.fromarray((img * 255).astype(np.uint8)).save(root / f"{i}.png")
    return root


def main() -> None:
    out: dict[str, str] = {}
    refs = sorted(str(p) for p in (ROOT / "tests/reference").glob("*_tiny"))
    run("verify-reference", *refs)
    out["verify_reference"] = "passed"
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        run("demo", "--out", str(tmp / "demo"))
        summary = json.loads((tmp / "demo/summary.json").read_text())
        out["demo_summary"] = digest(json.dumps(summary, sort_keys=True).encode())
        demo_photos = ROOT / "src/alit/assets/demo_photos"
        run("tokenize", str(demo_photos), "--out", str(tmp / "fixed"), "--num-tokens", "64", "--no-progress")
        out["tokenize_fixed_64"] = tokens_digest(tmp / "fixed")
        run("tokenize", str(demo_photos), "--out", str(tmp / "rule"), "--no-progress")
        out["tokenize_rule"] = tokens_digest(tmp / "rule")
        (tmp / "photos").mkdir()
        data = photos(tmp / "photos")
        common = ["--data", str(data), "--no-progress", "--set", *SMALL]
        run("train", "base", "--config", "tiny", "--out", str(tmp / "base"), "--max-steps", "2",
            *common, "gan.schedule=[[0, 0.5]]", "gan.channels=8")
        out["train_base"] = weights_digest(tmp / "base")
        run("train", "distill", "--config", "tiny", "--out", str(tmp / "distill"), "--max-steps", "3",
            "--base", str(tmp / "base"), *common)
        out["train_distill"] = weights_digest(tmp / "distill")
        run("train", "finetune", "--config", "tiny", "--out", str(tmp / "finetune"), "--max-steps", "3",
            "--init", str(tmp / "distill"), *common, "gan.schedule=[[1, 0.2]]", "gan.channels=8")
        out["train_finetune"] = weights_digest(tmp / "finetune")
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
