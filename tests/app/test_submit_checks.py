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
    # Every job holds out a validation split from its training rows too, even with an eval dataset.
    error = _refused(_submit(client, auth_a, {**job_body, "train_dataset_id": tiny["id"],
                                              "eval_dataset_id": job_body["train_dataset_id"]}), 422,
                     "too_few_rows", "train_dataset_id")
    assert "validation split" in error["message"]
    forty = upload_dataset(auth_a, _csv(make_text_rows(40, seed=6)), "forty.csv")
    assert _submit(client, auth_a, {**job_body, "train_dataset_id": forty["id"],
                                    "eval_dataset_id": job_body["train_dataset_id"]}).status_code == 202
    # 50 rows: the test split keeps 30, too few for the validation split, whatever the method.
    fifty = upload_dataset(auth_a, _csv(make_text_rows(50, seed=5)), "fifty.csv")
    for method in ("kd", "auto"):
        _refused(_submit(client, auth_a, {**job_body, "train_dataset_id": fifty["id"], "method": method}), 422,
                 "too_few_rows", "train_dataset_id")
    sixty = upload_dataset(auth_a, _csv(make_text_rows(60, seed=7)), "sixty.csv")
    assert _submit(client, auth_a, {**job_body, "train_dataset_id": sixty["id"]}).status_code == 202


