"""benchmarks/export_default.py: the bundled model's export, its length rule calibrated on training
photos; what it reports is what the exported model then does on those photos."""
from __future__ import annotations

import json
import pytest
import torch
import torch.nn.functional as F

import alit
from alit.criteria import EightBit, first_accepted, parse_criterion
from alit.eval.inputs import batches, protocol
from alit.images import find_images, save_png
from alit.weights import save
from conftest import load_script


@pytest.mark.parametrize("rule, stall", [("l1", False), ("ssim", False), ("ssim", True)])
def test_export_reports_what_the_exported_rule_does(rule, stall, tmp_path, capsys):
    torch.manual_seed(0)
    tok = alit.build("tiny", image_size=32, base="vae", num_iters=4, latent_norm=True)
    save(tok.state_dict(), tok.config, tmp_path / "run")
    g = torch.Generator().manual_seed(1)
    (tmp_path / "photos").mkdir()
    for i in range(12):  # smooth to busy: the rule has something to tell apart
        size = 2 ** (1 + i % 4)
        save_png(F.interpolate(torch.rand(1, 3, size, size, generator=g), size=40, mode="bilinear")[0],
                 tmp_path / "photos" / f"p{i:02d}.png")
    load_script("export_default").main([str(tmp_path / "run"), "--data", str(tmp_path / "photos"), "--out", str(tmp_path / "out"),
                    "--rule", rule, *(["--stall"] if stall else [])])
    captured = capsys.readouterr()
    report = json.loads(captured.out)  # stdout is the report alone
    assert "latent_norm statistics recomputed over 12 training photos" in captured.err
    exported = alit.load(tmp_path / "out")
    spec = exported.config.criterion
    assert spec == report["criterion"] and spec.startswith(f"{rule}:")
    value = float(spec.split("+")[0].split(":")[1])
    assert spec.endswith(f"+gain:{report['gain']:g}") if stall else report["gain"] is None
    assert value == (report["threshold"] if rule == "l1" else pytest.approx(1 - report["threshold"], abs=1e-9))
    # the exported model, with its own rule judged on 8-bit reconstructions, gives the reported lengths
    proto = protocol("resize-crop")
    paths, _ = find_images([tmp_path / "photos"])
    chosen = []
    with torch.no_grad():
        for batch in batches(paths, 32, proto, 32):
            roll = exported.rollout(batch.images)
            recons = [proto.finish(r).double() for r in roll.reconstructions]
            index = first_accepted(EightBit(parse_criterion(spec)), batch.images.double(), recons)
            chosen += [exported.config.lengths[i] for i in index.tolist()]
    assert {L: chosen.count(L) for L in exported.config.lengths} == {int(k): v for k, v in
                                                                   report["chosen_histogram"].items()}
    assert sum(report["chosen_histogram"].values()) == 12 and len(set(chosen)) > 1
    assert -1 <= report["spearman_chosen_vs_png_bpp"]["rho"] <= 1


def test_the_calibration_chooses_lengths_as_the_library_rule_does():
    """export_default's numpy mirror of `alit.Stalled` (for the calibration's grid) against the
    library rule, on errors of four lengths; and the gain that spreads them most evenly."""
    script = load_script("export_default")
    images = torch.full((5, 3, 4, 4), 0.5)
    errors = torch.tensor([[0.30, 0.04, 0.03, 0.02], [0.30, 0.20, 0.198, 0.10], [0.30, 0.31, 0.20, 0.10],
                           [0.40, 0.35, 0.30, 0.25], [0.30, 0.29, 0.20, 0.10]], dtype=torch.float64)
    recons = [images.double() + errors[:, i, None, None, None] for i in range(4)]
    for threshold, gain in [(0.05, 0.01), (0.05, 0), (0.05, 0.06), (0.25, 0.02)]:
        library = first_accepted(alit.Stalled(alit.L1Below(threshold), gain), images.double(), recons)
        assert script.stalled_choice(errors.numpy(), threshold, gain).tolist() == library.tolist()
    # gains up to 0.002 choose [1, 3, 1, 3, 3]; from 0.0025 photo 1 stops where it gained 0.002:
    # [1, 2, 1, 3, 3], the more even spread, first reached at 0.0025
    assert script.spread_gain(errors.numpy(), 0.05) == 0.0025
