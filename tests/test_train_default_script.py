"""benchmarks/train_default_cpu.sh, run for real on 70 generated photos, to an exported model and a
demo, each stage cut to 4 steps (about 4 minutes on 2 cores; `pytest -m slow`)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import REPO


def write_photos(folder, count=70, size=160):
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size] / size
    for i in range(count):
        f = rng.uniform(1, 8, 3)
        img = np.stack([np.sin(f[c] * (xx * np.cos(c + i) + yy * np.sin(c + i)) * np.pi) for c in range(3)], -1)
        img = 0.5 + 0.4 * img + 0.1 * rng.standard_normal((size, size, 3))
        Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8)).save(folder / f"photo_{i:03d}.png")


def last_step(run):
    lines = (run / "log.jsonl").read_text().splitlines()
    return max(json.loads(line)["step"] for line in lines if line.strip())


@pytest.mark.slow
def test_default_path_in_one_command(tmp_path):
    """The one command as the README gives it, each stage cut to a few steps: base,
    stage 1 and stage 2 on the default recipes (bf16 autocast, square crops, error feedback, the
    late-weighted cycle), stage 2's low-lr leg from its export, then the export and the demo."""
    work, export = tmp_path / "work", tmp_path / "export"
    write_photos(work / "photos" / "train")
    short = "max_time=null max_steps=4"
    env = dict(os.environ, EXPORT=str(export), PYTHON=sys.executable, BASE_SET=short, DISTILL_SET=short,
               FINETUNE_SET=short)
    proc = subprocess.run(["bash", str(REPO / "benchmarks" / "train_default_cpu.sh"), str(work)], env=env,
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert {name: last_step(work / name) for name in ("base", "distill", "finetune", "leg")} == \
        {"base": 4, "distill": 4, "finetune": 4, "leg": 4}
    for name in ("base", "distill", "finetune", "leg"):
        recipe = (work / name / "recipe.yaml").read_text()
        assert "precision: bf16" in recipe and "crop_ratio:\n- 1.0\n- 1.0" in recipe, name
    assert "crop_scale:\n- 0.25\n- 1.0" in (work / "finetune" / "recipe.yaml").read_text()
    assert "iterations trained in turn: [0, 1, 2, 3, 4, 5, 6, 7, 5, 6, 7, 6, 7, 7]" in \
        (work / "finetune" / "train.log").read_text()
    leg = (work / "leg" / "recipe.yaml").read_text()  # the leg starts from stage 2's export, at low lr
    assert "lr: 6.0e-05" in leg and f"init: {work / 'finetune' / 'export'}" in leg, leg
    config = json.loads((export / "config.json").read_text())["config"]
    assert config["error_feedback"] and config["criterion"].startswith("ssim:")
    summary = json.loads((work / "demo" / "summary.json").read_text())
    assert len(summary["images"]) == 48 and summary["criterion"] == config["criterion"]
