"""Read and validate tabular text datasets (CSV, TSV, JSONL, Parquet).

Everything here is plain pandas so that the API process can validate an upload
without importing torch. Every problem a user can cause becomes a ``DataError``
with a message that names the file, the column or the row.
"""

from __future__ import annotations

import hashlib
import json
import lzma
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from lelp.data.bounded import TableLimits, is_compressed, read_frame_bounded
from lelp.data.splits import HOLD_OUT_MINIMUM, split_sizes
from lelp.errors import ConfigError, DataError

if TYPE_CHECKING:
    import numpy as np

FORMATS = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl",
           ".json": "jsonl", ".parquet": "parquet", ".pq": "parquet"}


@dataclass
class TextDataset:
    texts: list[str]
    text_pairs: list[str] | None
    labels: list[str | None]  # label names as strings; None marks an unlabelled (transfer) row
    sha256: str
    columns: list[str]

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def labelled_rows(self) -> int:
        return sum(label is not None for label in self.labels)


def detect_format(path: str | Path, declared: str | None = None) -> str:
    if declared:
        fmt = declared.lower().lstrip(".")
        if fmt not in set(FORMATS.values()):
            raise DataError(f"unknown data format {declared!r}; use csv, tsv, jsonl or parquet", param="format")
        return fmt
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise DataError(
            f"cannot tell the format of {Path(path).name!r} from its extension; "
            "use .csv, .tsv, .jsonl or .parquet",
            param="file",
        )
    return FORMATS[suffix]


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _read_frame(path: Path, fmt: str, limits: TableLimits | None = None):
    import pandas as pd

    try:
        # compression is judged by magic bytes, never by name: the service stores an uploaded
        # .csv.gz as data.csv, and the worker must read what the upload check read
        if limits is not None or (fmt != "parquet" and is_compressed(path)):
            return read_frame_bounded(path, fmt, limits or TableLimits())
        if fmt in ("csv", "tsv"):
            return pd.read_csv(path, sep="," if fmt == "csv" else "\t", dtype=str, keep_default_na=False,
                               na_values=[""], encoding="utf-8", engine="c", compression=None)
        if fmt == "jsonl":
            return pd.read_json(path, lines=True, dtype=False, encoding="utf-8", compression=None)
        return pd.read_parquet(path)
    except UnicodeDecodeError as exc:
        raise DataError(f"{path.name}: not valid UTF-8 text (byte {exc.start}); save the file as UTF-8",
                        param="file") from None
    except pd.errors.EmptyDataError:
        raise DataError(f"{path.name}: the file is empty", param="file") from None
    except (pd.errors.ParserError, ValueError, json.JSONDecodeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{path.name}: cannot parse as {fmt}: {first}", param="file") from None
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error, lzma.LZMAError) as exc:  # damaged gz/bz2/xz/zip
        raise DataError(f"{path.name}: cannot read as {fmt}: {str(exc)[:200]}", param="file") from None


def _column(frame, name: str, role: str, path: Path) -> list:
    if name not in frame.columns:
        found = ", ".join(map(str, frame.columns)) or "none"
        raise DataError(f"{path.name}: no column {name!r} for the {role} (columns found: {found}); "
                        f"pass --{role.replace(' ', '-')}-column", param=f"{role.replace(' ', '_')}_column")
    return frame[name].tolist()


def _as_text(values: list, role: str, path: Path, max_text_chars: int | None) -> list[str]:
    out: list[str] = []
    for i, value in enumerate(values):
        if value is None or (isinstance(value, float) and value != value):
            raise DataError(f"{path.name}: row {i + 1} has an empty {role}", param=f"{role}_column")
        text = value if isinstance(value, str) else str(value)
        if max_text_chars is not None and len(text) > max_text_chars:
            raise DataError(f"{path.name}: row {i + 1}: the {role} has {len(text):,} characters, "
                            f"over the limit of {max_text_chars:,}", param=f"{role}_column")
        out.append(text)
    return out


def _as_label(value) -> str | None:
    if value is None or (isinstance(value, float) and value != value):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value).strip()
    return text or None


