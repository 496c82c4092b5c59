"""One precision switch for the API and every command: "fp32", "tf32", "bf16" or "fp16".

| name | matmuls and convolutions in float32 | autocast |
| --- | --- | --- |
| fp32 | exact (TF32 off for cuBLAS and cuDNN) | off |
| tf32 | TF32 on CUDA (Ampere and later); exact elsewhere | off |
| bf16 | exact where autocast keeps float32 | bfloat16 |
| fp16 | exact where autocast keeps float32 | float16 (training adds a loss scaler) |

Weights stay as they are under every name (`alit.load(..., dtype=)` casts them instead). Whatever
the name, what decides a discrete outcome runs in exact float32 (`exact_float32`): nearest-code
distances and their argmin, in the latent quantiser and in the base VQGAN's targets. None leaves
the caller's own context (autocast, TF32 flags) as it is.
"""
from __future__ import annotations

import contextlib

import torch

PRECISIONS = ("fp32", "tf32", "bf16", "fp16")
AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}
_ALIASES = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16", "half": "fp16",
            torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}


def check_precision(precision: str | torch.dtype | None) -> str | None:
    """A precision name (or None), from a name or its torch dtype; ValueError for anything else."""
    if isinstance(precision, str):
        precision = precision.lower()
    if precision is None or precision in PRECISIONS:
        return precision
    name = _ALIASES.get(precision)
    if name is None:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)} (or torch.float32 / "
                         f"torch.bfloat16 / torch.float16), got {precision!r}")
    return name


def autocast_dtype(precision: str | None) -> torch.dtype | None:
    """The autocast dtype of a precision (None for fp32 and tf32)."""
    return AUTOCAST.get(check_precision(precision))


def _tf32_flags() -> tuple[str, str]:
    return torch.backends.cuda.matmul.fp32_precision, torch.backends.cudnn.conv.fp32_precision


def _set_tf32_flags(flags: tuple[str, str]) -> None:
    # the fp32_precision API (torch >= 2.9): mixing it with the legacy allow_tf32 flags is an error
    torch.backends.cuda.matmul.fp32_precision, torch.backends.cudnn.conv.fp32_precision = flags


@contextlib.contextmanager
def tf32(enabled: bool):
    """TF32 for float32 matmuls (cuBLAS) and convolutions (cuDNN) on or off inside, restored after."""
    before = _tf32_flags()
    _set_tf32_flags(("tf32", "tf32") if enabled else ("ieee", "ieee"))
    try:
        yield
    finally:
        _set_tf32_flags(before)


def set_precision(precision: str) -> None:
    """Set the TF32 flags of a precision for the whole process (training runs do so at start)."""
    _set_tf32_flags(("tf32", "tf32") if check_precision(precision) == "tf32" else ("ieee", "ieee"))


@contextlib.contextmanager
def compute_in(precision: str | torch.dtype | None, device: torch.device | str):
    """Compute in a precision inside (see the module docstring); None: the caller's context as it is."""
    precision = check_precision(precision)
    if precision is None:
        yield
        return
    device_type = torch.device(device).type
    amp = AUTOCAST.get(precision)
    with tf32(precision == "tf32"), torch.autocast(device_type, dtype=amp or torch.float32, enabled=amp is not None):
        yield


@contextlib.contextmanager
def exact_float32(device_type: str):
    """Exact float32 inside, whatever the caller's autocast or TF32: for decisions such as argmin."""
    if device_type == "cuda":
        with torch.autocast(device_type, enabled=False), tf32(False):
            yield
    else:
        with torch.autocast(device_type, enabled=False):
            yield


def nearest_code(z: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """Id of the nearest row of codes [K, C] to each row of z [M, C] (squared L2 distance), computed
    in exact float32 under any precision: in bf16 the distances tie and flip the argmin."""
    with exact_float32(z.device.type):
        z, codes = z.float(), codes.float()
        dist = z.pow(2).sum(1, keepdim=True) + codes.pow(2).sum(1) - 2 * z @ codes.t()  # [M, K]
        return dist.argmin(1)
