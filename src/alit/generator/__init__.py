"""Generating images on adaptive-length tokens: a length-aware autoregressive transformer over the
ids `alit tokenize` writes, p(L | c) p(ids | L, c) (`model.py`), trained on token folders
(`data.py`, `train.py`), sampled into `alit.Encoding`s (`sample.py`), evaluated (`evaluate.py`)."""
from .data import Batch, GeneratorData
from .generator import Generator, load_generator
from .model import PRESETS, GeneratorConfig, generator_config
from .sample import Samples, SamplingOptions
from .train import TrainOptions, config_for, train_generator

__all__ = ["Batch", "Generator", "GeneratorConfig", "GeneratorData", "PRESETS", "Samples", "SamplingOptions",
           "TrainOptions", "config_for", "generator_config", "load_generator", "train_generator"]
