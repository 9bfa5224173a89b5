"""Hostile and broken input: each answered with a clear 4xx, and nothing already stored is hurt.

Each test first stores a teacher, a dataset, a queued job and a finished job's model (a real
distilled student), snapshots them (API bodies, the artifact store's files with their
sha256), then sends its hostile inputs one by one. After *every* input it checks that the
answer is a 4xx with the ``{"error": {"code", "message"}}`` body and the expected code, that
the earlier rows are still listed and read back unchanged, that the store holds exactly the
same files with the same bytes, and that no temp file was left behind.
"""

from __future__ import annotations

import io
import json
import shutil
import stat
import tarfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.reliability.conftest import store_snapshot

KINDS = {"teacher": "teachers", "dataset": "datasets", "job": "jobs", "done_job": "jobs", "model": "models"}


@dataclass
class Sweep:
    """Sends hostile inputs and checks, after each, the answer and that nothing stored changed."""

    client: object
    headers: dict
    resources: dict
    store_root: Path
    tmp_dir: Path
    tried: int = 0
    server_errors: int = 0
    failures: list[str] = field(default_factory=list)
    bodies: dict = field(default_factory=dict)
    files: dict = field(default_factory=dict)
    kinds: dict = field(default_factory=lambda: dict(KINDS))

    def snapshot(self) -> None:
        self.bodies = {name: self._get(name).json() for name in self.resources}
        self.files = store_snapshot(self.store_root)
        assert self.files  # the baseline really stored something

    def _get(self, name: str) -> httpx.Response:
        return self.client.get(f"/v1/{self.kinds[name]}/{self.resources[name]}", headers=self.headers)

    def check(self, name: str, response: httpx.Response, status: int | tuple[int, ...], code: str | None) -> None:
        self.tried += 1
        statuses = status if isinstance(status, tuple) else (status,)
        self.server_errors += response.status_code >= 500
        try:
            error = response.json().get("error")
        except ValueError:
            error = None
        if response.status_code not in statuses:
            self.failures.append(f"{name}: {response.status_code} (expected {statuses}) {response.text[:200]}")
        elif not isinstance(error, dict) or not error.get("code") or not error.get("message"):
            self.failures.append(f"{name}: no error body: {response.text[:200]}")
        elif code is not None and error["code"] != code:
            self.failures.append(f"{name}: code {error['code']!r}, expected {code!r}")
        self.intact(name)

    def intact(self, after: str) -> None:
        for name, body in self.bodies.items():
            got = self._get(name)
            if got.status_code != 200 or got.json() != body:
                self.failures.append(f"after {after}: {name} changed: {got.status_code} {got.text[:200]}")
        for kind in ("teachers", "datasets", "jobs", "models"):
            listed = {row["id"] for row in self.client.get(f"/v1/{kind}", headers=self.headers,
                                                           params={"limit": 100}).json()["data"]}
            wanted = {rid for name, rid in self.resources.items() if self.kinds[name] == kind}
            if not wanted <= listed:
                self.failures.append(f"after {after}: {kind} list lost {wanted - listed}")
        files = store_snapshot(self.store_root)
        if files != self.files:
            lost = sorted(set(self.files) - set(files))
            changed = sorted(p for p in self.files if p in files and files[p] != self.files[p])
            added = sorted(set(files) - set(self.files))
            self.failures.append(f"after {after}: store lost {lost}, changed {changed}, added {added}")
        leftovers = [p.name for p in self.tmp_dir.iterdir()] if self.tmp_dir.exists() else []
        if leftovers:
            self.failures.append(f"after {after}: temp files left: {leftovers}")

    def lost_files(self) -> int:
        return len(set(self.files) - set(store_snapshot(self.store_root)))

    def finish(self, figures: Callable[[str], None]) -> None:
        figures(f"inputs tried {self.tried} / 5xx seen {self.server_errors} / files lost {self.lost_files()}")
        assert self.failures == []
        assert self.server_errors == 0


