"""Every job body that cannot run is a 4xx at ``POST /v1/jobs``, with the field in ``param``.

Before, each of these was accepted (202) and failed later in the worker, or (for predict)
answered with a different score instead of an error.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.tiny import make_text_rows

NLI = b"premise,hypothesis,label\n" + b"a cat sat,an animal sat,positive\nit rains,it is dry,negative\n" * 40


def _submit(client, headers, body):  # noqa: ANN001, ANN202
    return client.post("/v1/jobs", headers=headers, json=body)


def _refused(r, status: int, code: str, param: str) -> dict:  # noqa: ANN001
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert (error["code"], error["param"]) == (code, param), error
    return error


def _csv(rows: list[dict]) -> bytes:
    return ("text,label\n" + "".join(f"{r['text']},{r['label']}\n" for r in rows)).encode()


def test_encoder_mlp_without_a_base_and_ngram_with_one(client, auth_a, job_body, enqueued) -> None:  # noqa: ANN001
    error = _refused(_submit(client, auth_a, {**job_body, "student": {"kind": "encoder_mlp"}}),
                     422, "base_required", "student.base")
    assert "--" not in error["message"]
    ngram = {"kind": "ngram", "base": job_body["teacher_id"]}
    _refused(_submit(client, auth_a, {**job_body, "student": ngram}), 422, "base_not_used", "student.base")
    assert enqueued == []


def test_student_auto_and_its_speed_floor(client, auth_a, job_body, enqueued) -> None:  # noqa: ANN001
    auto = {**job_body, "student": {"kind": "auto", "min_speedup": 150}, "hyperparameters": {"augment": "auto"}}
    r = _submit(client, auth_a, auto)
    assert r.status_code == 202, r.text
    assert r.json()["student"]["kind"] == "auto" and r.json()["student"]["min_speedup"] == 150
    _refused(_submit(client, auth_a, {**job_body, "student": {"kind": "cnn", "min_speedup": 150}}),
             422, "invalid_parameter", "student.min_speedup")
    _refused(_submit(client, auth_a, {**job_body, "student": {"kind": "auto", "base": job_body["teacher_id"]}}),
             422, "base_not_used", "student.base")
    assert len(enqueued) == 1


def test_text_pairs_on_a_single_text_teacher_and_the_reverse(client, auth_a, job_body, upload_dataset,
                                                            teacher_tar_gz) -> None:  # noqa: ANN001
    pairs = upload_dataset(auth_a, NLI, "nli.csv", text_column="premise", text_pair_column="hypothesis")
    error = _refused(_submit(client, auth_a, {**job_body, "train_dataset_id": pairs["id"]}),
                     422, "text_pairs_mismatch", "train_dataset_id")
    assert "text_pairs=true" in error["message"]
    r = client.post("/v1/teachers", headers=auth_a, files={"file": ("nli.tar.gz", teacher_tar_gz)},
                    data={"text_pairs": "true"})
    assert r.status_code == 201 and r.json()["text_pairs"] is True
    pair_teacher = r.json()["id"]
    assert _submit(client, auth_a, {**job_body, "teacher_id": pair_teacher, "train_dataset_id": pairs["id"]}
                   ).status_code == 202
    _refused(_submit(client, auth_a, {**job_body, "teacher_id": pair_teacher}), 422, "text_pairs_mismatch",
             "train_dataset_id")
    _refused(_submit(client, auth_a, {**job_body, "teacher_id": pair_teacher, "train_dataset_id": pairs["id"],
                                      "eval_dataset_id": job_body["train_dataset_id"]}),
             422, "text_pairs_mismatch", "eval_dataset_id")
    r = client.post("/v1/teachers", headers=auth_a, files={"file": ("x.tar.gz", teacher_tar_gz)},
                    data={"text_pairs": "maybe"})
    assert r.status_code == 422 and r.json()["error"]["param"] == "text_pairs"


def test_more_subclasses_than_the_teacher_embedding_or_the_classes_hold(client, auth_a, job_body,
                                                                        upload_dataset) -> None:  # noqa: ANN001
    # The tiny teacher's embedding has 32 dimensions: S + C must fit in it.
    hp = {"subclasses": 31, "epochs": 1}
    error = _refused(_submit(client, auth_a, {**job_body, "hyperparameters": hp}), 422, "too_many_subclasses",
                     "hyperparameters.subclasses")
    assert "subclasses <= 30" in error["message"]
    assert _submit(client, auth_a, {**job_body, "hyperparameters": {"subclasses": 30}}).status_code == 202
    assert _submit(client, auth_a, {**job_body, "method": "kd", "hyperparameters": hp}).status_code == 202
    # With an eval set and every row labelled, each class needs S + 1 rows of its own.
    few = upload_dataset(auth_a, _csv(make_text_rows(40, seed=3)), "eval.csv")
    skewed = upload_dataset(auth_a, b"text,label\n" + b"good film,positive\n" * 50 + b"bad film,negative\n" * 3,
                            "skewed.csv")
    body = {**job_body, "train_dataset_id": skewed["id"], "eval_dataset_id": few["id"],
            "hyperparameters": {"subclasses": 4}}
    error = _refused(_submit(client, auth_a, body), 422, "too_many_subclasses", "hyperparameters.subclasses")
    assert "'negative' has 3 rows" in error["message"]
    assert _submit(client, auth_a, {**body, "hyperparameters": {"subclasses": 2}}).status_code == 202


def test_too_few_rows_for_the_held_out_splits(client, auth_a, job_body, upload_dataset) -> None:  # noqa: ANN001
    tiny = upload_dataset(auth_a, _csv(make_text_rows(30, seed=4)), "tiny.csv")
    _refused(_submit(client, auth_a, {**job_body, "train_dataset_id": tiny["id"]}), 422, "too_few_rows",
             "train_dataset_id")
    assert _submit(client, auth_a, {**job_body, "train_dataset_id": tiny["id"],
                                    "eval_dataset_id": job_body["train_dataset_id"]}).status_code == 202
    # auto holds out a validation split as well.
    fifty = upload_dataset(auth_a, _csv(make_text_rows(50, seed=5)), "fifty.csv")
    assert _submit(client, auth_a, {**job_body, "train_dataset_id": fifty["id"]}).status_code == 202
    _refused(_submit(client, auth_a, {**job_body, "train_dataset_id": fifty["id"], "method": "auto"}), 422,
             "too_few_rows", "train_dataset_id")


@pytest.mark.parametrize(("rows", "labelled"), [(n, k) for n in (20, 39, 40, 41, 45, 59, 60, 61, 100, 450)
                                                  for k in sorted({0, n // 3, n // 2, n - 1, n})])
def test_split_arithmetic_matches_the_library(rows: int, labelled: int) -> None:
    """``job_checks.split_sizes`` predicts exactly when ``lelp.pipeline.split_rows`` refuses."""
    import numpy as np

    from app.services.job_checks import split_sizes
    from lelp.errors import ConfigError
    from lelp.pipeline import split_rows

    labels = np.array([0] * labelled + [-1] * (rows - labelled))
    try:
        kept, held = split_rows(labels, 0.1, seed=0)
        expected = (len(kept), len(held))
    except ConfigError:
        expected = None
    assert split_sizes(rows, labelled) == expected


def test_gpu_needs_a_live_gpu_worker(client, auth_a, job_body, db) -> None:  # noqa: ANN001
    from app.db import repositories as repo
    from app.db.models import Worker

    body = {**job_body, "device": "gpu"}
    error = _refused(_submit(client, auth_a, body), 422, "no_gpu_worker", "device")
    assert "consumes the gpu queue" in error["message"]
    # A worker that consumes the gpu queue on a machine without a GPU (the embedded one) does not count.
    repo.beat_worker(db, "embedded@host", ["cpu", "gpu"], ["cpu"])
    db.commit()
    _refused(_submit(client, auth_a, body), 422, "no_gpu_worker", "device")
    repo.beat_worker(db, "gpu1@host", ["gpu"], ["cpu", "cuda:0"])
    db.commit()
    r = _submit(client, auth_a, body)
    assert r.status_code == 202 and r.json()["device"] == "gpu"
    # One whose heartbeat went stale is gone.
    stale = db.get(Worker, "gpu1@host")
    stale.heartbeat_at = stale.heartbeat_at - timedelta(seconds=client.app.state.settings.heartbeat_stale_s + 1)
    db.commit()
    _refused(_submit(client, auth_a, body), 422, "no_gpu_worker", "device")
    assert _submit(client, auth_a, {**job_body, "device": "auto"}).status_code == 202


def test_worker_registration_beats_and_leaves(make_settings, db) -> None:  # noqa: ANN001
    from app.db import repositories as repo
    from app.db.base import utcnow
    from worker.registry import WorkerRegistration, visible_gpus

    registration = WorkerRegistration(make_settings(), "w1@test", ["gpu", "cpu"], ["cpu", "cuda:0"]).start()
    try:
        live = repo.live_workers(db, utcnow() - timedelta(seconds=60))
        assert [(w.hostname, w.queues, w.devices) for w in live] == [("w1@test", ["cpu", "gpu"], ["cpu", "cuda:0"])]
    finally:
        registration.stop()
    db.expire_all()
    assert repo.live_workers(db, utcnow() - timedelta(seconds=60)) == []
    assert visible_gpus("/nonexistent") == []


def test_predict_refuses_the_wrong_input_shape(client, auth_a, make_model, job_body, db) -> None:  # noqa: ANN001
    from app.db.models import Model

    model = make_model(auth_a, job_body)
    row = db.get(Model, model["id"])
    row.text_pairs = False
    db.commit()
    pair = {"inputs": [{"text": "a good film", "text_pair": "it was fine"}]}
    _refused(client.post(f"/v1/models/{model['id']}/predict", headers=auth_a, json=pair), 422,
             "text_pairs_mismatch", "inputs")
    texts = {"inputs": ["good"]}
    assert client.post(f"/v1/models/{model['id']}/predict", headers=auth_a, json=texts).status_code == 200
    client.app.state.inference._refs.clear()  # noqa: SLF001 - the ref cache holds the flag for 30 s
    row.text_pairs = True
    db.commit()
    _refused(client.post(f"/v1/models/{model['id']}/predict", headers=auth_a, json={"inputs": ["good"]}), 422,
             "text_pairs_mismatch", "inputs")
    assert client.post(f"/v1/models/{model['id']}/predict", headers=auth_a, json=pair).status_code == 200
    assert client.get(f"/v1/models/{model['id']}", headers=auth_a).json()["text_pairs"] is True


def test_labels_match_the_teacher_in_any_case_as_lelp_distill_does(client, auth_a, job_body, upload_dataset,
                                                                  enqueued) -> None:  # noqa: ANN001
    """Teacher labels ``negative/positive``; a dataset that writes ``Positive``/``NEGATIVE`` is accepted.

    The submit check and the worker's ``encode_labels`` use one rule (``lelp.data.datasets.label_matcher``);
    a label the teacher does not know is still refused.
    """
    from lelp.data.datasets import encode_labels

    rows = [{"text": f"row {i} good", "label": "Positive"} for i in range(40)]
    rows += [{"text": f"row {i} bad", "label": "NEGATIVE"} for i in range(40)]
    mixed = upload_dataset(auth_a, _csv(rows), "mixed_case.csv")
    assert encode_labels(["Positive", "NEGATIVE"], ["negative", "positive"]) == [1, 0]  # what the worker does
    r = _submit(client, auth_a, {**job_body, "train_dataset_id": mixed["id"]})
    assert r.status_code == 202, r.text
    odd = upload_dataset(auth_a, _csv([{"text": f"r{i}", "label": "Neutral" if i % 2 else "positive"}
                                       for i in range(80)]), "odd.csv")
    error = _refused(_submit(client, auth_a, {**job_body, "train_dataset_id": odd["id"]}),
                     422, "unknown_label", "train_dataset_id")
    assert "Neutral" in error["message"]
