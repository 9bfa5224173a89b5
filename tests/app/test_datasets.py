"""Dataset uploads: formats, counts, checksum, and every validation error with its body."""

from __future__ import annotations

import hashlib
import io

import pandas as pd
import pytest

from tests.tiny import make_text_rows


def _post(client, headers, content: bytes, filename: str, **fields):  # noqa: ANN001, ANN202
    return client.post("/v1/datasets", headers=headers, files={"file": (filename, content)}, data=fields)


def test_csv_upload_reports_counts_and_checksum(client, auth_a, train_csv_bytes) -> None:  # noqa: ANN001
    r = _post(client, auth_a, train_csv_bytes, "train.csv", name="train")
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["id"].startswith("ds_") and body["name"] == "train"
    assert body["rows"] == 160 and body["labelled_rows"] == 160
    assert body["label_counts"] == {"negative": 80, "positive": 80}
    assert body["columns"] == ["text", "label"]
    assert body["sha256"] == hashlib.sha256(train_csv_bytes).hexdigest()
    assert body["format"] == "csv" and body["size_bytes"] == len(train_csv_bytes)
    stored = client.app.state.store.list_files(f"datasets/{body['id']}")
    assert stored == ["data.csv"]
    assert client.get(f"/v1/datasets/{body['id']}", headers=auth_a).json() == body


def _frame(rows: int = 20) -> pd.DataFrame:
    return pd.DataFrame(make_text_rows(rows, seed=3))


@pytest.mark.parametrize("fmt", ["tsv", "jsonl", "parquet"])
def test_other_formats(client, auth_a, fmt) -> None:  # noqa: ANN001
    frame, buf = _frame(), io.BytesIO()
    if fmt == "tsv":
        frame.to_csv(buf, sep="\t", index=False)
    elif fmt == "jsonl":
        frame.to_json(buf, orient="records", lines=True)
    else:
        frame.to_parquet(buf)
    r = _post(client, auth_a, buf.getvalue(), f"data.{fmt}")
    assert r.status_code == 201, r.text
    assert r.json()["rows"] == 20 and r.json()["format"] == fmt
    assert r.json()["label_counts"] == {"negative": 10, "positive": 10}


def test_unlabelled_and_partly_labelled(client, auth_a) -> None:  # noqa: ANN001
    r = _post(client, auth_a, b"text\nhello there\ngood day\n", "transfer.csv", label_column="")
    assert r.status_code == 201, r.text
    assert r.json()["labelled_rows"] == 0 and r.json()["label_column"] is None and r.json()["label_counts"] == {}
    r = _post(client, auth_a, b"text,label\nhello,positive\ngood day,\n", "mixed.csv")
    assert r.status_code == 201, r.text
    assert r.json()["rows"] == 2 and r.json()["labelled_rows"] == 1


def test_custom_columns_and_pairs(client, auth_a) -> None:  # noqa: ANN001
    content = b"premise,hypothesis,y\na cat,an animal,yes\na dog,a car,no\n"
    r = _post(client, auth_a, content, "nli.csv", text_column="premise", text_pair_column="hypothesis",
              label_column="y")
    assert r.status_code == 201, r.text
    assert r.json()["text_pair_column"] == "hypothesis" and r.json()["label_counts"] == {"no": 1, "yes": 1}


ERRORS = {
    "missing_text_column": (b"sentence,label\nhi,positive\n", "d.csv", {}, 422, "invalid_data", "text_column"),
    "missing_label_column": (b"text,y\nhi,positive\n", "d.csv", {}, 422, "invalid_data", "label_column"),
    "empty_file": (b"", "d.csv", {}, 422, "invalid_data", "file"),
    "header_only": (b"text,label\n", "d.csv", {}, 422, "invalid_data", "file"),
    "non_utf8": ("text,label\ncaf\u00e9,positive\n".encode("latin-1"), "d.csv", {}, 422, "invalid_data", "file"),
    "bad_jsonl": (b'{"text": "a", "label": "b"}\n{not json\n', "d.jsonl", {}, 422, "invalid_data", "file"),
    "bad_parquet": (b"PAR1 this is not parquet", "d.parquet", {}, 422, "invalid_data", "file"),
    "empty_text": (b"text,label\n,positive\n", "d.csv", {}, 422, "invalid_data", "text_column"),
    "unknown_extension": (b"text,label\nhi,positive\n", "d.xlsx", {}, 415, "unsupported_format", "file"),
    "unknown_declared_format": (b"text,label\nhi,positive\n", "d.csv", {"format": "xml"}, 415, "unsupported_format",
                                "format"),
    "unknown_field": (b"text,label\nhi,positive\n", "d.csv", {"colour": "red"}, 422, "unknown_field", "colour"),
}