@pytest.fixture
def sweep(make_client, auth_a, make_resources, tmp_path) -> Callable[..., Sweep]:
    """``sweep(**settings)``: a client with those settings over tenant A's stored baseline."""

    def make(**overrides) -> Sweep:
        client = make_client(**overrides)
        resources = make_resources(client, auth_a)
        settings = client.app.state.settings
        result = Sweep(client, auth_a, resources, Path(settings.artifact_url), settings.data_dir / "tmp")
        return result

    return make


# --- archive builders ----------------------------------------------------------------------


def _tar(members: list[tuple[str, bytes, bytes | None, str]]) -> bytes:
    """(name, type, data, linkname) members; data None for links and devices."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, kind, data, link in members:
            info = tarfile.TarInfo(name)
            info.type, info.linkname = kind, link
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def _zip(entries: list[tuple[str | zipfile.ZipInfo, bytes]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries:
            zf.writestr(name, data)
    return buf.getvalue()


def _zip_mode(name: str, mode: int, data: bytes = b"x") -> bytes:
    info = zipfile.ZipInfo(name)
    info.external_attr = mode << 16
    return _zip([(info, data)])


def _zip_of_dir(directory: Path, root: str = "") -> bytes:
    return _zip([(f"{root}{p.relative_to(directory).as_posix()}", p.read_bytes())
                 for p in sorted(directory.rglob("*")) if p.is_file()])


def _tar_of_dir(directory: Path) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(directory, arcname="model")
    return buf.getvalue()


class _RunsCode:
    """Unpickling this calls ``os.system``: the classic malicious checkpoint."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


REG, SYM, LNK, CHR, BLK, FIFO = (tarfile.REGTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.CHRTYPE,
                                 tarfile.BLKTYPE, tarfile.FIFOTYPE)


