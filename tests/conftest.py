import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO / "tests" / "reference"  # the paper-code reference cases (tests/reference/NOTES.md)


def reference_tensors(path: Path) -> dict:
    """A reference file's tensors: `case / "outputs.pt"` reads case/outputs.safetensors (how the
    repository stores them) and falls back to the .pt itself."""
    from alit.verify import load_tensors, tensor_file

    found = tensor_file(path.parent, path.stem)
    if found is None:
        raise FileNotFoundError(path)
    return load_tensors(found)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="module")
def tok():
    """A random-weight `tiny` tokenizer (seed 0), one per test module; a module may define its own."""
    import alit

    torch.manual_seed(0)
    return alit.build("tiny")


@pytest.fixture(scope="module")
def images():
    """4 random images [4, 3, 64, 64] in [0, 1] (seed 1), the size of `tok`'s."""
    return torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(1))


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    """No test downloads from the internet (a missing metric weight or a paper model would be
    fetched otherwise); tests of downloads serve files on 127.0.0.1 and unset it."""
    monkeypatch.setenv("ALIT_OFFLINE", "1")


def run_alit(*args, **kwargs):
    """Run the CLI as a user does: `python -m alit ...`."""
    import subprocess

    return subprocess.run([sys.executable, "-m", "alit", *map(str, args)], capture_output=True,
                          text=True, **kwargs)


class ForwardCalls:
    """Counts a module's forward calls (the batch size of each) through a forward hook:
    `with ForwardCalls(module) as calls: ...; calls.batches`."""

    def __init__(self, module: torch.nn.Module):
        self.batches = []
        self.handle = module.register_forward_hook(lambda m, args, out: self.batches.append(args[0].shape[0]))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.handle.remove()


def load_script(name: str):
    """benchmarks/NAME.py imported as a module, for the tests of a benchmark script's functions."""
    import importlib.util

    path = REPO / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def held(cmd: list[str], hold: str) -> list[str]:
    """`python -m alit ...` run as `python -c HOLD ...`: the same command, whose child waits where HOLD
    says, so the parent's signal comes at one step on any machine, however loaded."""
    assert cmd[1:3] == ["-m", "alit"], cmd
    return [cmd[0], "-c", hold + "from alit.cli import main\nsys.exit(main(sys.argv[1:]))\n", *cmd[3:]]


# the child waits (until killed) once its first checkpoint is written
AFTER_FIRST_CHECKPOINT = (
    "import sys, time\nimport alit.train.loop as loop\nsave = loop.save\n"
    "def save_then_wait(run, step):\n    save(run, step)\n    while True:\n        time.sleep(1)\n"
    "loop.save = save_then_wait\n")


def kill_at_first_checkpoint(cmd: list[str], run: Path, env: dict) -> int:
    """Run `cmd` (a `python -m alit train ...`) held after its first checkpoint, SIGKILL it there,
    and return the step of that checkpoint."""
    import os
    import signal
    import subprocess
    import time

    from alit.train import checkpoint

    proc = subprocess.Popen(held(cmd, AFTER_FIRST_CHECKPOINT), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env=env)
    deadline = time.time() + 900  # only a guard against a hang: the verdict does not depend on speed
    try:
        while not checkpoint.checkpoints(run):  # poll until a checkpoint is complete
            assert proc.poll() is None, f"the run ended before a checkpoint: {proc.stderr.read().decode()}"
            assert time.time() < deadline, "no checkpoint within 900 s"
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    return checkpoint.checkpoints(run)[-1][0]


DEMO_PHOTOS = sorted((REPO / "src" / "alit" / "assets" / "demo_photos").glob("*.jpg"))


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    """A saved random-weight `tiny` tokenizer (seed 0), a folder for `--checkpoint`, one per session."""
    import alit
    from alit.weights import save

    torch.manual_seed(0)
    tok = alit.build("tiny")
    return save(tok.state_dict(), tok.config, tmp_path_factory.mktemp("model"))


def photo_folder(root: Path, n: int, in_sub: int, truncated: int) -> Path:
    """The first n demo photos, the first `in_sub` of them in root/sub, and broken.jpg: photo number
    `truncated` cut to its first 400 bytes (a JPEG no reader can finish)."""
    import shutil

    (root / "sub").mkdir()
    for i, p in enumerate(DEMO_PHOTOS[:n]):
        shutil.copy(p, root / ("sub" if i < in_sub else "") / p.name)
    (root / "broken.jpg").write_bytes(DEMO_PHOTOS[truncated].read_bytes()[:400])
    return root


def class_folders(root: Path, n: int = 12) -> Path:
    """The first n demo photos, alternately in the class folders root/a and root/b."""
    import shutil

    for i, p in enumerate(DEMO_PHOTOS[:n]):
        (root / "ab"[i % 2]).mkdir(exist_ok=True)
        shutil.copy(p, root / "ab"[i % 2] / p.name)
    return root
