"""Teacher uploads: archives (tar.gz, zip), URIs under allowed roots, and hostile input."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
import zipfile
from pathlib import Path

import pytest

from tests.app.conftest import tar_gz_of


def _post_archive(client, headers, content: bytes, filename: str = "model.tar.gz"):  # noqa: ANN001, ANN202
    return client.post("/v1/teachers", headers=headers, files={"file": (filename, content)})


def _stored_teachers(client) -> list[str]:  # noqa: ANN001
    return client.app.state.store.list_files("teachers")


def test_upload_tar_gz(client, auth_a, teacher_tar_gz) -> None:  # noqa: ANN001
    r = client.post("/v1/teachers", headers=auth_a, files={"file": ("tiny.tar.gz", teacher_tar_gz)},
                    data={"name": "my-teacher"})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["id"].startswith("tch_")
    assert body["name"] == "my-teacher"
    assert body["num_labels"] == 2 and body["labels"] == ["negative", "positive"]
    assert body["hidden_size"] == 32 and body["parameters"] > 0 and body["model_type"] == "bert"
    assert "BertForSequenceClassification" in body["architecture"]
    files = _stored_teachers(client)
    assert f"{body['id']}/config.json" in files and f"{body['id']}/model.safetensors" in files
    assert client.get(f"/v1/teachers/{body['id']}", headers=auth_a).json() == body
    listed = client.get("/v1/teachers", headers=auth_a).json()
    assert [t["id"] for t in listed["data"]] == [body["id"]]


def test_upload_zip_without_top_folder(client, auth_a, teacher_zip) -> None:  # noqa: ANN001
    r = _post_archive(client, auth_a, teacher_zip, "tiny.zip")
    assert r.status_code == 201, r.text
    assert r.json()["name"] == "tiny"


def test_delete_teacher(client, auth_a, upload_teacher) -> None:  # noqa: ANN001
    teacher = upload_teacher(auth_a)
    assert client.delete(f"/v1/teachers/{teacher['id']}", headers=auth_a).status_code == 204
    assert client.get(f"/v1/teachers/{teacher['id']}", headers=auth_a).status_code == 404
    assert _stored_teachers(client) == []


# --- hostile archives --------------------------------------------------------------------


def _tar(members: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    return buf.getvalue()


def _info(name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info


def _zip(entries: list[tuple[zipfile.ZipInfo | str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries:
            zf.writestr(name, data)
    return buf.getvalue()


def _zip_symlink() -> bytes:
    info = zipfile.ZipInfo("config.json")
    info.external_attr = (0o120777 << 16)
    return _zip([(info, b"/etc/passwd")])


CONFIG = b'{"architectures": ["BertForSequenceClassification"]}'
HOSTILE = {
    "tar_dotdot": (lambda: _tar([(_info("../evil.txt"), b"x")]), "model.tar.gz", 422, "invalid_archive"),
    "tar_nested_dotdot": (lambda: _tar([(_info("m/../../evil.txt"), b"x")]), "model.tar.gz", 422, "invalid_archive"),
    "tar_absolute": (lambda: _tar([(_info("/tmp/evil.txt"), b"x")]), "model.tar.gz", 422, "invalid_archive"),
    "tar_symlink": (lambda: _tar([(_info("config.json", tarfile.SYMTYPE, "/etc/passwd"), None)]),
                    "model.tar.gz", 422, "invalid_archive"),
    "tar_hardlink": (lambda: _tar([(_info("a.txt"), b"x"), (_info("config.json", tarfile.LNKTYPE, "a.txt"), None)]),
                     "model.tar.gz", 422, "invalid_archive"),
    "tar_device": (lambda: _tar([(_info("dev", tarfile.CHRTYPE), None)]), "model.tar.gz", 422, "invalid_archive"),
    "tar_fifo": (lambda: _tar([(_info("fifo", tarfile.FIFOTYPE), None)]), "model.tar.gz", 422, "invalid_archive"),
    "zip_dotdot": (lambda: _zip([("../evil.txt", b"x")]), "model.zip", 422, "invalid_archive"),
    "zip_absolute": (lambda: _zip([("/tmp/evil.txt", b"x")]), "model.zip", 422, "invalid_archive"),
    "zip_backslash": (lambda: _zip([("..\\evil.txt", b"x")]), "model.zip", 422, "invalid_archive"),
    "zip_symlink": (_zip_symlink, "model.zip", 422, "invalid_archive"),
    "not_an_archive": (lambda: b"just some text, not an archive", "model.tar.gz", 422, "invalid_archive"),
    "truncated_gzip": (lambda: _tar([(_info("config.json"), CONFIG)])[:30], "model.tar.gz", 422, "invalid_archive"),
    "no_config": (lambda: _tar([(_info("readme.txt"), b"hello")]), "model.tar.gz", 422, "invalid_archive"),
    "config_without_weights": (lambda: _tar([(_info("config.json"), CONFIG)]), "model.tar.gz", 422,
                               "invalid_teacher"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_archive_is_refused_and_nothing_is_stored(client, auth_a, tmp_path, case) -> None:  # noqa: ANN001
    build, filename, status, code = HOSTILE[case]
    r = _post_archive(client, auth_a, build(), filename)
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code
    assert r.json()["error"]["param"] in ("file", None)
    assert _stored_teachers(client) == []
    assert client.get("/v1/teachers", headers=auth_a).json()["data"] == []
    assert not list(tmp_path.rglob("evil.txt"))
    assert list((client.app.state.settings.data_dir / "tmp").iterdir()) == []  # temp files cleaned up


def test_too_many_files(make_client, auth_a) -> None:  # noqa: ANN001
    client = make_client(max_archive_files=5)
    content = _tar([(_info(f"f{i}.txt"), b"x") for i in range(10)])
    r = _post_archive(client, auth_a, content)
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "too_many_files"


@pytest.mark.parametrize("kind", ["tar", "zip"])
def test_decompression_bomb_stops_at_the_cap(make_client, auth_a, kind) -> None:  # noqa: ANN001
    client = make_client(max_archive_bytes=1_000_000)
    zeros = b"\0" * 20_000_000
    content = _tar([(_info("config.json"), zeros)]) if kind == "tar" else _zip([("config.json", zeros)])
    assert len(content) < 100_000  # small on the wire, 20 MB unpacked
    r = _post_archive(client, auth_a, content, "bomb.tar.gz" if kind == "tar" else "bomb.zip")
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "archive_too_large"
    assert _stored_teachers(client) == []


def test_zip_bomb_with_lying_header_stops_at_the_cap(make_client, auth_a) -> None:  # noqa: ANN001
    """A zip whose header claims a tiny size: the bytes counted while extracting still stop it."""
    client = make_client(max_archive_bytes=1_000_000)
    content = bytearray(_zip([("config.json", b"\0" * 5_000_000)]))
    # Rewrite the declared uncompressed size (local header offset 22, central directory too) to 10 bytes.
    content[22:26] = (10).to_bytes(4, "little")
    central = content.rfind(b"PK\x01\x02")
    content[central + 24:central + 28] = (10).to_bytes(4, "little")
    r = _post_archive(client, auth_a, bytes(content), "bomb.zip")
    assert r.status_code in (413, 422)
    assert _stored_teachers(client) == []


def test_upload_over_the_size_limit_is_413(make_client, auth_a, teacher_tar_gz) -> None:  # noqa: ANN001
    client = make_client(max_upload_bytes=10_000)
    r = _post_archive(client, auth_a, teacher_tar_gz)
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "upload_too_large"


def test_upload_over_the_limit_is_refused_while_streaming(make_client, auth_a) -> None:  # noqa: ANN001
    """Talk ASGI directly: the app must stop reading the body soon after the limit, not read it all."""
    import asyncio

    client = make_client(max_upload_bytes=100_000)
    boundary = "xyz"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"m.tar.gz\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode()
    chunks = [head] + [b"\0" * 65536] * 1000  # 64 MB if read to the end; no Content-Length
    received = 0
    sent: list[dict] = []

    async def receive() -> dict:
        nonlocal received
        received += 1
        if received <= len(chunks):
            return {"type": "http.request", "body": chunks[received - 1], "more_body": True}
        return {"type": "http.request", "body": f"\r\n--{boundary}--\r\n".encode(), "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
             "scheme": "http", "path": "/v1/teachers", "raw_path": b"/v1/teachers", "query_string": b"",
             "root_path": "", "client": ("127.0.0.1", 1), "server": ("testserver", 80),
             "headers": [(b"host", b"testserver"), (b"authorization", auth_a["Authorization"].encode()),
                         (b"content-type", f"multipart/form-data; boundary={boundary}".encode())]}
    asyncio.run(client.app(scope, receive, send))
    assert sent[0]["type"] == "http.response.start" and sent[0]["status"] == 413
    assert received < 10  # stopped after ~100 kB of 64 MB


def test_auto_map_config_is_refused(client, auth_a, tiny_teacher_dir, tmp_path) -> None:  # noqa: ANN001
    model = tmp_path / "remote-code"
    shutil.copytree(tiny_teacher_dir, model)
    config = json.loads((model / "config.json").read_text())
    config["auto_map"] = {"AutoModelForSequenceClassification": "modeling_evil.EvilModel"}
    (model / "config.json").write_text(json.dumps(config))
    (model / "modeling_evil.py").write_text("raise SystemExit('remote code ran')\n")
    r = _post_archive(client, auth_a, tar_gz_of(model))
    assert r.status_code == 422
    assert r.json()["error"]["code"] == "invalid_teacher"
    assert "auto_map" in r.json()["error"]["message"]
    assert str(tmp_path) not in r.json()["error"]["message"]
    assert _stored_teachers(client) == []


def test_wrong_content_type_and_bad_multipart(client, auth_a) -> None:  # noqa: ANN001
    r = client.post("/v1/teachers", headers={**auth_a, "Content-Type": "text/plain"}, content=b"hello")
    assert r.status_code == 415 and r.json()["error"]["code"] == "unsupported_media_type"
    r = client.post("/v1/teachers", headers={**auth_a, "Content-Type": "multipart/form-data"}, content=b"x")
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_multipart"
    r = client.post("/v1/teachers", headers=auth_a, data={"name": "x"}, files={"other": ("a", b"b")})
    assert r.status_code == 422 and r.json()["error"]["param"] == "other"
    r = client.post("/v1/teachers", headers=auth_a, files={"file": ("a.tar.gz", b"b")}, data={"colour": "red"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "unknown_field"


# --- URIs --------------------------------------------------------------------------------


@pytest.fixture
def uri_root(tmp_path, tiny_teacher_dir) -> Path:  # noqa: ANN001
    root = tmp_path / "shared-models"
    shutil.copytree(tiny_teacher_dir, root / "tiny-bert")
    return root


def test_uri_under_allowed_root(make_client, auth_a, uri_root) -> None:  # noqa: ANN001
    client = make_client(allowed_uri_roots=[str(uri_root)])
    for uri in (str(uri_root / "tiny-bert"), f"file://{uri_root / 'tiny-bert'}"):
        r = client.post("/v1/teachers", headers=auth_a, json={"uri": uri})
        assert r.status_code == 201, r.text
        assert r.json()["name"] == "tiny-bert" and r.json()["num_labels"] == 2
    assert (uri_root / "tiny-bert" / "config.json").is_file()  # the source is copied, not moved


@pytest.mark.parametrize("uri", ["/etc/passwd", "file:///etc/passwd", "file:///", "/", "{root}/../../etc",
                                 "{root}/tiny-bert/../../x", "relative/path", "{root}/escape",
                                 "s3://bucket/model", "{root}/missing"])
def test_uri_outside_allowed_roots_is_refused(make_client, auth_a, uri_root, uri) -> None:  # noqa: ANN001
    (uri_root / "escape").symlink_to("/etc")
    client = make_client(allowed_uri_roots=[str(uri_root)])
    r = client.post("/v1/teachers", headers=auth_a, json={"uri": uri.format(root=uri_root)})
    assert r.status_code == 422, r.text
    expected = "invalid_teacher" if uri.endswith("missing") else "uri_not_allowed"
    assert r.json()["error"]["code"] == expected
    assert r.json()["error"]["param"] in ("uri", None)
    assert _stored_teachers(client) == []


def test_uris_are_off_without_allowed_roots(client, auth_a, uri_root) -> None:  # noqa: ANN001
    r = client.post("/v1/teachers", headers=auth_a, json={"uri": str(uri_root / "tiny-bert")})
    assert r.status_code == 422 and r.json()["error"]["code"] == "uri_not_allowed"


def test_json_body_errors(client, auth_a) -> None:  # noqa: ANN001
    r = client.post("/v1/teachers", headers={**auth_a, "Content-Type": "application/json"}, content=b"{not json")
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"
    r = client.post("/v1/teachers", headers=auth_a, json={"uri": "/x", "trust_remote_code": True})
    assert r.status_code == 422
    assert r.json()["error"] == {"code": "invalid_request", "message": "unknown field 'trust_remote_code'",
                                 "param": "trust_remote_code"}
    r = client.post("/v1/teachers", headers=auth_a, json={"name": "x"})
    assert r.status_code == 422 and r.json()["error"]["param"] == "uri"


# --- pickle weights ------------------------------------------------------------------------


class _Payload:
    """Unpickling this runs ``os.system``: the classic malicious checkpoint."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204
        import os

        return (os.system, (f"touch {self.marker}",))


