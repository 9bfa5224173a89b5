"""An owned student base, end to end through the real API and a real Celery worker.

The tenant uploads a pretrained encoder as a base model and names it by its id in an
``encoder_mlp`` job; the artifact carries the encoder's own files and nothing else.
The worker also shows up in the worker registry the API uses to judge ``device: gpu``.
"""

from __future__ import annotations

import shutil
import tarfile

import pytest

from app.client.http import ApiError
from tests.tiny import make_text_rows, write_csv

pytestmark = [pytest.mark.service, pytest.mark.timeout(300), pytest.mark.slow]


def test_encoder_mlp_from_an_owned_base_model(service_client, celery_worker_process, tiny_teacher_dir,
                                              tiny_encoder_dir, tmp_path, pg_url):
    client = service_client
    encoder = tmp_path / "encoder"
    shutil.copytree(tiny_encoder_dir, encoder)
    (encoder / "notes.txt").write_text("a stray file beside the model")
    base = client.upload_base_model(encoder, name="tiny-encoder")
    assert base["id"].startswith("bm_") and base["architecture"] == "BertModel"
    teacher = client.upload_teacher(tiny_teacher_dir)
    train = client.upload_dataset(write_csv(tmp_path / "train.csv", make_text_rows(160, seed=1)))
    evald = client.upload_dataset(write_csv(tmp_path / "eval.csv", make_text_rows(40, seed=2)))

    with pytest.raises(ApiError) as refused:  # judged at submit, not failed in the worker
        client.create_job(teacher["id"], train["id"], student="encoder_mlp", device="cpu")
    assert refused.value.status == 422 and refused.value.param == "student.base"

    job = client.create_job(teacher["id"], train["id"], eval_dataset_id=evald["id"], method="kd",
                            student="encoder_mlp", student_base=base["id"], device="cpu",
                            hyperparameters={"epochs": 2, "seed": 0})
    assert job["student"] == {"kind": "encoder_mlp", "base": base["id"]}
    job = client.wait_job(job["id"], poll=0.5, timeout=240)
    assert job["status"] == "succeeded", f"{job['error']}\n{celery_worker_process.log_tail()}"
    model = client.get_model(job["model_id"])
    assert model["kind"] == "encoder_mlp" and model["text_pairs"] is False
    answer = client.predict(model["id"], ["a lovely great film"])
    assert answer["predictions"][0]["label"] in ("negative", "positive")

    archive = client.download_artifact(model["id"], tmp_path)
    with tarfile.open(archive) as tar:
        encoder_files = sorted(n.split("/encoder/", 1)[1] for n in tar.getnames() if "/encoder/" in n)
        manifest = tar.extractfile(f"{model['id']}/lelp_student.json").read().decode()
    assert "notes.txt" not in encoder_files and {"config.json", "model.safetensors", "vocab.txt"} <= set(encoder_files)
    assert f'"train_sha256": "{train["sha256"]}"' in manifest  # one dataset hash everywhere

    from datetime import timedelta

    from app.db import repositories as repo
    from app.db.base import utcnow
    from app.db.session import session_scope

    with session_scope(pg_url) as session:
        workers = repo.live_workers(session, utcnow() - timedelta(minutes=5))
        assert any(set(w.queues) == {"cpu", "gpu"} and "cpu" in w.devices for w in workers), workers
