import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO.parent / "shared" / "reference"


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def run_alit(*args, **kwargs):
    """Run the CLI as a user does: `python -m alit ...`."""
    import subprocess

    return subprocess.run([sys.executable, "-m", "alit", *map(str, args)], capture_output=True,
                          text=True, **kwargs)
