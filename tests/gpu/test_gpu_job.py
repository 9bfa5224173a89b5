"""A whole small job on the gpu queue, run by a real pinned GPU worker (``lelp worker --gpus 0``)."""

from __future__ import annotations

from tests.tiny import make_text_rows, write_csv


def test_a_transformer_job_runs_on_the_gpu_worker(sqlite_service, tiny_teacher_dir, tmp_path) -> None:  # noqa: ANN001
    from app.client.http import LelpClient

    train = write_csv(tmp_path / "train.csv", make_text_rows(400, seed=1))
    evald = write_csv(tmp_path / "eval.csv", make_text_rows(80, seed=2))
    with LelpClient(sqlite_service["url"], sqlite_service["key"]) as client:
        teacher = client.upload_teacher(tiny_teacher_dir, name="tiny")
        train_id, eval_id = (client.upload_dataset(p)["id"] for p in (train, evald))
        job = client.create_job(teacher["id"], train_id, eval_dataset_id=eval_id, method="kd", student="transformer",
                                device="gpu", hyperparameters={"epochs": 2, "max_length": 32})
        job = client.wait_job(job["id"], poll=1.0, timeout=300)
        log = sqlite_service["worker"].log_tail()
        assert job["status"] == "succeeded", f"{job['error']}\n{log}"
        model = client.get_model(job["model_id"])
        assert model["kind"] == "transformer"
        assert model["metrics"]["student"]["accuracy"] > 0.4
        answer = client.predict(model["id"], ["a lovely great film", "awful sad plot"])
        assert len(answer["predictions"]) == 2
    # the job ran in the worker pinned to GPU 0 (its node name carries the GPU)
    assert "gpu0@" in log
