"""Every command that can take more than a few seconds draws a progress bar when stderr is a
terminal (a real pseudo-terminal here, from the `pty` module), none with --no-progress, and none
when stderr is a pipe. The verdicts read the text the terminal got (the bar's name, its 100%), never
how long anything took."""
from __future__ import annotations

import contextlib
import fcntl
import os
import pty
import re
import struct
import sys
import termios
import threading

import pytest

from alit.cli import main
from test_eval_support import make_checkpoint, one_thread, write_images, write_labelled  # noqa: F401


@contextlib.contextmanager
def stderr_on(kind: str, monkeypatch):
    """sys.stderr on a pseudo-terminal of 100 x 30 (kind "terminal"), one that reports no size
    ("unsized terminal") or a pipe for the block; yields the bytes it received, complete once the
    block is left (a thread reads them, so a long output never blocks a write)."""
    if kind.endswith("terminal"):
        reading, writing = pty.openpty()
        if kind == "terminal":
            fcntl.ioctl(writing, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    else:
        reading, writing = os.pipe()
    received = bytearray()

    def read() -> None:
        while True:
            try:
                data = os.read(reading, 65536)
            except OSError:  # EIO: the terminal's other side was closed
                return
            if not data:
                return
            received.extend(data)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    stream = os.fdopen(writing, "w", buffering=1)
    assert stream.isatty() == kind.endswith("terminal")
    with monkeypatch.context() as m:
        m.setattr(sys, "stderr", stream)
        try:
            yield received
        finally:
            stream.close()
            reader.join(timeout=60)  # only a guard against a hang: the reader ends at the close
            os.close(reading)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("progress")
    ckpt = make_checkpoint(root / "ckpt")
    write_images(root / "images", n=3)
    write_images(root / "other", n=3, seed=1, offset=0.5)
    write_labelled(root / "labelled", per_class=3)
    assert main(["probe", "--data", str(root / "labelled"), "--out", str(root / "probe"), "--lengths", "64",
                 "--checkpoint", str(ckpt), "--save", str(root / "probe.safetensors")]) == 0  # a task model
    return root, ckpt


BAR_REDRAW = re.compile("\r(?!\n)")  # a bar redraws its line; the terminal ends every line with \r\n

# each long command (its bar's name first), on the tiny random-weight checkpoint
COMMANDS = {
    "alit reconstruct": lambda r, out: ["reconstruct", r / "images", "--out", out],
    "alit eval": lambda r, out: ["eval", "--data", r / "images", "--out", out, "--lengths", "8,64"],
    "alit analyze complexity": lambda r, out: ["analyze", "complexity", "--data", r / "images", "--out", out,
                                               "--thresholds", "0.2"],
    "alit analyze familiarity: other": lambda r, out: ["analyze", "familiarity", "--data", r / "images", "--other",
                                                       r / "other", "--out", out, "--thresholds", "0.2"],
    "alit probe: test images": lambda r, out: ["probe", "--data", r / "labelled", "--out", out, "--lengths", "8,64"],
    "alit analyze task": lambda r, out: ["analyze", "task", "--data", r / "labelled", "--out", out, "--task-model",
                                         r / "probe.safetensors"],
    "alit visualize": lambda r, out: ["visualize", r / "images" / "img01.png", "--out", out],
    "alit demo": lambda r, out: ["demo", "--out", out, "--criterion", "l1:0.2", "--batch-size", "48"],
}


def run(argv: list[str], kind: str, monkeypatch) -> str:
    """`alit ARGV` as `main` runs it, with stderr on a terminal or a pipe: what stderr received."""
    with stderr_on(kind, monkeypatch) as received:
        assert main(argv) == 0
    return received.decode(errors="replace")


@pytest.mark.parametrize("name", COMMANDS)
def test_a_bar_on_a_terminal_and_none_with_no_progress(name, inputs, tmp_path, monkeypatch, one_thread):
    root, ckpt = inputs
    argv = [str(a) for a in COMMANDS[name](root, tmp_path / "out")] + ["--checkpoint", str(ckpt)]
    text = run(argv, "terminal", monkeypatch)
    assert f"{name}: 100%|" in text, text[-2000:]  # the bar, counted to the end
    if name != "alit demo":  # (48 photos: its flag is the same one line as the others')
        text = run(argv + ["--no-progress", "--out", str(tmp_path / "quiet")], "terminal", monkeypatch)
        assert "%|" not in text and not BAR_REDRAW.search(text), text[-2000:]


def test_a_bar_on_a_terminal_that_reports_no_width(inputs, tmp_path, monkeypatch, one_thread):
    """tqdm draws nothing on a terminal of 0 columns: the bar takes 80 there."""
    root, ckpt = inputs
    argv = [str(a) for a in COMMANDS["alit reconstruct"](root, tmp_path / "out")] + ["--checkpoint", str(ckpt)]
    assert "alit reconstruct: 100%|" in run(argv, "unsized terminal", monkeypatch)


@pytest.mark.parametrize("name", ["alit reconstruct", "alit eval"])
def test_no_bar_into_a_pipe(name, inputs, tmp_path, monkeypatch, one_thread):
    root, ckpt = inputs
    argv = [str(a) for a in COMMANDS[name](root, tmp_path / "out")] + ["--checkpoint", str(ckpt)]
    text = run(argv, "pipe", monkeypatch)
    assert "%|" not in text and "\r" not in text, text[-2000:]
