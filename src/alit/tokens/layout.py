"""The files of a token folder, named so that dataset readers open the folder as it is.

    DIR/part-NNNNNN.parquet   the rows (`table.py`)
    DIR/_index.json           the model, how lengths were chosen, counts, speed (once every part is written)
    DIR/_skipped.jsonl        the images that could not be read, with the reason
    DIR/_state/               the run's options and a record per finished part (what a rerun resumes from)

alit's own files begin with an underscore, the convention of Spark's `_SUCCESS` and Parquet's
`_metadata`, which pyarrow (so pandas) skips: `pd.read_parquet(DIR)`, `pq.read_table(DIR)`, DuckDB's
`read_parquet('DIR/*.parquet')` and `datasets.load_dataset("parquet", data_files="DIR/*.parquet")`
read the parts alone.

A folder written before this layout (index.json, skipped.jsonl and .alit-tokenize/ beside the parts)
is still read by `TokenDataset` and `alit decode`, and a rerun finishes it in its own layout.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

OLDER_STATE = ".alit-tokenize"


@dataclass(frozen=True)
class Layout:
    root: Path
    index: Path      # the index, written last: a folder with one is complete
    skipped: Path    # one JSON line per image that could not be read
    state: Path      # the run's options.json and per-part records
    older: bool      # the layout of folders written before the underscore names

    def part(self, number: int) -> Path:
        return self.root / part_name(number)


def layout(root: str | Path) -> Layout:
    """The file names of the token folder `root`: the current layout, or the older one when the
    folder holds an older run's files."""
    root = Path(root)
    if (root / OLDER_STATE).is_dir() or (root / "index.json").is_file():
        return Layout(root, root / "index.json", root / "skipped.jsonl", root / OLDER_STATE, older=True)
    return Layout(root, root / "_index.json", root / "_skipped.jsonl", root / "_state", older=False)


def part_name(number: int) -> str:
    return f"part-{number:06d}.parquet"
