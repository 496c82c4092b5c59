"""Every mistake a user can make gets one clear line (issue 15), and the API conveniences it asked for.

Each test runs the CLI as a user does (`alit.cli.main`, or a subprocess where warnings or memory of
a fresh process matter) and checks the exit status, that stderr is one line (or the one warning
line), and that there is no traceback.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import alit
from alit.cli import main
from alit.criteria import EightBit, model_criterion
from alit.images import Preprocess, fit, read_image
from alit.scoring import to_8bit
from alit.weights import save

from conftest import REPO, run_alit

RNG = np.random.default_rng(0)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    """A tiny random model (VQGAN base) with its own rule, l1:0.3, in a checkpoint folder."""
    torch.manual_seed(0)
    tok = alit.build("tiny")
    return save(tok.state_dict(), tok.config.replace(criterion="l1:0.3"), tmp_path_factory.mktemp("ckpt") / "tiny")


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """A folder of three 96x72 photo-like PNGs (larger than the tiny model's 64x64)."""
    root = tmp_path_factory.mktemp("photos")
    yy, xx = np.mgrid[0:72, 0:96]
    for i in range(3):
        smooth = np.stack([xx * 3 + i * 20, yy * 4, 255 - xx * 2 - yy], -1)
        noisy = np.clip(smooth + RNG.normal(0, 12, smooth.shape), 0, 255).astype(np.uint8)
        Image.fromarray(noisy).save(root / f"p{i}.png")
    return root


def one_line(capsys, code, got, *fragments):
    """The command returned `code` and wrote exactly one line to stderr holding every fragment."""
    err = capsys.readouterr().err
    assert got == code, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for f in fragments:
        assert f in lines[0], (f, lines[0])
    return lines[0]


def commands(ckpt, photos, image, out):
    """Every command that runs a model, as argv ending where --device / --out can be added."""
    model = ["--checkpoint", str(ckpt)]
    return {
        "reconstruct": ["reconstruct", str(image), *model],
        "demo": ["demo", *model],
        "eval": ["eval", "--data", str(photos), *model],
        "analyze": ["analyze", "complexity", "--data", str(photos), *model],
        "probe": ["probe", "--data", str(photos), *model],
        "visualize": ["visualize", str(image), *model],
    }


# --- stack traces instead of one line ----------------------------------------------------------

@pytest.mark.parametrize("device", ["cuda", "cuda:7", "tpu", "mps", "xla"])
@pytest.mark.parametrize("command", ["reconstruct", "demo", "eval", "analyze", "probe", "visualize", "bench"])
def test_a_device_this_machine_lacks_is_one_line(device, command, ckpt, photos, tmp_path, capsys):
    if device.startswith("cuda") and torch.cuda.is_available():
        device = "cuda:99"  # on a GPU machine: an index it does not have
    if device == "mps" and torch.backends.mps.is_available():
        pytest.skip("this machine has MPS")
    argv = (["bench", "--checkpoint", str(ckpt)] if command == "bench"
            else commands(ckpt, photos, photos / "p0.png", tmp_path)[command] + ["--out", str(tmp_path / "o")])
    one_line(capsys, 2, main(argv + ["--device", device]), f"alit {command}: error: --device", device)


@pytest.mark.parametrize("command", ["reconstruct", "demo", "eval", "analyze", "probe", "visualize"])
def test_out_naming_an_existing_file_is_one_line(command, ckpt, photos, tmp_path, capsys):
    taken = tmp_path / "taken.txt"
    taken.write_text("a file\n")
    argv = commands(ckpt, photos, photos / "p0.png", tmp_path)[command] + ["--out", str(taken)]
    one_line(capsys, 2, main(argv), f"alit {command}: error: --out {taken}: is an existing file")
    assert taken.read_text() == "a file\n"


def test_out_that_cannot_be_made_is_one_line(ckpt, tmp_path, capsys):
    one_line(capsys, 2, main(["demo", "--checkpoint", str(ckpt), "--out", "/proc/nope"]),
             "alit demo: error: --out /proc/nope: cannot make this folder")
    inside_a_file = tmp_path / "f.txt"
    inside_a_file.write_text("")
    one_line(capsys, 2, main(["reconstruct", str(inside_a_file), "--checkpoint", str(ckpt),
                              "--out", str(inside_a_file / "sub")]), "--out", "cannot make this folder")


def test_bench_out_is_a_file_and_its_folder_must_exist(ckpt, tmp_path, capsys):
    one_line(capsys, 2, main(["bench", "--checkpoint", str(ckpt), "--out", str(tmp_path)]),
             "alit bench: error: --out", "is a folder")
    got = main(["bench", "--preset", "tiny", "--repeats", "1", "--out", str(tmp_path / "no" / "r.json")])
    err = capsys.readouterr().err
    assert got == 2 and "Traceback" not in err
    assert [line for line in err.splitlines() if "error" in line] == [
        f"alit bench: error: {tmp_path / 'no' / 'r.json'}: No such file or directory"]


def test_a_huge_image_is_shrunk_while_decoded_without_pillows_warning(ckpt, tmp_path):
    """9500 x 9500 (above Pillow's warning limit): no DecompressionBombWarning, well under 1 GB."""
    (tmp_path / "in").mkdir()
    big = tmp_path / "in" / "big.png"
    Image.new("RGB", (9500, 9500), (200, 120, 40)).save(big, compress_level=1)
    code = ("import resource, sys; from alit.cli import main; rc = main(sys.argv[1:]); "
            "print('maxrss_kb', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr); sys.exit(rc)")
    r = subprocess.run([sys.executable, "-c", code, "reconstruct", str(big), "--checkpoint", str(ckpt),
                        "--out", str(tmp_path / "out")], capture_output=True, text=True,
                       timeout=900)  # only a guard against a hang
    assert r.returncode == 0, r.stderr
    assert "DecompressionBomb" not in r.stderr and "Traceback" not in r.stderr
    rss_gb = int(re.search(r"maxrss_kb (\d+)", r.stderr).group(1)) / 2**20
    assert rss_gb < 1.5, rss_gb  # was 3.8 GB: the full image as float32 before the resize
    got = np.asarray(Image.open(tmp_path / "out" / "big" / "input.png"))
    assert got.shape == (64, 64, 3) and (got == [200, 120, 40]).all()
    # alit tokenize reads it the same way, and says nothing either
    r = subprocess.run([sys.executable, "-m", "alit", "tokenize", str(big.parent), "--out", str(tmp_path / "tokens"),
                        "--checkpoint", str(ckpt), "--num-tokens", "16", "--workers", "0", "--no-progress"],
                       capture_output=True, text=True, timeout=900)  # only a guard against a hang
    assert r.returncode == 0 and "warning" not in r.stderr.lower() and "Traceback" not in r.stderr, r.stderr


def test_shrinking_while_decoding_moves_pixels_by_about_one_8_bit_step(tmp_path):
    yy, xx = np.mgrid[0:900, 0:1200]
    smooth = np.stack([np.sin(xx / 37) * 100 + 120, np.cos(yy / 23) * 90 + 120, (xx + yy) % 255], -1)
    pixels = np.clip(smooth + RNG.normal(0, 20, smooth.shape), 0, 255).astype(np.uint8)
    for name, kwargs in (("a.png", {}), ("a.jpg", {"quality": 95})):
        Image.fromarray(pixels).save(tmp_path / name, **kwargs)
        full = to_8bit(fit(read_image(tmp_path / name), 64))  # the whole 1200 x 900 resized
        fast = alit.load_image(tmp_path / name, 64)            # reduced by 3 (PNG) / drafted (JPEG) first
        assert read_image(tmp_path / name, 64).shape[1] < 900  # it was shrunk
        assert (fast - full).abs().max() <= 3 / 255 and (fast - full).abs().mean() < 0.6 / 255


def test_a_decompression_bomb_is_one_line(ckpt, photos, tmp_path, capsys, monkeypatch):
    from PIL import Image as PILImage

    monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", 1000)  # 96x72 > 2 x 1000: Pillow refuses it
    got = main(["reconstruct", str(photos / "p0.png"), "--checkpoint", str(ckpt), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert got == 1 and "Traceback" not in err and "DecompressionBomb" not in err
    assert [line for line in err.splitlines() if "error:" in line][0].endswith(
        "p0.png: too large to read safely (Image size (6912 pixels) exceeds limit of 2000 pixels)")


# --- silently wrong or surprising ------------------------------------------------------------------

@pytest.mark.parametrize("command", ["eval", "analyze", "probe"])
@pytest.mark.parametrize("limit", ["-1", "0"])
def test_limit_below_one_is_one_line(command, limit, ckpt, photos, tmp_path, capsys):
    argv = commands(ckpt, photos, None, tmp_path)[command] + ["--out", str(tmp_path / "o"), "--limit", limit]
    one_line(capsys, 2, main(argv), f"alit {command}: error: --limit must be at least 1, got {limit}")
    assert not (tmp_path / "o").exists()  # refused before anything is written


def test_fashion_mnist_limit_below_one_is_one_line(tmp_path, capsys):
    one_line(capsys, 2, main(["data", "fashion-mnist", "--out", str(tmp_path), "--limit", "0"]),
             "--limit must be at least 1, got 0")


@pytest.mark.parametrize("command", ["reconstruct", "eval", "analyze", "probe", "demo"])
def test_batch_size_below_one_is_one_line(command, ckpt, photos, tmp_path, capsys):
    argv = commands(ckpt, photos, photos / "p0.png", tmp_path)[command] + ["--out", str(tmp_path / "o")]
    one_line(capsys, 2, main(argv + ["--batch-size", "0"]), f"alit {command}: error: --batch-size must be at least 1")


@pytest.mark.parametrize("argv, says", [(["--test-fraction", "1.5"], "--test-fraction must be between 0 and 1"),
                                        (["--weight-decay", "-1"], "--weight-decay must be 0 or more")])
def test_probe_ranges_are_one_line(argv, says, ckpt, photos, tmp_path, capsys):
    one_line(capsys, 2, main(commands(ckpt, photos, None, tmp_path)["probe"] + ["--out", str(tmp_path / "o"), *argv]),
             says)


@pytest.mark.parametrize("spec", ["psnr:-5", "psnr:0", "l1:1.5", "l1:1", "mse:2", "l1:-1", "conf:1.5", "code:-1",
                                  "l1:nan", "psnr:inf", "ssim:1.2"])
@pytest.mark.parametrize("command", ["reconstruct", "eval", "demo"])
def test_a_criterion_out_of_its_range_is_one_line(spec, command, ckpt, photos, tmp_path, capsys):
    argv = commands(ckpt, photos, photos / "p0.png", tmp_path)[command] + ["--out", str(tmp_path / "o")]
    one_line(capsys, 2, main(argv + ["--criterion", spec]), f"alit {command}: error: bad criterion {spec!r}")


@pytest.mark.parametrize("thresholds", ["1.5", "0.1,2", "-1", "0"])
def test_analyze_thresholds_out_of_range_are_one_line(thresholds, ckpt, photos, tmp_path, capsys):
    argv = commands(ckpt, photos, None, tmp_path)["analyze"] + ["--out", str(tmp_path / "o"), "--thresholds", thresholds]
    one_line(capsys, 2, main(argv), "alit analyze: error: --thresholds")


def test_every_criterion_class_checks_its_range():
    for make, bad in ((alit.PSNRAbove, [-5, 0, float("inf")]), (alit.L1Below, [-1, 0, float("nan")]),
                      (alit.MSEBelow, [0, -0.1]), (alit.ConfidenceAbove, [0, 1, 1.5]), (alit.CodeErrorBelow, [0, -1]),
                      (alit.SSIMAbove, [0, 1, -0.5, float("nan")])):
        for value in bad:
            with pytest.raises(ValueError):
                make(value)


def test_an_image_named_twice_is_read_once_and_said(ckpt, photos, tmp_path, capsys):
    image = photos / "p0.png"
    got = main(["reconstruct", str(image), str(image), "--checkpoint", str(ckpt), "--out", str(tmp_path / "o")])
    err = capsys.readouterr()
    assert got == 0 and "Traceback" not in err.err
    assert err.err.strip().splitlines() == [f"alit reconstruct: warning: {image}: given more than once; read once"]
    assert "1 image(s) reconstructed" in err.out
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["p0"]


@pytest.mark.parametrize("hw", [(1, 1), (3, 4), (40, 200)])
def test_an_image_smaller_than_the_model_gets_a_warning(hw, ckpt, tmp_path, capsys):
    small = tmp_path / "small.png"
    Image.fromarray((RNG.random((*hw, 3)) * 255).astype(np.uint8)).save(small)
    got = main(["reconstruct", str(small), "--checkpoint", str(ckpt), "--out", str(tmp_path / "o")])
    line = one_line(capsys, 0, got, "alit reconstruct: warning:", f"is {hw[1]}x{hw[0]} pixels",
                    "smaller than the model's 64x64: enlarged")
    assert str(small) in line


def test_an_animation_gets_a_warning_and_its_first_frame(ckpt, tmp_path, capsys):
    frames = [Image.new("RGB", (80, 80), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    spin = tmp_path / "spin.gif"
    frames[0].save(spin, save_all=True, append_images=frames[1:], duration=100, loop=0)
    got = main(["reconstruct", str(spin), "--checkpoint", str(ckpt), "--out", str(tmp_path / "o")])
    line = one_line(capsys, 0, got, "alit reconstruct: warning:", "is animated (3 frames)",
                    "only its first frame is read")
    assert str(spin) in line
    first = np.asarray(Image.open(tmp_path / "o" / "spin" / "input.png"))
    assert (first[..., 0] > 200).all() and (first[..., 1:] < 50).all()  # red: the first frame


def test_a_large_image_gets_no_warning(ckpt, photos, tmp_path, capsys):
    got = main(["reconstruct", str(photos / "p0.png"), "--checkpoint", str(ckpt), "--out", str(tmp_path / "o")])
    assert got == 0 and capsys.readouterr().err == ""


def test_eval_says_how_many_images_were_enlarged(ckpt, tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    for i, hw in enumerate([(4, 3), (70, 90)]):
        Image.fromarray((RNG.random((*hw, 3)) * 255).astype(np.uint8)).save(data / f"{i}.png")
    got = main(["eval", "--data", str(data), "--checkpoint", str(ckpt), "--out", str(tmp_path / "o"),
                "--lengths", "8"])
    err = capsys.readouterr().err
    assert got == 0 and "Traceback" not in err
    assert "alit eval: warning: 1 image(s) smaller than the model's 64x64 on a side were enlarged" in err


def test_a_folder_reads_what_pillow_reads_and_names_what_it_skips(ckpt, tmp_path, capsys):
    folder = tmp_path / "mixed"
    folder.mkdir()
    pixels = (RNG.random((64, 64, 3)) * 255).astype(np.uint8)
    Image.fromarray(pixels).save(folder / "anim.gif")
    Image.fromarray(pixels).save(folder / "UPPER.JPG", format="JPEG")
    Image.fromarray(pixels).save(folder / "frame.ppm")
    Image.fromarray(pixels).save(folder / "nosuffix", format="PNG")
    (folder / "notes.txt").write_text("not an image\n")
    (folder / ".DS_Store").write_bytes(b"\0")  # hidden: not mentioned
    got = main(["reconstruct", str(folder), "--checkpoint", str(ckpt), "--out", str(tmp_path / "o")])
    line = one_line(capsys, 0, got, "alit reconstruct: warning:", "skipped 2 file(s) without an image suffix",
                    "nosuffix", "notes.txt", "name a file directly")
    assert ".DS_Store" not in line
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["UPPER", "anim", "frame"]
    got = main(["reconstruct", str(folder / "nosuffix"), "--checkpoint", str(ckpt), "--out", str(tmp_path / "o2")])
    assert got == 0 and capsys.readouterr().err == ""  # named directly, it is read


def test_reconstruct_scores_8_bit_reconstructions_as_demo_and_eval(ckpt, photos, tmp_path, capsys):
    """One scoring rule: the table's L1 is that of the 8-bit reconstruction against the 8-bit input,
    the chosen length is the one the same rule picks, and `tok.encode(x)` picks the same."""
    tok = alit.load(ckpt)
    paths = sorted(photos.glob("*.png"))
    x = torch.stack([alit.load_image(p, 64) for p in paths])  # [3, 3, 64, 64]
    recons = [to_8bit(r) for r in tok.rollout(x).reconstructions]
    l1 = torch.stack([(r.double() - x.double()).abs().flatten(1).mean(1) for r in recons], 1)  # [3, T]
    threshold = float(l1[:, 2].median())  # the middle photo is accepted at its third length
    assert main(["reconstruct", *map(str, paths), "--checkpoint", str(ckpt), "--out", str(tmp_path / "o"),
                 "--criterion", f"l1:{threshold + 1e-9}"]) == 0
    rows = {r.split()[0]: r.split() for r in capsys.readouterr().out.splitlines() if r.startswith(str(photos))}
    rule = EightBit(alit.L1Below(threshold + 1e-9))
    chosen = tok.encode(x, criterion=rule).lengths.tolist()
    for j, p in enumerate(paths):
        row = rows[str(p)]
        assert [float(v) for v in row[2:-1]] == pytest.approx(l1[j].tolist(), abs=6e-5)  # printed to 4 places
        assert int(row[1]) == chosen[j]
    # with no --criterion: the model's own rule, as tok.encode(x) with no arguments applies it
    assert main(["reconstruct", *map(str, paths), "--checkpoint", str(ckpt), "--out", str(tmp_path / "p")]) == 0
    out = capsys.readouterr().out
    rows = {r.split()[0]: int(r.split()[1]) for r in out.splitlines() if r.startswith(str(photos))}
    assert [rows[str(p)] for p in paths] == tok.encode(x).lengths.tolist()
    assert "L1Below(0.3) on 8-bit reconstructions" in out


@pytest.mark.parametrize("command", ["reconstruct", "eval", "demo", "analyze"])
def test_help_states_the_8_bit_scoring_rule(command, capsys):
    with pytest.raises(SystemExit):
        main([command] + (["complexity"] if command == "analyze" else []) + ["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "8-bit" in text or "8 bits" in text


def test_visualize_offers_no_batch_size_or_limit(ckpt, tmp_path, capsys):
    for flag in ("--batch-size", "--limit"):
        with pytest.raises(SystemExit) as stop:
            main(["visualize", str(tmp_path / "a.png"), "--checkpoint", str(ckpt), flag, "0"])
        assert stop.value.code == 2
        line = one_line(capsys, 2, 2, "unrecognized arguments", flag)
        assert "see `alit" in line


def test_bench_takes_batch_size_as_every_command(capsys, tmp_path):
    with pytest.raises(SystemExit):
        main(["bench", "--help"])
    assert "--batch-size N" in capsys.readouterr().out
    one_line(capsys, 2, main(["bench", "--preset", "tiny", "--batch-size", "0"]), "--batch-size must be at least 1")
    assert main(["bench", "--preset", "tiny", "--batch-size", "2", "--repeats", "1",
                 "--out", str(tmp_path / "b.json")]) == 0
    assert json.loads((tmp_path / "b.json").read_text())["batch"] == 2


def test_a_pixel_free_criterion_works_on_reconstruct_and_a_vae_says_what_it_takes(ckpt, photos, tmp_path, capsys):
    assert main(["reconstruct", str(photos / "p0.png"), "--checkpoint", str(ckpt), "--out", str(tmp_path / "o"),
                 "--criterion", "conf:0.5"]) == 0
    assert "ConfidenceAbove(0.5)" in capsys.readouterr().out
    torch.manual_seed(0)
    vae = alit.build("tiny", base="vae")
    vae_ckpt = save(vae.state_dict(), vae.config, tmp_path / "vae")
    for command in (["reconstruct", str(photos / "p0.png")], ["eval", "--data", str(photos)], ["demo"]):
        got = main([*command, "--checkpoint", str(vae_ckpt), "--out", str(tmp_path / "v"), "--criterion", "conf:0.5"])
        one_line(capsys, 2, got, "criterion 'conf:0.5'", "VAE-based", "use code:T")


@pytest.mark.parametrize("command", ["reconstruct", "eval", "bench"])
def test_an_image_given_as_checkpoint_is_one_line(command, photos, tmp_path, capsys):
    image = photos / "p0.png"
    argv = {"reconstruct": ["reconstruct", str(image), "--out", str(tmp_path / "o")],
            "eval": ["eval", "--data", str(photos), "--out", str(tmp_path / "o")], "bench": ["bench"]}[command]
    line = one_line(capsys, 2, main(argv + ["--checkpoint", str(image)]), "an image, not a model")
    assert "alit convert" not in line


def test_weights_that_do_not_fit_the_config_name_the_checkpoint(ckpt, photos, tmp_path, capsys):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(ckpt, bad)
    meta = json.loads((bad / "config.json").read_text())
    meta["config"]["encoder_width"] *= 2
    meta["config"]["decoder_width"] *= 2
    (bad / "config.json").write_text(json.dumps(meta))
    one_line(capsys, 2, main(["reconstruct", str(photos / "p0.png"), "--checkpoint", str(bad),
                              "--out", str(tmp_path / "o")]), f"--checkpoint {bad}", "mis-shaped")


def test_usage_mistakes_are_one_line(capsys):
    for argv, says in ((["reconstruct"], "the following arguments are required"),
                       (["nope"], "invalid choice"), (["eval", "--data", "x", "--protocol", "z"], "invalid choice"),
                       (["reconstruct", "a.png", "--out", "o", "--batch-size", "x"], "invalid int value")):
        with pytest.raises(SystemExit) as stop:
            main(argv)
        assert stop.value.code == 2
        one_line(capsys, 2, 2, says, "--help")


# --- inference without autograd graphs ------------------------------------------------------------

def test_rollout_builds_no_graph_unless_training_or_asked():
    torch.manual_seed(0)
    tok = alit.build("tiny")  # eval mode
    x = torch.rand(2, 3, 64, 64)
    roll = tok.rollout(x)
    assert not roll.reconstructions[-1].requires_grad and not roll.latents[-1].requires_grad
    assert tok.rollout(x, grad=True).reconstructions[-1].requires_grad
    tok.train()
    assert tok.rollout(x, pixels=False).latents[-1].requires_grad  # training: graphs as before
    assert not tok.rollout(x, pixels=False, grad=False).latents[-1].requires_grad
    with torch.no_grad():
        assert not tok.rollout(x, pixels=False, grad=True).latents[-1].requires_grad  # no_grad wins


# --- the API a researcher reaches for --------------------------------------------------------------

def test_encode_without_arguments_uses_the_models_own_rule(ckpt):
    tok = alit.load(ckpt)
    x = torch.stack([torch.full((3, 64, 64), 0.2), torch.rand(3, 64, 64)])
    own = tok.encode(x)
    same = tok.encode(x, criterion=model_criterion(tok))
    assert torch.equal(own.lengths, same.lengths) and torch.equal(own.ids, same.ids)
    assert repr(model_criterion(tok)) == "L1Below(0.3) on 8-bit reconstructions"
    with pytest.raises(ValueError, match="not both"):
        tok.encode(x, num_tokens=8, criterion=alit.L1Below(0.1))


def test_load_image_and_the_preprocess_transform_are_the_commands_preprocessing(photos, ckpt, tmp_path, capsys):
    path = photos / "p1.png"
    x = alit.load_image(path, 64)
    assert x.shape == (3, 64, 64) and x.dtype == torch.float32
    assert torch.equal(x, (x * 255).round() / 255)  # on the 8-bit grid
    t = alit.Preprocess(64)
    pil = Image.open(path)
    array = np.asarray(pil.convert("RGB"))
    assert torch.equal(t(pil), x)
    assert torch.equal(t(array), x)
    assert torch.equal(t(torch.from_numpy(array.copy()).permute(2, 0, 1)), x)              # uint8 [3, H, W]
    assert torch.equal(t(torch.from_numpy(array.copy()).permute(2, 0, 1).float() / 255), x)  # float in [0, 1]
    # what `alit reconstruct` gave the model
    assert main(["reconstruct", str(path), "--checkpoint", str(ckpt), "--out", str(tmp_path / "o")]) == 0
    seen = torch.from_numpy(np.array(Image.open(tmp_path / "o" / "p1" / "input.png"))).permute(2, 0, 1) / 255
    assert torch.equal(seen.float(), x)
    for bad in (torch.rand(64, 64), torch.rand(3, 8, 8) * 2, "a.png", np.zeros((4, 4, 3), np.float32)):
        with pytest.raises(ValueError):
            t(bad)
    with pytest.raises(ValueError):
        Preprocess(0)


def test_version(capsys):
    r = run_alit("--version")
    assert r.returncode == 0 and r.stderr == ""
    text = (REPO / "pyproject.toml").read_text()
    version = re.search(r'^version = "([^"]+)"', text, re.M).group(1)
    assert r.stdout.strip() == f"alit {version}" == f"alit {alit.__version__}"


def test_licence_matches_pyproject():
    licence = (REPO / "LICENSE").read_text()
    assert licence.startswith("MIT License") and "Permission is hereby granted, free of charge" in licence
    assert 'license = { text = "MIT" }' in (REPO / "pyproject.toml").read_text()
    assert "demo_photos/SOURCES.txt" in licence  # the photos keep their own licences


def test_every_demo_photo_has_a_checked_licence():
    folder = REPO / "src" / "alit" / "assets" / "demo_photos"
    photos = sorted(p.name for p in folder.glob("*.jpg"))
    assert len(photos) == 48
    entries = {}
    for line in (folder / "SOURCES.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, rest = line.split(None, 1)
            entries[name] = rest
    assert sorted(entries) == photos
    for name, rest in entries.items():
        licence = re.search(r"licence: ([^;]+); copyright: ([^;]+); checked: (.+)$", rest)
        assert licence, (name, rest)
        spdx = licence.group(1).strip()
        # neither "NOT CLEARED" nor make_demo_photos.py's "UNCHECKED" for a new photo: every one is cleared
        assert spdx in {"GPL-2+", "GPL-3+", "GPL-3", "CC-BY-2.0", "CC-BY-3.0", "CC-BY-SA-2.0", "CC-BY-SA-3.0",
                        "CC-BY-SA-4.0", "CC0-1.0", "public-domain", "no-known-restrictions",
                        "Apache-2.0 AND BSD-3-Clause"}, (name, rest)
        assert "NOT per file" not in licence.group(3), (name, rest)


def test_my_modules_point_at_documents_that_exist():
    src = REPO / "src" / "alit"
    sections = set(re.findall(r"^#+ (\d\.\d)", (REPO / "docs" / "design.md").read_text(), re.M))
    for path in [*sorted(src.rglob("*.py")), *sorted((src / "configs").glob("*.yaml")),
                 *sorted((REPO / "benchmarks").glob("*.py"))]:
        text = path.read_text()
        assert "shared/" not in text and "DESIGN " not in text, path
        for section in re.findall(r"docs/design\.md,? (\d\.\d)", text):  # a pointer names a section there
            assert section in sections, (path, section)
    assert (REPO / "tests" / "reference" / "README.md").is_file()