@pytest.mark.parametrize(("rows", "labelled"), [(n, k) for n in (20, 39, 40, 41, 45, 59, 60, 61, 100, 450)
                                                  for k in sorted({0, n // 3, n // 2, n - 1, n})])
def test_split_arithmetic_matches_the_library(rows: int, labelled: int) -> None:
    """``split_sizes`` (what the submit checks read) predicts exactly what ``split_rows`` draws, or its refusal."""
    import numpy as np

    from app.services import job_checks
    from lelp.data.splits import split_sizes
    from lelp.errors import ConfigError
    from lelp.pipeline import split_rows

    assert job_checks.split_sizes is split_sizes  # the submit checks hold no copy of the arithmetic

    labels = np.array([0] * labelled + [-1] * (rows - labelled))
    try:
        kept, held = split_rows(labels, 0.1, seed=0)
        expected = (len(kept), len(held))
        assert (labels[held] >= 0).all() == split_sizes(rows, labelled).from_labelled or labelled == rows
    except ConfigError:
        expected = None
    sizes = split_sizes(rows, labelled)
    assert (sizes and (sizes.kept, sizes.held)) == expected


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


def test_requests_that_cannot_give_a_meaningful_result_are_refused(client, auth_a, job_body, upload_dataset,
                                                                   enqueued) -> None:  # noqa: ANN001
    """Issue 19: an eval set without labels, labelled rows of one class (train or eval), labels the teacher
    does not know in the eval set: each a 422 naming the dataset, nothing queued (``lelp.data.label_checks``)."""
    two = _csv(make_text_rows(60, seed=4))
    # The file has a "label" column, but it was uploaded as unlabelled: before, the worker read it anyway.
    unlabelled_eval = upload_dataset(auth_a, two, "dev.csv", label_column="")
    error = _refused(_submit(client, auth_a, {**job_body, "eval_dataset_id": unlabelled_eval["id"]}),
                     422, "eval_labels_required", "eval_dataset_id")
    assert unlabelled_eval["id"] in error["message"] and "no labels" in error["message"]
    blank = upload_dataset(auth_a, b"text,label\n" + b"hello there,\n" * 40, "blank.csv")
    assert blank["labelled_rows"] == 0
    _refused(_submit(client, auth_a, {**job_body, "eval_dataset_id": blank["id"]}), 422, "eval_labels_required",
             "eval_dataset_id")
    one_class = upload_dataset(auth_a, _csv(make_text_rows(60, labels=("positive",))), "pos.csv")
    for method in ("kd", "lelp", "ce", "auto"):  # every method: a single class is nothing to learn or score
        error = _refused(_submit(client, auth_a, {**job_body, "method": method, "train_dataset_id": one_class["id"]}),
                         422, "single_class", "train_dataset_id")
        assert "'positive'" in error["message"]
    _refused(_submit(client, auth_a, {**job_body, "eval_dataset_id": one_class["id"]}), 422, "single_class",
             "eval_dataset_id")
    # "Positive" and "1" name the teacher's class 1 too: still a single class.
    spelled = upload_dataset(auth_a, b"text,label\n" + b"good,positive\nfine,Positive\nnice,1\n" * 20, "spelled.csv")
    _refused(_submit(client, auth_a, {**job_body, "train_dataset_id": spelled["id"]}), 422, "single_class",
             "train_dataset_id")
    three = upload_dataset(auth_a, _csv(make_text_rows(60, labels=("negative", "positive", "neutral"))), "3.csv")
    error = _refused(_submit(client, auth_a, {**job_body, "eval_dataset_id": three["id"]}), 422, "unknown_label",
                     "eval_dataset_id")
    assert "neutral" in error["message"] and "negative, positive" in error["message"]
    assert enqueued == []
    # What stays accepted: unlabelled transfer data with a labelled eval set, and no labels at all.
    transfer = upload_dataset(auth_a, b"text\n" + b"hi there\nyo there\n" * 30, "transfer.csv", label_column="")
    two_eval = upload_dataset(auth_a, two, "dev2.csv")
    assert _submit(client, auth_a, {**job_body, "train_dataset_id": transfer["id"],
                                    "eval_dataset_id": two_eval["id"]}).status_code == 202
    assert _submit(client, auth_a, {**job_body, "train_dataset_id": transfer["id"]}).status_code == 202


def test_a_validation_dataset_is_checked_like_the_others_and_kept_on_the_job(client, auth_a, auth_b, job_body,
                                                                            upload_dataset, enqueued) -> None:  # noqa: ANN001
    """Issue 22: rows like the traffic replace the validation split; a bad one is a 4xx naming its field."""
    other_tenant = upload_dataset(auth_b, _csv(make_text_rows(40, seed=3)))
    _refused(_submit(client, auth_a, {**job_body, "validation_dataset_id": other_tenant["id"]}),
             404, "dataset_not_found", "validation_dataset_id")
    few = upload_dataset(auth_a, _csv(make_text_rows(12, seed=3)))
    _refused(_submit(client, auth_a, {**job_body, "validation_dataset_id": few["id"]}),
             422, "too_few_rows", "validation_dataset_id")
    odd = upload_dataset(auth_a, _csv([{"text": r["text"], "label": "maybe"} for r in make_text_rows(30, seed=4)]))
    error = _refused(_submit(client, auth_a, {**job_body, "validation_dataset_id": odd["id"]}),
                     422, "unknown_label", "validation_dataset_id")
    assert f"validation dataset {odd['id']}" in error["message"]
    renamed = upload_dataset(auth_a, b"sentence,label\n" + b"a good film,positive\na bad one,negative\n" * 20,
                             text_column="sentence")
    _refused(_submit(client, auth_a, {**job_body, "validation_dataset_id": renamed["id"]}),
             422, "column_mismatch", "validation_dataset_id")
    assert enqueued == []
    # unlabelled traffic is fine: its rows are scored against the teacher's answers
    traffic = upload_dataset(auth_a, b"text\n" + "".join(f"{r['text']}\n" for r in make_text_rows(30, seed=5)).encode(),
                             label_column="")
    r = _submit(client, auth_a, {**job_body, "validation_dataset_id": traffic["id"]})
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["validation_dataset_id"] == traffic["id"]
    assert client.get(f"/v1/jobs/{job['id']}", headers=auth_a).json()["validation_dataset_id"] == traffic["id"]
    # a dataset a queued job validates on is in use: not deleted from under it
    assert client.delete(f"/v1/datasets/{traffic['id']}", headers=auth_a).status_code == 409
    assert len(enqueued) == 1
