"""Issue 18: an archive's headers and names are bounded before they are read, odd members are a
422 (never a 500), and extraction is bounded by a multiple of the upload's size.

On main: a tar with a 50 MiB GNU long name was read whole, then a 500 (+312 MB RSS, a 52 MB
traceback in the log); ``zipfile.ZipFile()`` parsed a 400,000-entry central directory before
the member cap; a zip with a file and a same-named folder, and one with a 300-character
member name, were 500s; a ~10 MB upload could write up to the 10 GiB cap.
"""

from __future__ import annotations

import io
import logging
import tarfile
import zipfile

import pytest

from app.archives import MAX_HEADER_BYTES, ArchiveError, safe_extract
from app.errors import PayloadTooLarge


def _tar(members: list[tuple[str, bytes | None]], fmt: int = tarfile.GNU_FORMAT) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", format=fmt) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            if data is None:
                info.type = tarfile.DIRTYPE
            else:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def _zip(entries: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries:
            zf.writestr(name, data)
    return buf.getvalue()


def _extract(tmp_path, content: bytes, suffix: str = ".tar.gz", **limits):  # noqa: ANN001, ANN003, ANN202
    archive = tmp_path / f"upload{suffix}"
    archive.write_bytes(content)
    options = {"max_files": 100, "max_bytes": 10_000_000} | limits
    return safe_extract(archive, tmp_path / "out", **options)


def test_a_long_gnu_name_header_is_refused_before_it_is_read(tmp_path) -> None:  # noqa: ANN001
    name = "a/" * (MAX_HEADER_BYTES // 2 + 10) + "config.json"
    with pytest.raises(ArchiveError, match="extended header"):
        _extract(tmp_path, _tar([(name, b"{}")]))
    with pytest.raises(ArchiveError, match="extended header"):  # the pax form of the same
        _extract(tmp_path, _tar([(name, b"{}")], fmt=tarfile.PAX_FORMAT))


@pytest.mark.parametrize("suffix", [".tar.gz", ".zip"])
def test_odd_members_are_422(tmp_path, suffix) -> None:  # noqa: ANN001
    pack = _tar if suffix == ".tar.gz" else (lambda members: _zip([(n, d or b"") for n, d in members]))
    cases = {
        "file and folder": [("m/x", b"1"), ("m/x/y", b"2")],
        "folder then file": [("m/x/y", b"2"), ("m/x", b"1")],
        "twice": [("m/a", b"1"), ("m/a", b"2")],
        "long name": [("m/" + "n" * 300, b"1")],
        "very long path": [("/".join(["d" * 200] * 8), b"1")],
    }
    for why, members in cases.items():
        with pytest.raises(ArchiveError) as caught:
            _extract(tmp_path, pack(members), suffix)
        assert len(caught.value.message) < 400, why
    assert (_extract(tmp_path, pack([("m/a", b"1"), ("m/b/c", b"2")]), suffix) / "m/b/c").read_bytes() == b"2"


def test_zip_member_count_is_read_from_the_end_record_first(tmp_path, monkeypatch) -> None:  # noqa: ANN001
    content = _zip([(f"f{i}", b"") for i in range(200)])
    parsed = []
    monkeypatch.setattr(zipfile.ZipFile, "_RealGetContents", lambda self: parsed.append(1))
    with pytest.raises(PayloadTooLarge, match="more than 100 members"):
        _extract(tmp_path, content, ".zip")
    assert parsed == []  # refused before zipfile read the central directory


def test_extraction_is_bounded_by_a_multiple_of_the_upload(tmp_path) -> None:  # noqa: ANN001
    content = _tar([("m/config.json", b"\0" * 2_000_000)])
    assert len(content) < 20_000
    with pytest.raises(PayloadTooLarge, match="expands to more than"):
        _extract(tmp_path, content, max_ratio=10)
    assert _extract(tmp_path, content, max_ratio=1000).is_dir()


def test_teacher_upload_with_odd_members_is_422_over_http(client, auth_a) -> None:  # noqa: ANN001
    for content in (_zip([("m/config.json", b"{}"), ("m/config.json/x", b"1")]),
                    _tar([("a/" * (MAX_HEADER_BYTES // 2 + 10) + "config.json", b"{}")])):
        r = client.post("/v1/teachers", headers=auth_a, files={"file": ("t.zip", content)})
        assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_archive", r.text


def test_an_unhandled_error_logs_a_bounded_traceback(client, caplog) -> None:  # noqa: ANN001
    """A 500's traceback in the log is bounded however long the exception's message (user bytes)."""

    def boom() -> None:
        raise ValueError("x" * 5_000_000)

    client.app.add_api_route("/boom", boom)
    with caplog.at_level(logging.ERROR, logger="app.main"):
        r = client.get("/boom")
    assert r.status_code == 500 and r.json()["error"]["code"] == "internal_error"
    logged = [rec.getMessage() for rec in caplog.records if rec.name == "app.main"]
    assert logged and "ValueError" in logged[-1] and len(logged[-1]) < 25_000, [len(m) for m in logged]