@pytest.mark.parametrize("case", sorted(ERRORS))
def test_validation_errors(client, auth_a, case) -> None:  # noqa: ANN001
    content, filename, fields, status, code, param = ERRORS[case]
    r = _post(client, auth_a, content, filename, **fields)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert set(error) == {"code", "message", "param"}
    assert error["code"] == code and error["param"] == param and error["message"]
    assert client.get("/v1/datasets", headers=auth_a).json()["data"] == []
    assert client.app.state.store.list_files("datasets") == []


def test_single_field_over_max_text_chars(make_client, auth_a) -> None:  # noqa: ANN001
    client = make_client(max_text_chars=1000)
    content = b"text,label\nshort,positive\n" + b"x" * 5000 + b",negative\n"
    r = _post(client, auth_a, content, "d.csv")
    assert r.status_code == 422
    assert r.json()["error"]["code"] == "invalid_data" and "row 2" in r.json()["error"]["message"]


def test_ten_megabyte_field_is_refused_with_default_limits(client, auth_a) -> None:  # noqa: ANN001
    content = b"text,label\n" + b"y" * 10_000_000 + b",positive\n"
    r = _post(client, auth_a, content, "d.csv")
    assert r.status_code == 422 and "100,000" in r.json()["error"]["message"]


def test_too_many_rows(make_client, auth_a, train_csv_bytes) -> None:  # noqa: ANN001
    client = make_client(max_dataset_rows=50)
    r = _post(client, auth_a, train_csv_bytes, "d.csv")
    assert r.status_code == 422 and "limit" in r.json()["error"]["message"]


def test_upload_over_size_limit(make_client, auth_a, train_csv_bytes) -> None:  # noqa: ANN001
    client = make_client(max_upload_bytes=1000)
    r = _post(client, auth_a, train_csv_bytes, "d.csv")
    assert r.status_code == 413 and r.json()["error"]["code"] == "upload_too_large"


def test_dataset_from_uri(make_client, auth_a, tmp_path, train_csv_bytes) -> None:  # noqa: ANN001
    root = tmp_path / "data-root"
    root.mkdir()
    (root / "train.csv").write_bytes(train_csv_bytes)
    client = make_client(allowed_uri_roots=[str(root)])
    r = client.post("/v1/datasets", headers=auth_a, json={"uri": str(root / "train.csv"), "name": "from-uri"})
    assert r.status_code == 201, r.text
    assert r.json()["rows"] == 160 and r.json()["sha256"] == hashlib.sha256(train_csv_bytes).hexdigest()
    for bad in ("/etc/passwd", "file:///etc/passwd", f"{root}/../x.csv"):
        r = client.post("/v1/datasets", headers=auth_a, json={"uri": bad})
        assert r.status_code == 422 and r.json()["error"]["code"] == "uri_not_allowed", bad
    r = client.post("/v1/datasets", headers=auth_a, json={"uri": str(root / "train.csv"), "text_colum": "t"})
    assert r.status_code == 422 and r.json()["error"]["param"] == "text_colum"


def test_delete_dataset(client, auth_a, upload_dataset) -> None:  # noqa: ANN001
    dataset = upload_dataset(auth_a)
    assert client.delete(f"/v1/datasets/{dataset['id']}", headers=auth_a).status_code == 204
    assert client.get(f"/v1/datasets/{dataset['id']}", headers=auth_a).status_code == 404
    assert client.app.state.store.list_files("datasets") == []


def test_list_pagination(client, auth_a) -> None:  # noqa: ANN001
    ids = [_post(client, auth_a, b"text,label\nhi,positive\n", f"d{i}.csv").json()["id"] for i in range(5)]
    seen, after = [], None
    while True:
        params = {"limit": 2} | ({"after": after} if after else {})
        page = client.get("/v1/datasets", headers=auth_a, params=params).json()
        seen += [d["id"] for d in page["data"]]
        if not page["has_more"]:
            assert page["next_cursor"] is None
            break
        after = page["next_cursor"]
    assert seen == list(reversed(ids))


def test_dataset_uri_that_is_not_a_file_creates_nothing(make_client, auth_a, tmp_path) -> None:  # noqa: ANN001
    root = tmp_path / "data-root"
    (root / "folder.csv").mkdir(parents=True)
    client = make_client(allowed_uri_roots=[str(root)])
    for uri in (str(root / "folder.csv"), str(root / "nowhere" / "train.csv")):
        r = client.post("/v1/datasets", headers=auth_a, json={"uri": uri})
        assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_data", r.text
    r = client.post("/v1/datasets", headers=auth_a, json={"uri": str(root)})
    assert r.status_code == 415 and r.json()["error"]["code"] == "unsupported_format"
    assert [p.name for p in root.iterdir()] == ["folder.csv"]
