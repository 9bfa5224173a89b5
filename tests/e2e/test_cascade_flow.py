"""Issue 22's traffic round trip through real processes (API + Celery worker, Postgres + Redis):
serve a cascade, defer, keep, redistil, and a lower share deferred at the same target.

The transfer rows are unlabelled and the eval rows carry the teacher's own answers as labels (an eval
set must be labelled), so the truth is the teacher's answer everywhere (validation and evaluation):
the share deferred at a target measures how often the student disagrees with its teacher, which is
exactly what the kept traffic teaches it.
"""

from __future__ import annotations

import pytest

from tests.tiny import make_text_rows, write_csv

pytestmark = [pytest.mark.service, pytest.mark.timeout(420)]
HYPER = {"epochs": 8, "seed": 0}
TARGET = 0.95


def _unlabelled(rows: list[dict]) -> list[dict]:
    return [{"text": r["text"], "label": ""} for r in rows]


def _balanced_teacher(teacher_dir, texts: list[str], out_dir):  # noqa: ANN001, ANN202
    """The tiny random teacher with its classifier bias moved so that it answers the second class on
    ~3% of ``texts`` (random, it answers one class everywhere, and a one-class eval set is refused);
    close to one class, so what the student has to learn from its teacher stays learnable."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(teacher_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(teacher_dir)
    with torch.no_grad():
        logits = model(**tokenizer(texts, padding=True, truncation=True, max_length=128, return_tensors="pt")).logits
        model.classifier.bias[1] -= torch.quantile(logits[:, 1] - logits[:, 0], 0.97)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def _teacher_labelled(teacher_dir, rows: list[dict]) -> list[dict]:  # noqa: ANN001
    """The rows labelled with the teacher's argmax (its own label names)."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(teacher_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(teacher_dir)
    texts = [r["text"] for r in rows]
    with torch.no_grad():
        batch = tokenizer(texts, padding=True, truncation=True, max_length=128, return_tensors="pt")
        predicted = model(**batch).logits.argmax(-1).tolist()
    return [{"text": t, "label": model.config.id2label[i]} for t, i in zip(texts, predicted, strict=True)]


def test_serve_defer_keep_redistil(service_client, celery_worker_process, tiny_teacher_dir, tmp_path):
    client = service_client
    eval_texts = make_text_rows(300, seed=12)
    teacher_dir = _balanced_teacher(tiny_teacher_dir, [r["text"] for r in eval_texts], tmp_path / "teacher")
    teacher = client.upload_teacher(teacher_dir, name="tiny")
    train = client.upload_dataset(write_csv(tmp_path / "train.csv", _unlabelled(make_text_rows(120, seed=11))),
                                  label_column=None)
    eval_rows = _teacher_labelled(teacher_dir, eval_texts)
    assert len({r["label"] for r in eval_rows}) == 2
    evald = client.upload_dataset(write_csv(tmp_path / "eval.csv", eval_rows))
    job = client.create_job(teacher["id"], train["id"], eval_dataset_id=evald["id"], method="kd", student="ngram",
                            device="cpu", hyperparameters=HYPER)
    job = client.wait_job(job["id"], poll=0.5, timeout=180)
    assert job["status"] == "succeeded", f"{job['error']}\n{celery_worker_process.log_tail()}"
    parent = client.get_model(job["model_id"])
    assert parent["metrics"]["calibration"]["temperature"] > 0

    cascade = client.set_cascade(parent["id"], target_accuracy=TARGET, keep_traffic=True, max_kept_rows=2000)
    assert cascade["cascade"]["threshold"] > 0
    traffic = [r["text"] for r in make_text_rows(1200, seed=13)]  # the traffic: like the eval rows, never seen
    served = []
    for i in range(0, len(traffic), 100):
        served += client.predict(parent["id"], traffic[i:i + 100])["predictions"]
    deferred = sum(p["served_by"] == "teacher" for p in served)
    assert 0 < deferred < len(traffic)
    assert client.traffic(parent["id"])["kept_rows"] == deferred

    job2 = client.redistil(parent["id"])
    assert job2["hyperparameters"]["cascade_reference"]["kept_rows"] == deferred
    job2 = client.wait_job(job2["id"], poll=0.5, timeout=240)
    assert job2["status"] == "succeeded", f"{job2['error']}\n{celery_worker_process.log_tail()}"
    child = client.get_model(job2["model_id"])
    redistil = child["metrics"]["cascade"]["redistil"]
    assert redistil["from_model_id"] == parent["id"] and redistil["target"] == TARGET
    before = next(t for t in parent["metrics"]["cascade"]["targets"] if t["target"] == TARGET)["deferred_fraction"]
    assert redistil["deferred_before"] == before
    print("redistil:", redistil)  # the figures for the closing note (pytest -s)
    assert redistil["deferred_after"] < before, redistil
