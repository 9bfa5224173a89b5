"""Read a table while bounding what it becomes, before a whole dataframe exists.

A 122 KB ``.csv.gz`` and a 5 KB ``.csv.bz2`` each became 1,000,000 rows (pandas infers the
compression from the name and counted nothing), a 480-byte Parquet file with one
dictionary-encoded column became 190 MiB of dense strings, and a CSV with 200,000 columns
took 16.9 s to parse. So every read here is bounded by ``TableLimits``:

- compressed input (gzip, bz2, xz, a one-member zip: recognised by magic bytes, never by
  name) is decompressed by us through a counter: at most ``max_bytes`` and at most
  ``max_ratio`` times the file's own size;
- the CSV/TSV header is read alone first (``max_columns``) before pandas sees the file;
- CSV/TSV/JSONL are parsed in chunks: rows, columns, each cell's length and the dense size
  (characters + ``CELL_OVERHEAD`` per cell) are counted chunk by chunk and the read stops
  at the first limit passed;
- Parquet is judged from its footer first (num_rows, columns, row groups' uncompressed
  sizes), then read in small batches with the same counts (dictionary pages expand here);
  its dense size is bounded by ``max_ratio`` times the file's size too.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import io
import lzma
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from lelp.errors import DataError

#: bytes a pandas object cell costs beside its characters (a PyUnicode header and a pointer)
CELL_OVERHEAD = 56
CHUNK_ROWS = 20_000
PARQUET_BATCH_ROWS = 1_024
HEADER_MAX_BYTES = 1 << 20
EOCD = b"PK\x05\x06"


@dataclass(frozen=True)
class TableLimits:
    """The most a dataset may become once read (None: no limit)."""

    max_rows: int | None = None
    max_columns: int | None = None
    max_cell_chars: int | None = None
    max_bytes: int | None = None  # decompressed
    max_ratio: float | None = None  # decompressed / compressed
    max_memory_bytes: int | None = None  # dense in-memory estimate


def _too_big(path: Path, what: str) -> DataError:
    return DataError(f"{path.name}: {what}", param="file")


class _Counted(io.RawIOBase):
    """A read-only stream that fails once more than ``cap`` bytes came through it."""

    def __init__(self, inner: BinaryIO, cap: int | None, path: Path, why: str) -> None:
        self.inner, self.cap, self.path, self.why, self.count = inner, cap, path, why, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.inner.read(len(buffer))
        self.count += len(data)
        if self.cap is not None and self.count > self.cap:
            raise _too_big(self.path, f"expands to more than {self.cap:,} bytes ({self.why})")
        buffer[:len(data)] = data
        return len(data)

    def close(self) -> None:
        self.inner.close()
        super().close()


def _zip_entries(path: Path) -> int:
    """The entry count of the zip's end-of-central-directory record, read without parsing the directory."""
    with path.open("rb") as fh:
        fh.seek(0, 2)
        size = fh.tell()
        fh.seek(max(0, size - 65_557))
        tail = fh.read()
    at = tail.rfind(EOCD)
    if at < 0 or len(tail) - at < 22:
        raise _too_big(path, "not a readable zip file")
    return struct.unpack("<H", tail[at + 10:at + 12])[0]


