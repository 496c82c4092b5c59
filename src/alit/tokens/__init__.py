"""A data set into tokens and back: `alit tokenize` (`job.py`) writes Parquet parts, `TokenDataset`
reads them for training, `--mean-tokens` spends a data set's token budget (`budget.py`)."""
from .dataset import TokenDataset

__all__ = ["TokenDataset"]