def read_table(
    path: str | Path,
    *,
    text_column: str = "text",
    text_pair_column: str | None = None,
    label_column: str | None = "label",
    max_text_chars: int | None = None,
    max_rows: int | None = None,
    format: str | None = None,
    limits: TableLimits | None = None,
) -> TextDataset:
    """Read a dataset; rows with an empty label are kept as unlabelled transfer rows.

    ``limits`` bounds what the file becomes while it is read (``lelp.data.bounded``): the
    service passes them for every upload; a local CLI run may leave them out.

    A missing label column is only allowed when ``label_column`` is None: a typo in the
    column name should not silently turn a labelled set into an unlabelled one.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file not found: {path}", param="file")
    if path.stat().st_size == 0:
        raise DataError(f"{path.name}: the file is empty", param="file")
    fmt = detect_format(path, format)
    frame = _read_frame(path, fmt, limits)
    if len(frame) == 0:
        raise DataError(f"{path.name}: the file has a header but no rows", param="file")
    if max_rows is not None and len(frame) > max_rows:
        raise DataError(f"{path.name}: {len(frame):,} rows, over the limit of {max_rows:,}", param="file")
    texts = _as_text(_column(frame, text_column, "text", path), "text", path, max_text_chars)
    pairs = None
    if text_pair_column:
        pairs = _as_text(_column(frame, text_pair_column, "text pair", path), "text_pair", path, max_text_chars)
    labels: list[str | None] = [None] * len(texts)
    if label_column:
        labels = [_as_label(v) for v in _column(frame, label_column, "label", path)]
    choice = json.dumps([text_column, text_pair_column, label_column])
    sha = hashlib.sha256((file_sha256(path) + choice).encode()).hexdigest()
    return TextDataset(texts=texts, text_pairs=pairs, labels=labels, sha256=sha,
                       columns=[str(c) for c in frame.columns])


def label_counts(dataset: TextDataset) -> dict[str, int]:
    return dict(sorted(Counter(label for label in dataset.labels if label is not None).items()))


def label_matcher(label_names: Sequence[str]) -> Callable[[str], int | None]:
    """``label -> class index or None``: the one rule for reading a label (the API's submit check uses it too).

    Names win; then names in any case (``Positive`` is ``positive``); then integers
    ``0..C-1`` read as indices when they are not names themselves, so ``0/1`` files work
    with teachers whose labels are ``negative/positive``.
    """
    by_name = {name: i for i, name in enumerate(label_names)}
    by_lower: dict[str, int] = {}
    for i, name in enumerate(label_names):
        by_lower.setdefault(name.lower(), i)
    count = len(label_names)

    def index(label: str) -> int | None:
        if label in by_name:
            return by_name[label]
        if label.lower() in by_lower:
            return by_lower[label.lower()]
        if label.lstrip("-").isdigit() and 0 <= int(label) < count:
            return int(label)
        return None

    return index


def encode_labels(labels: Sequence[str | None], label_names: Sequence[str], *, source: str = "data") -> list[int]:
    """Map label names (or integer ids) to class indices (``label_matcher``); None becomes -1 (unlabelled)."""
    index = label_matcher(label_names)
    out: list[int] = []
    unknown: Counter[str] = Counter()
    for label in labels:
        found = None if label is None else index(label)
        if found is None and label is not None:
            unknown[label] += 1
        out.append(-1 if found is None else found)
    if unknown:
        shown = ", ".join(repr(k) for k, _ in unknown.most_common(5))
        raise DataError(f"{source}: unknown label(s) {shown}; the teacher's labels are "
                        f"{list(label_names)} (or their indices 0..{len(label_names) - 1})", param="label_column")
    return out


def split_rows(labels: np.ndarray, fraction: float, seed: int, minimum: int = HOLD_OUT_MINIMUM
               ) -> tuple[np.ndarray, np.ndarray]:
    """A seeded held-out split, of the labelled rows when there are enough of them.

    With too few labelled rows (unlabelled transfer data) the split is drawn from all rows and
    the held-out rows are scored against the teacher's argmax (agreement) instead of labels.
    The sizes are ``lelp.data.splits.split_sizes``'s, which the API's submit checks read too.
    """
    import numpy as np  # numpy only here: reading a table stays plain pandas

    rng = np.random.default_rng(seed)
    sizes = split_sizes(len(labels), int(np.count_nonzero(labels >= 0)), fraction, minimum)
    if sizes is None:
        raise ConfigError(f"{len(labels)} rows are too few to hold out a split; add rows or pass an eval file",
                          param="train_path")
    pool = np.flatnonzero(labels >= 0) if sizes.from_labelled else np.arange(len(labels))
    held = np.sort(rng.choice(pool, size=sizes.held, replace=False))
    return np.setdiff1d(np.arange(len(labels)), held), held