MAGICS = (b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00", b"PK\x03\x04")


def is_compressed(path: Path) -> bool:
    """gzip, bz2, xz or zip, by the file's first bytes."""
    with path.open("rb") as fh:
        head = fh.read(6)
    return head.startswith(MAGICS)


def open_decompressed(path: Path, limits: TableLimits) -> tuple[BinaryIO, bool]:
    """The file's bytes, decompressed when its magic bytes say so, counted against the limits."""
    with path.open("rb") as fh:
        head = fh.read(6)
    size = path.stat().st_size
    compressed = True
    if head.startswith(b"\x1f\x8b"):
        inner: BinaryIO = gzip.open(path, "rb")
    elif head.startswith(b"BZh"):
        inner = bz2.open(path, "rb")
    elif head.startswith(b"\xfd7zXZ\x00"):
        inner = lzma.open(path, "rb")
    elif head.startswith(b"PK\x03\x04"):
        if _zip_entries(path) != 1:
            raise _too_big(path, "a zipped dataset must hold exactly one file")
        try:
            archive = zipfile.ZipFile(path)
            inner = archive.open(archive.infolist()[0])
        except (zipfile.BadZipFile, RuntimeError, NotImplementedError, OSError) as exc:  # encrypted, deflate64
            raise _too_big(path, f"cannot read the zipped file: {str(exc)[:120]}") from None
    else:
        inner, compressed = path.open("rb"), False
    caps = []
    if limits.max_bytes is not None:
        caps.append((limits.max_bytes, f"the limit is {limits.max_bytes:,}"))
    if compressed and limits.max_ratio is not None:
        caps.append((int(limits.max_ratio * size), f"{limits.max_ratio:g} times its compressed size"))
    cap, why = min(caps) if caps else (None, "")
    return io.BufferedReader(_Counted(inner, cap, path, why), 1 << 16), compressed


class _Tally:
    """Rows, cells and dense bytes seen so far, against the limits."""

    def __init__(self, path: Path, limits: TableLimits) -> None:
        self.path, self.limits, self.rows, self.memory = path, limits, 0, 0

    def columns(self, count: int) -> None:
        if self.limits.max_columns is not None and count > self.limits.max_columns:
            raise _too_big(self.path, f"{count:,} columns, over the limit of {self.limits.max_columns:,}")

    def add(self, rows: int, chars: int, cells: int) -> None:
        limits = self.limits
        self.rows += rows
        self.memory += chars + CELL_OVERHEAD * cells
        if limits.max_rows is not None and self.rows > limits.max_rows:
            raise _too_big(self.path, f"more than {limits.max_rows:,} rows, over the limit of {limits.max_rows:,}")
        if limits.max_memory_bytes is not None and self.memory > limits.max_memory_bytes:
            raise _too_big(self.path, f"would take more than {limits.max_memory_bytes:,} bytes in memory")

    def longest(self, column: str, longest: int, row: int) -> None:
        """``row``: the 1-based data row of the longest cell of ``column`` in this chunk."""
        cap = self.limits.max_cell_chars
        if cap is not None and longest > cap:
            raise _too_big(self.path, f"row {self.rows + row}: column {column[:100]!r} has {longest:,} "
                                      f"characters, over the limit of {cap:,}")

    def frame(self, frame) -> None:  # noqa: ANN001 - a pandas DataFrame
        self.columns(len(frame.columns))
        chars = 0
        for name in frame.columns:
            values = frame[name]
            lengths = (values.str.len() if values.dtype == object else values.astype(str).str.len()).fillna(0)
            if len(lengths):
                chars += int(lengths.sum())
                at = int(lengths.to_numpy().argmax())
                self.longest(str(name), int(lengths.iloc[at]), at + 1)
        self.add(len(frame), chars, len(frame) * len(frame.columns))


def _header_columns(stream: BinaryIO, sep: str, path: Path) -> int:
    line = stream.peek(HEADER_MAX_BYTES)[:HEADER_MAX_BYTES]
    end = line.find(b"\n")
    if end < 0 and len(line) >= HEADER_MAX_BYTES:
        raise _too_big(path, f"the header line is longer than {HEADER_MAX_BYTES:,} bytes")
    first = line[:end if end >= 0 else len(line)].decode("utf-8", errors="replace").rstrip("\r")
    try:
        return len(next(csv.reader([first], delimiter=sep), []))
    except csv.Error:  # not a CSV line (binary, a stray carriage return): count the separators, pandas judges
        return first.count(sep) + 1


def read_frame_bounded(path: Path, fmt: str, limits: TableLimits):  # noqa: ANN201 - a pandas DataFrame
    """The whole table as a DataFrame, refused (``DataError``) at the first limit it passes."""
    import pandas as pd

    tally = _Tally(path, limits)
    if fmt == "parquet":
        return _read_parquet(path, tally)
    stream, _ = open_decompressed(path, limits)
    with stream:
        if fmt in ("csv", "tsv"):
            sep = "," if fmt == "csv" else "\t"
            tally.columns(_header_columns(stream, sep, path))
            reader = pd.read_csv(stream, sep=sep, dtype=str, keep_default_na=False, na_values=[""],
                                 encoding="utf-8", engine="c", chunksize=CHUNK_ROWS)
        else:
            reader = pd.read_json(stream, lines=True, dtype=False, encoding="utf-8", chunksize=CHUNK_ROWS)
        chunks = []
        with reader:
            for chunk in reader:
                tally.frame(chunk)
                chunks.append(chunk)
    if not chunks:
        raise pd.errors.EmptyDataError("no rows")
    return pd.concat(chunks, ignore_index=True) if len(chunks) > 1 else chunks[0]


def _read_parquet(path: Path, tally: _Tally):  # noqa: ANN202
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    limits = tally.limits
    if limits.max_ratio is not None:  # Parquet compresses inside (dictionary pages, codecs): the same ratio
        cap = int(limits.max_ratio * path.stat().st_size)
        if limits.max_memory_bytes is None or cap < limits.max_memory_bytes:
            from dataclasses import replace

            limits = tally.limits = replace(limits, max_memory_bytes=cap)
    parquet = pq.ParquetFile(path)
    meta = parquet.metadata
    tally.columns(meta.num_columns)
    if limits.max_rows is not None and meta.num_rows > limits.max_rows:
        raise _too_big(path, f"{meta.num_rows:,} rows, over the limit of {limits.max_rows:,}")
    declared = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
    if limits.max_memory_bytes is not None and declared > limits.max_memory_bytes:
        raise _too_big(path, f"would take more than {limits.max_memory_bytes:,} bytes in memory "
                             f"(its row groups say {declared:,} uncompressed)")
    batches = []
    for batch in parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS):
        chars = 0
        for name, column in zip(batch.schema.names, batch.columns, strict=True):
            if pa.types.is_dictionary(column.type) or pa.types.is_string(column.type) or \
                    pa.types.is_large_string(column.type) or pa.types.is_binary(column.type):
                if pa.types.is_dictionary(column.type):
                    column = column.cast(column.type.value_type)
                length = pc.binary_length if pa.types.is_binary(column.type) else pc.utf8_length
                lengths = length(column)
                chars += int(pc.sum(lengths).as_py() or 0)
                most = pc.max(lengths).as_py()
                if most is not None:
                    tally.longest(name, int(most), int(pc.index(lengths, most).as_py()) + 1)
            else:
                chars += column.nbytes
        tally.add(batch.num_rows, chars, batch.num_rows * batch.num_columns)
        batches.append(batch)
    schema = parquet.schema_arrow
    table = pa.Table.from_batches(batches, schema=schema) if batches else schema.empty_table()
    return table.to_pandas()
