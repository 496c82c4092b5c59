"""What several commands share, each written once: their options, the checks on them, their tables."""
from __future__ import annotations

import os
from pathlib import Path

from ..criteria import parse_criterion
from ..errors import AlitError
from ..eval.inputs import PROTOCOLS
from ..precision import PRECISIONS

PRECISION_HELP = ("arithmetic precision (default fp32): fp32 exact float32 (TF32 off); tf32 float32 matmuls "
                  "and convolutions in TF32 on CUDA (Ampere and later; exact elsewhere); bf16 / fp16 autocast. "
                  "The weights stay float32 and token ids are always chosen in exact float32")
CHECKPOINT_HELP = ("model folder (model.safetensors + config.json), 'default' for the bundled model (the default), "
                   "a paper model (paper/NAME, downloaded on first use) or hf:ORG/NAME; `alit models` lists the names")
DEVICE_HELP = "torch device (default: cuda if available, else cpu)"
CRITERION_HELP = ("l1:T (8-bit L1 below T, the paper's rule), psnr:DB, mse:T, ssim:S, judged on the 8-bit "
                  "reconstruction, or the pixel-free conf:P (VQGAN-based models), code:T (default: the model's "
                  "own, l1:0.07 for the paper's models). A pixel rule can add +gain:G: a length is also good "
                  "enough once its block of tokens gained less than G (e.g. ssim:0.48+gain:0.001)")


def add_precision_arg(parser, default: str | None = "fp32") -> None:
    """--precision fp32|tf32|bf16|fp16 (`alit.precision`)."""
    parser.add_argument("--precision", choices=PRECISIONS, default=default, help=PRECISION_HELP)


def add_model_args(parser, batch_size: int | None) -> None:
    """--checkpoint (the bundled model by default), --device, --precision and --batch-size (unless
    batch_size is None: a one-image command) of a command that runs a model."""
    add_checkpoint_arg(parser)
    add_device_arg(parser)
    add_precision_arg(parser)
    if batch_size is not None:
        add_batch_size_arg(parser, batch_size)


def add_checkpoint_arg(parser) -> None:
    parser.add_argument("--checkpoint", metavar="CKPT", default="default", help=CHECKPOINT_HELP)


def add_device_arg(parser, help: str = DEVICE_HELP) -> None:
    parser.add_argument("--device", default=None, help=help)


def add_batch_size_arg(parser, default: int, metavar: str = "N", what: str = "images per forward pass") -> None:
    parser.add_argument("--batch-size", type=int, default=default, metavar=metavar, help=f"{what} (default {default})")


def add_limit_arg(parser, help: str = "use only the first N images") -> None:
    parser.add_argument("--limit", type=int, default=None, metavar="N", help=help)


def add_criterion_arg(parser, what: str) -> None:
    """--criterion NAME:VALUE, the rule that picks a length per image; `what` says what it picks here."""
    parser.add_argument("--criterion", default=None, metavar="NAME:VALUE", help=f"{what}: {CRITERION_HELP}")


def add_protocol_arg(parser, help: str) -> None:
    parser.add_argument("--protocol", choices=tuple(PROTOCOLS), default="resize-crop", help=help)


def add_out_arg(parser, default: str | None = None, metavar: str = "DIR") -> None:
    """--out, the output folder: required unless it has a default."""
    help = "output folder" if default is None else f"output folder (default {default})"
    parser.add_argument("--out", required=default is None, default=default, metavar=metavar, help=help)


def add_progress_arg(parser) -> None:
    """--no-progress: no bar on stderr (there is none anyway when stderr is not a terminal)."""
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress bar (none is drawn anyway when stderr is not a terminal)")


def check_criterion(spec: str | None, tok=None) -> None:
    """A bad rule as a one-line AlitError: before the model loads (tok None), or against the model
    (e.g. conf: needs a VQGAN-based model). Nothing to check when no rule was given."""
    if spec is not None:
        parse_criterion(spec, tok)


def output_folder(path, flag: str = "--out") -> Path:
    """The output folder, made now: a one-line AlitError when it cannot be (a file, no permission)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise AlitError(f"{flag} {path}: is an existing file, not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise AlitError(f"{flag} {path}: cannot make this folder ({e.strerror or e})") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise AlitError(f"{flag} {path}: this folder is not writable")
    return path


def at_least(value, low: int, flag: str) -> None:
    """A one-line AlitError when an integer option is below its smallest meaningful value."""
    if value is not None and value < low:
        raise AlitError(f"{flag} must be at least {low}, got {value}")


def integer(text: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise AlitError(f"{what} takes an integer, got {text!r}") from None


def print_table(table: list[list[str]]) -> None:
    """Rows of strings in columns: the first left-aligned, the others right-aligned."""
    widths = [max(len(r[c]) for r in table) for c in range(len(table[0]))]
    for r in table:
        print("  ".join(v.ljust(w) if c == 0 else v.rjust(w) for c, (v, w) in enumerate(zip(r, widths))))


def num(value) -> str:
    """A table cell for a number that may be missing."""
    return "n/a" if value is None else f"{value:.4g}"