def test_plain_pickle_state_dict_is_accepted(client, auth_a, tmp_path) -> None:  # noqa: ANN001
    from tests.tiny import make_tiny_teacher

    model = make_tiny_teacher(tmp_path / "pickled", safetensors=False)
    assert (model / "pytorch_model.bin").is_file()
    r = _post_archive(client, auth_a, tar_gz_of(model))
    assert r.status_code == 201, r.text
    # Issue 14: converted to safetensors at upload by torch.load(weights_only=True) in a child
    # process, so the parameters are counted and the stored teacher holds no pickle.
    assert r.json()["parameters"] == 24930
    stored = client.app.state.store.list_files(f"teachers/{r.json()['id']}")
    assert "model.safetensors" in stored and "pytorch_model.bin" not in stored


def test_pickle_that_would_run_code_is_refused_and_never_runs(client, auth_a, tmp_path) -> None:  # noqa: ANN001
    import torch

    from tests.tiny import make_tiny_teacher

    marker = tmp_path / "pwned"
    model = make_tiny_teacher(tmp_path / "evil", safetensors=False)
    state = torch.load(model / "pytorch_model.bin", weights_only=True)
    state["bert.pooler.dense.bias"] = _Payload(marker)  # type: ignore[assignment]
    torch.save(state, model / "pytorch_model.bin")
    r = _post_archive(client, auth_a, tar_gz_of(model))
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == "invalid_teacher" and "system" in r.json()["error"]["message"]
    assert not marker.exists()
    assert _stored_teachers(client) == []


