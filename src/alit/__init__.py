"""alit: adaptive-length image tokenization via recurrent allocation (ALIT, ICLR 2025)."""
from .config import BaseConfig, ModelConfig
from .criteria import (CodeErrorBelow, ConfidenceAbove, CriterionInput, L1Below, MSEBelow, PSNRAbove, SSIMAbove,
                       Stalled)
from .criteria.task import TaskAgrees
from .encoding import Encoding
from .errors import AlitError
from .generator import load_generator
from .images import Preprocess, load_image
from .model.alit import Rollout
from .model.halting import Halting
from .presets import PRESETS, preset
from .tokenizer import AdaptiveTokenizer, build, load
from .tokens import TokenDataset

__version__ = "0.1.0"
__all__ = ["AdaptiveTokenizer", "AlitError", "BaseConfig", "CodeErrorBelow", "ConfidenceAbove", "CriterionInput",
           "Encoding", "Halting", "L1Below", "MSEBelow", "ModelConfig", "PRESETS", "PSNRAbove", "Rollout", "SSIMAbove",
           "Stalled", "TaskAgrees", "TokenDataset", "Preprocess", "build", "load", "load_generator", "load_image", "preset"]
