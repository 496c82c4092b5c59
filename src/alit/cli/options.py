"""Options that several commands share, each written once."""
from __future__ import annotations

from ..precision import PRECISIONS

PRECISION_HELP = ("arithmetic precision (default fp32): fp32 exact float32 (TF32 off); tf32 float32 matmuls "
                  "and convolutions in TF32 on CUDA (Ampere and later; exact elsewhere); bf16 / fp16 autocast. "
                  "The weights stay float32 and token ids are always chosen in exact float32")


def add_precision_arg(parser, default: str = "fp32") -> None:
    """--precision fp32|tf32|bf16|fp16 (`alit.precision`)."""
    parser.add_argument("--precision", choices=PRECISIONS, default=default, help=PRECISION_HELP)