def test_pickle_scanner_sees_globals_of_both_formats() -> None:
    import os
    import pickle

    from lelp.uploads.pickle_scan import pickle_globals

    for protocol in (0, 2, 4, 5):
        data = pickle.dumps({"x": _Payload(Path("/nonexistent"))}, protocol=protocol)
        assert (os.system.__module__, "system") in pickle_globals(data), protocol
    assert pickle_globals(pickle.dumps({"a": [1, 2.0, "s"]}, protocol=4)) == set()


def _memo_shift_pickle() -> bytes:
    """Protocol 4: two empty lists memoised first, then os/system fetched from the memo.

    The old scanner numbered only memoised strings, so it read memo 2 and 3 as
    ``collections``/``OrderedDict`` (safe) where the unpickler finds ``os``/``system``.
    """
    def string(text: str) -> bytes:
        return b"\x8c" + bytes([len(text)]) + text.encode() + b"\x94"  # SHORT_BINUNICODE + MEMOIZE

    body = b"]\x94]\x94" + string("os") + string("system") + string("collections") + string("OrderedDict")
    body += b"0" * 6  # POP x6: an empty stack
    body += b"h\x02h\x03\x93"  # BINGET 2, BINGET 3, STACK_GLOBAL -> os.system
    body += b"\x8c\x04true\x85R."  # ("true",) REDUCE STOP
    return b"\x80\x04" + body


def test_pickle_scanner_follows_the_memo_through_non_string_entries() -> None:
    """Issue 14: the memo gap (``MEMOIZE`` of a non-string shifted the scanner's indices)."""
    import pickletools

    from lelp.uploads.pickle_scan import pickle_globals

    data = _memo_shift_pickle()
    list(pickletools.genops(data))  # a well-formed pickle (never loaded: it would run os.system)
    assert ("os", "system") in pickle_globals(data)


def test_pickle_scanner_refuses_operands_it_cannot_follow() -> None:
    from lelp.uploads.pickle_scan import pickle_globals

    # MARK "os" "system" TUPLE POP ... STACK_GLOBAL: the operands are no longer certain.
    data = b"\x80\x04(\x8c\x02os\x8c\x06systemt0\x93."
    assert ("?", "?") in pickle_globals(data)