def test_hostile_teacher_uploads(sweep, tiny_teacher_dir, tmp_path, figures) -> None:
    import torch

    from tests.tiny import make_tiny_teacher

    s = sweep(max_archive_files=50, max_archive_bytes=2_000_000, max_upload_bytes=3_000_000)
    marker = tmp_path / "pwned"
    evil = make_tiny_teacher(tmp_path / "evil", safetensors=False)
    state = torch.load(evil / "pytorch_model.bin", weights_only=True)
    state["bert.pooler.dense.bias"] = _RunsCode(marker)  # type: ignore[assignment]
    torch.save(state, evil / "pytorch_model.bin")
    remote = tmp_path / "remote"
    shutil.copytree(tiny_teacher_dir, remote)
    config = json.loads((remote / "config.json").read_text())
    config["auto_map"] = {"AutoModelForSequenceClassification": "modeling_evil.Evil"}
    (remote / "config.json").write_text(json.dumps(config))
    (remote / "modeling_evil.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    zeros = b"\0" * 20_000_000
    lying = bytearray(_zip([("config.json", b"\0" * 5_000_000)]))
    lying[22:26] = (10).to_bytes(4, "little")
    central = lying.rfind(b"PK\x01\x02")
    lying[central + 24:central + 28] = (10).to_bytes(4, "little")
    cases = {
        "pickle_runs_code.tar.gz": (_tar_of_dir(evil), 422, "invalid_teacher"),
        "pickle_runs_code.zip": (_zip_of_dir(evil), 422, "invalid_teacher"),
        "auto_map.tar.gz": (_tar_of_dir(remote), 422, "invalid_teacher"),
        "tar_dotdot.tar.gz": (_tar([("../evil.txt", REG, b"x", "")]), 422, "invalid_archive"),
        "tar_nested_dotdot.tar.gz": (_tar([("m/../../evil.txt", REG, b"x", "")]), 422, "invalid_archive"),
        "tar_absolute.tar.gz": (_tar([("/tmp/evil.txt", REG, b"x", "")]), 422, "invalid_archive"),
        "tar_symlink.tar.gz": (_tar([("config.json", SYM, None, "/etc/passwd")]), 422, "invalid_archive"),
        "tar_symlink_dir.tar.gz": (_tar([("m", SYM, None, "/"), ("m/evil.txt", REG, b"x", "")]), 422,
                                   "invalid_archive"),
        "tar_hardlink.tar.gz": (_tar([("a", REG, b"x", ""), ("config.json", LNK, None, "a")]), 422,
                                "invalid_archive"),
        "tar_hardlink_out.tar.gz": (_tar([("config.json", LNK, None, "/etc/passwd")]), 422, "invalid_archive"),
        "tar_char_device.tar.gz": (_tar([("dev", CHR, None, "")]), 422, "invalid_archive"),
        "tar_block_device.tar.gz": (_tar([("sda", BLK, None, "")]), 422, "invalid_archive"),
        "tar_fifo.tar.gz": (_tar([("fifo", FIFO, None, "")]), 422, "invalid_archive"),
        "tar_too_many_files.tar.gz": (_tar([(f"f{i}", REG, b"x", "") for i in range(60)]), 413, "too_many_files"),
        "tar_bomb.tar.gz": (_tar([("config.json", REG, zeros, "")]), 413, "archive_too_large"),
        "zip_dotdot.zip": (_zip([("../evil.txt", b"x")]), 422, "invalid_archive"),
        "zip_absolute.zip": (_zip([("/tmp/evil.txt", b"x")]), 422, "invalid_archive"),
        "zip_backslash.zip": (_zip([("..\\evil.txt", b"x")]), 422, "invalid_archive"),
        "zip_symlink.zip": (_zip_mode("config.json", stat.S_IFLNK | 0o777, b"/etc/passwd"), 422,
                            "invalid_archive"),
        "zip_char_device.zip": (_zip_mode("dev", stat.S_IFCHR | 0o644), 422, "invalid_archive"),
        "zip_fifo.zip": (_zip_mode("fifo", stat.S_IFIFO | 0o644), 422, "invalid_archive"),
        "zip_too_many_files.zip": (_zip([(f"f{i}", b"x") for i in range(60)]), 413, "too_many_files"),
        "zip_bomb.zip": (_zip([("config.json", zeros)]), 413, "archive_too_large"),
        "zip_lying_header.zip": (bytes(lying), (413, 422), None),
        "not_an_archive.tar.gz": (b"plain text", 422, "invalid_archive"),
        "truncated.tar.gz": (_tar([("config.json", REG, b"{}" * 1000, "")])[:40], 422, "invalid_archive"),
        "empty.zip": (b"", 422, None),
        "over_upload_limit.tar.gz": (b"\0" * 3_100_000, 413, "upload_too_large"),
    }
    s.snapshot()
    for name, (content, status, code) in cases.items():
        response = s.client.post("/v1/teachers", headers=s.headers, files={"file": (name, content)})
        s.check(name, response, status, code)
    assert not marker.exists(), "a hostile teacher ran code"
    assert not list(tmp_path.rglob("evil.txt")) and not (Path("/tmp") / "evil.txt").exists()
    s.finish(figures)


def test_hostile_dataset_uploads(sweep, auth_a, tmp_path, figures) -> None:
    root = tmp_path / "data-root"
    root.mkdir()
    (root / "ok.csv").write_bytes(b"text,label\nhi,positive\n")
    s = sweep(allowed_uri_roots=[str(root)], max_upload_bytes=12_000_000)
    # arranged before the snapshot: datasets that upload fine but a job must refuse
    odd = s.client.post("/v1/datasets", headers=auth_a, files={"file": ("odd.csv", b"text,label\na,sports\nb,news\n")})
    rows = "".join(f"good film {i},positive\n" for i in range(40)).encode()
    single = s.client.post("/v1/datasets", headers=auth_a, files={"file": ("single.csv", b"text,label\n" + rows)})
    assert odd.status_code == single.status_code == 201
    assert single.json()["label_counts"] == {"positive": 40}  # the report shows the single class at once
    s.resources |= {"odd": odd.json()["id"], "single": single.json()["id"]}
    s.kinds.update(odd="datasets", single="datasets")
    s.snapshot()
    uploads = {
        "missing_text_column": (b"sentence,label\nhi,positive\n", "d.csv", {}, 422, "invalid_data"),
        "missing_label_column": (b"text,y\nhi,positive\n", "d.csv", {}, 422, "invalid_data"),
        "missing_pair_column": (b"text,label\nhi,positive\n", "d.csv", {"text_pair_column": "b"}, 422,
                                "invalid_data"),
        "empty_file": (b"", "d.csv", {}, 422, "invalid_data"),
        "header_only": (b"text,label\n", "d.csv", {}, 422, "invalid_data"),
        "non_utf8_csv": ("text,label\ncaf\u00e9,positive\n".encode("latin-1"), "d.csv", {}, 422, "invalid_data"),
        "non_utf8_jsonl": (b'{"text": "caf\xe9", "label": "positive"}\n', "d.jsonl", {}, 422, "invalid_data"),
        "binary_garbage": (bytes(range(256)) * 100, "d.csv", {}, 422, "invalid_data"),
        "ten_mb_field": (b"text,label\n" + b"y" * 10_000_000 + b",positive\n", "d.csv", {}, 422, "invalid_data"),
        "ten_mb_quoted_field": (b'text,label\n"' + b"y," * 5_000_000 + b'",positive\n', "d.csv", {}, 422,
                                "invalid_data"),
        "bad_jsonl": (b'{"text": "a"\n', "d.jsonl", {}, 422, "invalid_data"),
        "bad_parquet": (b"PAR1 not parquet PAR1", "d.parquet", {}, 422, "invalid_data"),
        "unknown_format": (b"text,label\nhi,positive\n", "d.exe", {}, 415, "unsupported_format"),
        "unknown_form_field": (b"text,label\nhi,positive\n", "d.csv", {"sql": "drop table jobs"}, 422,
                               "unknown_field"),
        "over_upload_limit": (b"text,label\n" + b"a,positive\n" * 1_200_000, "d.csv", {}, 413,
                              "upload_too_large"),
    }
    for name, (content, filename, fields, status, code) in uploads.items():
        response = s.client.post("/v1/datasets", headers=auth_a, files={"file": (filename, content)}, data=fields)
        s.check(name, response, status, code)
    for name, uri in {"uri_etc_passwd": "/etc/passwd", "uri_file_root": "file:///",
                      "uri_file_etc_passwd": "file:///etc/passwd", "uri_dotdot": f"{root}/../x.csv",
                      "uri_dotdot_inside": f"{root}/a/../ok.csv", "uri_relative_dotdot": "../ok.csv",
                      "uri_proc": "/proc/self/environ", "uri_http": "http://169.254.169.254/latest/meta-data"}.items():
        s.check(name, s.client.post("/v1/datasets", headers=auth_a, json={"uri": uri}), 422, "uri_not_allowed")
    job = {"teacher_id": s.resources["teacher"], "train_dataset_id": s.resources["odd"]}
    s.check("unknown_labels_at_submit", s.client.post("/v1/jobs", headers=auth_a, json=job), 422, "unknown_label")
    job = {"teacher_id": s.resources["teacher"], "train_dataset_id": s.resources["dataset"],
           "eval_dataset_id": s.resources["odd"]}
    s.check("unknown_eval_labels_at_submit", s.client.post("/v1/jobs", headers=auth_a, json=job), 422,
            "unknown_label")
    job = {"teacher_id": s.resources["teacher"], "train_dataset_id": s.resources["single"], "method": "ce"}
    s.check("single_class_ce_at_submit", s.client.post("/v1/jobs", headers=auth_a, json=job), 422, "single_class")
    s.finish(figures)


def test_hostile_predictions(sweep, auth_a, figures) -> None:
    s = sweep()
    url = f"/v1/models/{s.resources['model']}/predict"
    ok = s.client.post(url, headers=auth_a, json={"inputs": ["a good film"]})
    assert ok.status_code == 200, ok.text  # the real student answers before and after
    # after the first predict: loading a student on onnxruntime stores its checked export (and its
    # figures in the model's metrics) once; the hostile requests below must change nothing
    s.snapshot()
    cases = {
        "empty_list": ({"inputs": []}, 422, "invalid_request"),
        "too_many_inputs": ({"inputs": ["x"] * 257}, 422, "too_many_inputs"),
        "ints": ({"inputs": [1, 2]}, 422, "invalid_request"),
        "null": ({"inputs": ["ok", None]}, 422, "invalid_request"),
        "nested_lists": ({"inputs": [["a"]]}, 422, "invalid_request"),
        "dicts_without_pair": ({"inputs": [{"text": "a"}]}, 422, "invalid_request"),
        "mixed_texts_and_pairs": ({"inputs": ["a", {"text": "a", "text_pair": "b"}]}, 422, "invalid_request"),
        "string_not_list": ({"inputs": "a good film"}, 422, "invalid_request"),
        "inputs_null": ({"inputs": None}, 422, "invalid_request"),
        "one_mb_string": ({"inputs": ["y" * 1_000_000]}, (413, 422), None),
        "many_long_strings": ({"inputs": ["y" * 100_001] * 3}, (413, 422), None),
        "unknown_field": ({"inputs": ["a"], "top_k": 5}, 422, "invalid_request"),
        "no_inputs": ({}, 422, "invalid_request"),
        "list_body": ([1, 2, 3], 422, "invalid_request"),
    }
    for name, (body, status, code) in cases.items():
        s.check(name, s.client.post(url, headers=auth_a, json=body), status, code)
    raw = {"malformed_json": b'{"inputs": [', "not_json": b"inputs=a", "nul_bytes": b'{"inputs": ["\x00"',
           "deep_nesting": b"[" * 100_000 + b"]" * 100_000, "huge_number": b'{"inputs": [1' + b"0" * 5000 + b"]}"}
    for name, content in raw.items():
        response = s.client.post(url, headers={**auth_a, "Content-Type": "application/json"}, content=content)
        s.check(name, response, (400, 413, 422), None)
    s.check("missing_model", s.client.post("/v1/models/mdl_" + "0" * 32 + "/predict", headers=auth_a,
                                           json={"inputs": ["a"]}), 404, "model_not_found")
    again = s.client.post(url, headers=auth_a, json={"inputs": ["a good film"]})
    assert again.status_code == 200 and again.json() == ok.json()
    s.finish(figures)


def test_malformed_json_unknown_fields_missing_ids_and_uris(sweep, auth_a, tmp_path, figures) -> None:
    root = tmp_path / "models-root"
    root.mkdir()
    s = sweep(allowed_uri_roots=[str(root)])
    s.snapshot()
    job = {"teacher_id": s.resources["teacher"], "train_dataset_id": s.resources["dataset"]}
    json_posts = {
        "job_malformed": ("/v1/jobs", b'{"teacher_id": ', 400, "invalid_json"),
        "job_not_an_object": ("/v1/jobs", b"[1, 2]", 422, "invalid_request"),
        "job_bad_utf8": ("/v1/jobs", b'{"teacher_id": "\xff\xfe"}', (400, 422), None),
        "teacher_malformed": ("/v1/teachers", b"{not json", 400, "invalid_json"),
        "dataset_malformed": ("/v1/datasets", b'{"uri": ', 400, "invalid_json"),
        "teacher_json_too_big": ("/v1/teachers", b'{"uri": "' + b"a" * 2_000_000 + b'"}', 413, None),
    }
    for name, (path, content, status, code) in json_posts.items():
        response = s.client.post(path, headers={**auth_a, "Content-Type": "application/json"}, content=content)
        s.check(name, response, status, code)
    unknown = {
        "job_top_level": {**job, "priority": "high"},
        "job_student": {**job, "student": {"kind": "ngram", "trust_remote_code": True}},
        "job_hyperparameters": {**job, "hyperparameters": {"lr": 1}},
        "job_wrong_types": {**job, "hyperparameters": {"epochs": "ten"}},
        "job_huge_epochs": {**job, "hyperparameters": {"epochs": 10**12}},
    }
    for name, body in unknown.items():
        s.check(name, s.client.post("/v1/jobs", headers=auth_a, json=body), 422, "invalid_request")
    s.check("teacher_unknown_field", s.client.post("/v1/teachers", headers=auth_a,
                                                   json={"uri": str(root), "trust_remote_code": True}),
            422, "invalid_request")
    s.check("dataset_unknown_field", s.client.post("/v1/datasets", headers=auth_a, json={"uri": "x", "sep": ";"}),
            422, "invalid_request")
    missing = "0" * 32
    for name, (method, path, body, code) in {
        "get_teacher": ("GET", f"/v1/teachers/tch_{missing}", None, "teacher_not_found"),
        "delete_teacher": ("DELETE", f"/v1/teachers/tch_{missing}", None, "teacher_not_found"),
        "get_dataset": ("GET", f"/v1/datasets/ds_{missing}", None, "dataset_not_found"),
        "delete_dataset": ("DELETE", f"/v1/datasets/ds_{missing}", None, "dataset_not_found"),
        "get_job": ("GET", f"/v1/jobs/job_{missing}", None, "job_not_found"),
        "cancel_job": ("POST", f"/v1/jobs/job_{missing}/cancel", None, "job_not_found"),
        "job_events": ("GET", f"/v1/jobs/job_{missing}/events", None, "job_not_found"),
        "get_model": ("GET", f"/v1/models/mdl_{missing}", None, "model_not_found"),
        "model_artifact": ("GET", f"/v1/models/mdl_{missing}/artifact", None, "model_not_found"),
        "delete_model": ("DELETE", f"/v1/models/mdl_{missing}", None, "model_not_found"),
        "job_with_missing_teacher": ("POST", "/v1/jobs", {**job, "teacher_id": f"tch_{missing}"},
                                     "teacher_not_found"),
        "job_with_missing_dataset": ("POST", "/v1/jobs", {**job, "train_dataset_id": f"ds_{missing}"},
                                     "dataset_not_found"),
        "id_with_quote": ("GET", "/v1/jobs/job_'; DROP TABLE jobs;--", None, None),
        "id_dotdot": ("GET", "/v1/models/..%2F..%2Fetc%2Fpasswd/artifact", None, None),
        "id_unicode": ("GET", "/v1/teachers/tch_\u00e9\u00e8", None, None),
        "id_very_long": ("GET", "/v1/datasets/ds_" + "a" * 5000, None, None),
        "id_with_nul": ("GET", "/v1/jobs/job_%00", None, None),
    }.items():
        s.check(name, s.client.request(method, path, headers=auth_a, json=body), (404, 422), code)
    for name, uri in {"etc_passwd": "/etc/passwd", "file_root": "file:///", "file_etc": "file:///etc",
                      "root_dotdot": f"{root}/..", "dotdot_inside": f"{root}/x/../../etc",
                      "relative_dotdot": "../../etc", "home": "~/.ssh", "s3_not_allowed": "s3://other/model",
                      "file_host": "file://evil.example.com/etc"}.items():
        s.check(f"teacher_uri_{name}", s.client.post("/v1/teachers", headers=auth_a, json={"uri": uri}), 422,
                "uri_not_allowed")
    s.finish(figures)


def test_upload_over_the_limit_is_refused_while_streaming(live_server, auth_a, figures) -> None:
    """Real HTTP, chunked body, no Content-Length: the server answers 413 long before the body ends."""
    server, _ = live_server(max_upload_bytes=1_000_000)
    total = 256 * 65536  # 16 MiB offered
    sent = 0

    def body():
        nonlocal sent
        head = (b'--b\r\nContent-Disposition: form-data; name="file"; filename="big.tar.gz"\r\n'
                b"Content-Type: application/octet-stream\r\n\r\n")
        sent += len(head)
        yield head
        for _ in range(total // 65536):
            sent += 65536
            yield b"\0" * 65536
        yield b"\r\n--b--\r\n"

    headers = {**auth_a, "Content-Type": "multipart/form-data; boundary=b"}
    with httpx.Client(base_url=server.url, timeout=60) as http:
        try:
            response = http.post("/v1/teachers", headers=headers, content=body())
            status, code = response.status_code, response.json()["error"]["code"]
        except httpx.TransportError as exc:  # the server may close while we still write: then read no answer
            pytest.fail(f"no answer: {exc!r}")
    tmp_files = list((server.app.state.settings.data_dir / "tmp").iterdir())
    figures(f"offered {total:,} bytes / limit 1,000,000 / sent before the 413: {sent:,} / temp files left "
            f"{len(tmp_files)}")
    assert status == 413 and code == "upload_too_large"
    assert sent < total // 2
    assert tmp_files == []
