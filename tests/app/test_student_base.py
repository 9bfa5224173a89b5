"""``student.base`` names a model the tenant registered, never a path on the server.

The hole this closes: a job whose ``student.base`` was a server path made the worker copy
that directory (another tenant's teacher included, and whatever a symlink in it pointed at)
into an artifact the tenant could download.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.app.conftest import tar_gz_of


def _submit(client, headers, body):  # noqa: ANN001, ANN202
    return client.post("/v1/jobs", headers=headers, json=body)


def _encoder_job(job_body: dict, base: str) -> dict:
    return {**job_body, "student": {"kind": "encoder_mlp", "base": base}}


def _upload_base(client, headers, directory: Path, name: str = "tiny-encoder"):  # noqa: ANN001, ANN202
    return client.post("/v1/base-models", headers=headers, files={"file": (f"{name}.tar.gz", tar_gz_of(directory))},
                       data={"name": name})


def _store_files(client, prefix: str) -> list[str]:  # noqa: ANN001
    root = Path(client.app.state.settings.artifact_url) / prefix
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()) if root.exists() else []


def test_base_model_upload_skips_the_head_check_and_keeps_only_model_files(client, auth_a, auth_b,
                                                                           tiny_encoder_dir, tmp_path) -> None:  # noqa: ANN001
    model = tmp_path / "encoder"
    shutil.copytree(tiny_encoder_dir, model)
    (model / "private-notes.txt").write_text("not part of the model")
    r = _upload_base(client, auth_a, model)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["id"].startswith("bm_") and body["architecture"] == "BertModel" and body["hidden_size"] == 24
    assert body["parameters"] > 0 and len(body["sha256"]) == 64
    stored = _store_files(client, f"base_models/{body['id']}")
    assert "private-notes.txt" not in stored and {"config.json", "model.safetensors", "vocab.txt"} <= set(stored)
    assert client.get(f"/v1/base-models/{body['id']}", headers=auth_a).json() == body
    assert [b["id"] for b in client.get("/v1/base-models", headers=auth_a).json()["data"]] == [body["id"]]
    assert client.get(f"/v1/base-models/{body['id']}", headers=auth_b).status_code == 404
    assert client.get("/v1/base-models", headers=auth_b).json()["data"] == []
    # A teacher upload of the same encoder is refused: a teacher needs a classification head.
    r = client.post("/v1/teachers", headers=auth_a, files={"file": ("enc.tar.gz", tar_gz_of(model))})
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_teacher"
    assert client.delete(f"/v1/base-models/{body['id']}", headers=auth_b).status_code == 404
    assert client.delete(f"/v1/base-models/{body['id']}", headers=auth_a).status_code == 204
    assert _store_files(client, f"base_models/{body['id']}") == []


def test_a_server_path_as_base_is_refused_at_submit(client, auth_a, job_body, tiny_teacher_dir, enqueued) -> None:  # noqa: ANN001
    # URIs off (the default): any path is refused, however real it is.
    r = _submit(client, auth_a, _encoder_job(job_body, str(tiny_teacher_dir)))
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == "uri_not_allowed" and r.json()["error"]["param"] == "student.base"
    for base in ("/etc", "file:///etc", "bert-base-uncased", "../teachers/x"):
        r = _submit(client, auth_a, _encoder_job(job_body, base))
        assert r.status_code == 422 and r.json()["error"]["param"] == "student.base", (base, r.text)
    assert enqueued == [] and client.get("/v1/jobs", headers=auth_a).json()["data"] == []


def test_another_tenants_teacher_or_base_model_is_a_404(client, auth_a, auth_b, job_body, upload_teacher,
                                                       tiny_encoder_dir, enqueued) -> None:  # noqa: ANN001
    their_teacher = upload_teacher(auth_b)["id"]
    their_base = _upload_base(client, auth_b, tiny_encoder_dir).json()["id"]
    for base, code in ((their_teacher, "teacher_not_found"), (their_base, "base_model_not_found"),
                       ("bm_doesnotexist", "base_model_not_found")):
        r = _submit(client, auth_a, _encoder_job(job_body, base))
        assert r.status_code == 404, r.text
        assert r.json()["error"]["code"] == code and r.json()["error"]["param"] == "student.base"
        assert base in r.json()["error"]["message"]
    assert enqueued == []


def test_own_ids_are_accepted_and_stored_as_ids(client, auth_a, job_body, tiny_encoder_dir, enqueued) -> None:  # noqa: ANN001
    base = _upload_base(client, auth_a, tiny_encoder_dir).json()["id"]
    r = _submit(client, auth_a, _encoder_job(job_body, base))
    assert r.status_code == 202, r.text
    assert r.json()["student"] == {"kind": "encoder_mlp", "base": base}
    # The teacher itself may be the base of a transformer student.
    transformer = {"kind": "transformer", "base": job_body["teacher_id"]}
    r = _submit(client, auth_a, {**job_body, "student": transformer})
    assert r.status_code == 202, r.text
    # ... and neither can be deleted while a queued job starts from it.
    r = client.delete(f"/v1/base-models/{base}", headers=auth_a)
    assert r.status_code == 409 and r.json()["error"]["code"] == "base_model_in_use"


@pytest.fixture
def roots(tmp_path, tiny_encoder_dir) -> tuple[Path, Path]:  # noqa: ANN001
    allowed = tmp_path / "allowed"
    shutil.copytree(tiny_encoder_dir, allowed / "encoder")
    outside = tmp_path / "outside"
    shutil.copytree(tiny_encoder_dir, outside / "encoder")
    (outside / "secret.txt").write_text("secret")
    (allowed / "escape").symlink_to(outside)  # a directory link out of the root
    linked = allowed / "linked-encoder"
    shutil.copytree(tiny_encoder_dir, linked)
    (linked / "tokenizer_config.json").unlink()
    (linked / "tokenizer_config.json").symlink_to(outside / "secret.txt")  # a file link inside a model dir
    (tmp_path / "allowed-sibling").mkdir()  # "/allowed" must not allow "/allowed-sibling"
    shutil.copytree(tiny_encoder_dir, tmp_path / "allowed-sibling" / "encoder")
    return allowed, outside


def test_uri_bases_follow_the_teacher_uri_rules(make_client, key_a, job_body_for, roots, enqueued) -> None:  # noqa: ANN001
    allowed, outside = roots
    client = make_client(allowed_uri_roots=[str(allowed)])
    auth = {"Authorization": f"Bearer {key_a}"}
    body = job_body_for(client, auth)
    refused = {
        "symlink escape": str(allowed / "escape" / "encoder"),
        "dotdot": f"{allowed}/../outside/encoder",
        "component prefix": str(allowed.parent / "allowed-sibling" / "encoder"),
        "outside": str(outside / "encoder"),
    }
    for what, uri in refused.items():
        r = _submit(client, auth, _encoder_job(body, uri))
        assert r.status_code == 422, (what, r.text)
        assert r.json()["error"]["code"] == "uri_not_allowed" and r.json()["error"]["param"] == "student.base"
    r = _submit(client, auth, _encoder_job(body, str(allowed / "linked-encoder")))
    assert r.status_code == 422 and r.json()["error"]["param"] == "student.base"
    assert "link" in r.json()["error"]["message"] and "secret" not in r.json()["error"]["message"]
    assert enqueued == [] and client.get("/v1/base-models", headers=auth).json()["data"] == []
    # Under the root: registered as a base model (copied into the store) and named by its id.
    r = _submit(client, auth, _encoder_job(body, f"file://{allowed / 'encoder'}"))
    assert r.status_code == 202, r.text
    registered = client.get("/v1/base-models", headers=auth).json()["data"]
    assert [b["id"] for b in registered] == [r.json()["student"]["base"]] and registered[0]["name"] == "encoder"


@pytest.fixture
def job_body_for(tiny_teacher_dir, train_csv_bytes):  # noqa: ANN001, ANN201
    def make(client, headers: dict) -> dict:  # noqa: ANN001
        archive = tar_gz_of(tiny_teacher_dir)
        teacher = client.post("/v1/teachers", headers=headers, files={"file": ("t.tar.gz", archive)})
        dataset = client.post("/v1/datasets", headers=headers, files={"file": ("train.csv", train_csv_bytes)})
        assert teacher.status_code == 201 and dataset.status_code == 201
        return {"teacher_id": teacher.json()["id"], "train_dataset_id": dataset.json()["id"], "method": "kd"}

    return make


def test_copying_a_model_dir_never_follows_links_or_takes_stray_files(tmp_path, tiny_encoder_dir) -> None:  # noqa: ANN001
    from lelp.errors import TeacherError
    from lelp.uploads.model_files import copy_model_files

    source = tmp_path / "src"
    shutil.copytree(tiny_encoder_dir, source)
    (source / "notes.txt").write_text("stray")
    (source / "sub").mkdir()
    (source / "sub" / "x.bin").write_text("stray")
    names = copy_model_files(source, tmp_path / "copy")
    copied = sorted(p.name for p in (tmp_path / "copy").iterdir())
    assert copied == names and "notes.txt" not in copied and "sub" not in copied and "config.json" in copied
    (source / "vocab.txt").unlink()
    (source / "vocab.txt").symlink_to("/etc/hostname")
    with pytest.raises(TeacherError, match="symbolic link"):
        copy_model_files(source, tmp_path / "copy2")
    assert not (tmp_path / "copy2" / "vocab.txt").exists()
