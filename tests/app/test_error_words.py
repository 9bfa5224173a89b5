"""HTTP errors speak the API's language: the caller's file name, API field names, no internals.

The library's messages are written for the command line (``pass --text-column``) and name
the files it read (for an upload, a temp file of ours). ``app.services.library_errors`` is
the one place that rewrites them; this test drives every kind of failing request it can
think of and checks that no error body carries a temp path, our data directory or a flag.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

from tests.app.conftest import tar_gz_of

FLAG = re.compile(r"(^|[\s'\"(])--[a-z]")


def test_no_http_error_body_holds_a_temp_path_or_a_cli_flag(client, auth_a, job_body, tiny_teacher_dir,
                                                           tiny_encoder_dir, tmp_path) -> None:  # noqa: ANN001
    settings = client.app.state.settings
    bodies = []

    def send(method: str, url: str, **kwargs) -> dict:
        r = client.request(method, url, headers=auth_a, **kwargs)
        assert 400 <= r.status_code < 500, (url, r.status_code, r.text)
        bodies.append(r.json()["error"])
        return r.json()["error"]

    def dataset(content: bytes, filename: str = "reviews.csv", **fields) -> dict:
        return send("POST", "/v1/datasets", files={"file": (filename, content)}, data=fields)

    wrong_column = dataset(b"sentence,label\nhi,positive\n")
    assert wrong_column["message"].startswith("reviews.csv: no column 'text'")
    assert "text_column" in wrong_column["message"] and wrong_column["param"] == "text_column"
    assert "pair" in dataset(b"text,label\nhi,positive\n", text_pair_column="hypothesis")["message"]
    dataset(b"text\nhi\n")  # no label column, and label_column not emptied
    dataset(b"", "empty.csv")
    dataset(b"text,label\n", "header.csv")
    dataset(b"\xff\xfe\x00garbage", "binary.csv")
    dataset(b"{not json\n", "broken.jsonl")
    dataset(b"not parquet", "broken.parquet")
    dataset(b"text,label\nhi,positive\n", "data.xlsx")
    dataset(b"text,label\n,positive\n", "blank.csv")  # an empty text

    config_only = tmp_path / "config-only"
    config_only.mkdir()
    (config_only / "config.json").write_text('{"architectures": ["BertForSequenceClassification"]}')
    send("POST", "/v1/teachers", files={"file": ("m.tar.gz", tar_gz_of(config_only))})
    send("POST", "/v1/teachers", files={"file": ("enc.tar.gz", tar_gz_of(tiny_encoder_dir))})
    send("POST", "/v1/base-models", files={"file": ("m.tar.gz", tar_gz_of(config_only))})
    send("POST", "/v1/teachers", json={"uri": str(tiny_teacher_dir)})
    send("POST", "/v1/jobs", json={**job_body, "student": {"kind": "encoder_mlp"}})
    send("POST", "/v1/jobs", json={**job_body, "student": {"kind": "encoder_mlp", "base": "/etc"}})
    send("POST", "/v1/jobs", json={**job_body, "hyperparameters": {"subclasses": 40}})
    send("POST", "/v1/jobs", json={**job_body, "device": "gpu"})

    private = [str(settings.data_dir), settings.artifact_url, tempfile.gettempdir(), "upload-", str(tmp_path)]
    for error in bodies:
        text = f"{error['message']} {error['param']}"
        assert not FLAG.search(text), error
        assert not any(p in text for p in private), error


def test_api_words_rewrites_paths_and_flags() -> None:
    from app.services.library_errors import api_words

    message = "/srv/data/tmp/upload-x1.csv: no column 'text'; pass --text-column, or --student-base DIR"
    assert api_words(message, {"/srv/data/tmp/upload-x1.csv": "reviews.csv"}, roots=["/srv/data"]) == (
        "reviews.csv: no column 'text'; pass text_column, or student.base")
    assert api_words("cannot read /srv/data/artifacts/x/y.bin here", roots=["/srv/data"]) == (
        "cannot read the file here")


def test_a_json_endpoint_answers_415_for_another_media_type(client, auth_a, job_body) -> None:  # noqa: ANN001
    for url in ("/v1/jobs", "/v1/models/mdl_x/predict"):
        for content_type, content in (("text/plain", b"hello"), ("application/x-www-form-urlencoded", b"a=b")):
            r = client.post(url, headers={**auth_a, "Content-Type": content_type}, content=content)
            assert r.status_code in (415, 404), r.text
            if r.status_code == 415:
                assert r.json()["error"]["code"] == "unsupported_media_type"
    r = client.post("/v1/jobs", headers={**auth_a, "Content-Type": "text/plain"}, content=b"{}")
    assert r.status_code == 415
    r = client.post("/v1/jobs", headers={**auth_a, "Content-Type": "application/json"}, content=b"{}")
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request"


def test_an_upload_file_name_never_becomes_a_path(client, auth_a, train_csv_bytes) -> None:  # noqa: ANN001
    """The name a client gives its file is shown, never used as a path (the store path is ours)."""
    root = client.app.state.settings.artifact_url
    for filename in ("../../escape.csv", "/etc/cron.d/x.csv", "a/b/../../c.csv"):
        r = client.post("/v1/datasets", headers=auth_a, files={"file": (filename, train_csv_bytes)})
        assert r.status_code == 201, r.text
        stored = sorted(str(p.relative_to(root)) for p in Path(root).rglob("*.csv"))
        assert f"datasets/{r.json()['id']}/data.csv" in stored
    assert not list(Path(root).parent.rglob("escape.csv"))
