"""Training objectives, kept apart from the architecture (STYLE principle 1)."""
from .distill import DISTILL_WEIGHTS, DistillLoss, distill_loss

__all__ = ["DISTILL_WEIGHTS", "DistillLoss", "distill_loss"]
