"""Issue 18: a dataset upload is bounded by what it becomes (decompressed bytes, rows, columns,
cells, dense size), checked while it is read; Parquet by its footer before it is read.

On main, pandas inferred the compression from the temp file's name and counted nothing: a
122 KB ``.csv.gz`` became 1,000,000 rows; a 480-byte Parquet file with a dictionary-encoded
column became 190 MiB; a CSV with 200,000 columns was accepted after 16.9 s.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import zipfile

import pyarrow as pa
import pyarrow.parquet as pq


def _post(client, headers, content: bytes, filename: str, **fields):  # noqa: ANN001, ANN202
    return client.post("/v1/datasets", headers=headers, files={"file": (filename, content)}, data=fields)


def _csv(rows: int, text: str = "the same words again and again") -> bytes:
    return ("text,label\n" + "".join(f"{text} {i % 7},{'ab'[i % 2]}\n" for i in range(rows))).encode()


def _refused(r, *words: str) -> None:  # noqa: ANN001
    assert r.status_code == 422, r.text
    message = r.json()["error"]["message"]
    assert all(word in message for word in words), message


def test_compressed_csv_counts_its_decompressed_bytes(make_client, auth_a) -> None:  # noqa: ANN001
    client = make_client(max_decompression_ratio=5)
    plain = _csv(3000)
    for name, packed in (("d.csv.gz", gzip.compress(plain)), ("d.csv.bz2", bz2.compress(plain)),
                         ("d.csv.xz", lzma.compress(plain))):
        assert len(plain) > 5 * len(packed)
        _refused(_post(client, auth_a, packed, name, format="csv"), "expands to more than", "5 times")
    client = make_client(max_dataset_bytes=50_000)
    _refused(_post(client, auth_a, gzip.compress(plain), "d.csv.gz", format="csv"), "50,000")


def test_an_honest_compressed_csv_is_read(make_client, auth_a) -> None:  # noqa: ANN001
    client = make_client()
    r = _post(client, auth_a, gzip.compress(_csv(300)), "d.csv.gz", format="csv")
    assert r.status_code == 201, r.text
    assert r.json()["rows"] == 300


def test_rows_columns_cells_and_memory_are_bounded_while_streaming(make_client, auth_a) -> None:  # noqa: ANN001
    client = make_client(max_dataset_rows=100, max_decompression_ratio=10_000)
    _refused(_post(client, auth_a, bz2.compress(_csv(1000)), "d.csv.bz2", format="csv"), "more than 100 rows")
    wide = (",".join(["text", "label"] + [f"c{i}" for i in range(300)]) + "\n" + "a,b" + ",x" * 300 + "\n").encode()
    _refused(_post(make_client(max_dataset_columns=50), auth_a, wide, "d.csv"), "302 columns", "50")
    jsonl = b'{"text": "a", "label": "b", "other": "' + b"x" * 5000 + b'"}\n'
    _refused(_post(make_client(max_text_chars=1000), auth_a, jsonl, "d.jsonl"), "5,000 characters")
    _refused(_post(make_client(max_dataset_memory_bytes=100_000), auth_a, _csv(2000), "d.csv"), "100,000 bytes")


def test_a_zipped_dataset_holds_one_file(make_client, auth_a) -> None:  # noqa: ANN001
    client = make_client()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("a.csv", _csv(50))
        zf.writestr("b.csv", _csv(50))
    _refused(_post(client, auth_a, buf.getvalue(), "d.csv.zip", format="csv"), "exactly one file")


def _parquet(table: pa.Table, **options) -> bytes:  # noqa: ANN003
    buf = io.BytesIO()
    pq.write_table(table, buf, **options)
    return buf.getvalue()


def test_parquet_is_judged_by_its_footer_and_its_dictionary_pages(make_client, auth_a) -> None:  # noqa: ANN001
    rows = 2000
    table = pa.table({"text": ["z" * 2000] * rows, "label": ["a", "b"] * (rows // 2)})
    small = _parquet(table, use_dictionary=True, compression="zstd")
    assert len(small) < 20_000  # 4 MB of text in a few kB
    _refused(_post(make_client(max_dataset_memory_bytes=1_000_000, max_decompression_ratio=10_000), auth_a, small,
                   "d.parquet"),
             "1,000,000 bytes in memory")
    _refused(_post(make_client(), auth_a, small, "d.parquet"), "bytes in memory")  # x100 its size
    _refused(_post(make_client(max_dataset_rows=500), auth_a, small, "d.parquet"), "2,000 rows")
    wide = pa.table({"text": ["a"], "label": ["b"], **{f"c{i}": [1] for i in range(100)}})
    _refused(_post(make_client(max_dataset_columns=50), auth_a, _parquet(wide), "d.parquet"), "102 columns")
    r = _post(make_client(max_decompression_ratio=10_000), auth_a, small, "d.parquet")
    assert r.status_code == 201 and r.json()["rows"] == rows, r.text


def test_damaged_compressed_and_binary_files_are_422(make_client, auth_a) -> None:  # noqa: ANN001
    """Found while fuzzing the bounded reader: a corrupt xz stream (LZMAError), a flipped gzip
    block (zlib.error), an encrypted zip member and random bytes (csv.Error) were 500s."""
    import os

    client = make_client()
    plain = _csv(200)
    flipped = bytearray(gzip.compress(plain))
    flipped[20:30] = bytes(10)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("a.csv", plain)
    encrypted = bytearray(buf.getvalue())
    encrypted[6] |= 1  # the "encrypted" flag, in the local header and the central directory entry
    encrypted[encrypted.rfind(b"PK\x01\x02") + 8] |= 1
    for name, content in (("d.csv.xz", lzma.compress(plain)[:40] + bytes(40)), ("d.csv.gz", bytes(flipped)),
                          ("d.csv.zip", bytes(encrypted)), ("d.csv", os.urandom(3000))):
        r = _post(client, auth_a, content, name, format="csv")
        assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_data", (name, r.text)


def test_the_worker_reads_a_compressed_upload_as_the_upload_check_did(make_client, auth_a) -> None:  # noqa: ANN001
    """The service stores an uploaded ``.csv.gz`` as ``data.csv``: the library (the worker, the CLI)
    judges compression by magic bytes too, so the stored file reads back."""
    from lelp.data.datasets import read_table

    client = make_client()
    r = _post(client, auth_a, gzip.compress(_csv(150)), "d.csv.gz", format="csv")
    assert r.status_code == 201, r.text
    stored = client.app.state.store.local_path(r.json()["uri"]) if "uri" in r.json() else None
    if stored is None:
        from app.db.models import Dataset

        with client.app.state.sessionmaker() as session:
            stored = client.app.state.store.local_path(session.get(Dataset, r.json()["id"]).uri)
    assert stored.name == "data.csv"
    assert len(read_table(stored)) == 150
