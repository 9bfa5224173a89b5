"""``run_job``: one delivery of a distillation job, as a plain function (no Celery needed).

The Celery task in ``worker.tasks`` only calls this, so tests run the whole job flow
directly. The flow, and why each step is there:

1. Load the job; a finished job returns at once (a redelivered message is harmless).
2. Claim it with one conditional UPDATE: a queued job, or a running one whose heartbeat
   went stale (its worker died). A running job with a fresh heartbeat belongs to a live
   worker, so a duplicate message must not start a second copy of it.
3. Past ``job_max_attempts`` deliveries the job fails with ``too_many_attempts``: a job
   that keeps killing its worker must end.
4. Inputs come from the artifact store (used in place when the store is local);
   checkpoints sync to ``checkpoints/{job_id}/`` so another machine can resume; the
   teacher feature cache lives in ``cache/features/`` so the next job skips extraction.
5. ``lelp.pipeline.distill`` runs with a throttled progress writer (at most about once a
   second; it doubles as the heartbeat, and a background thread beats during long silent
   stages) and a cancel check that reads the flag at most once a second.
6. The artifact goes to ``models/{model_id}/``; the model row and the final state are
   committed together. Failures store ``{code, message}``; tracebacks go to the log only.

This module is the flow; the pieces live beside it: ``job_inputs`` (the row read once, the
library config), ``job_progress`` (progress, heartbeat, cancel check), ``store_sync`` (inputs,
checkpoints, feature cache), ``failures`` (exception -> final state). Every state change is
a function of ``app.db.job_states``; each unit of work commits once, at its end.
"""

from __future__ import annotations

import logging
import socket
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any

from app.db import job_states
from app.db import repositories as repo
from app.db.base import utcnow
from app.db.models import FINISHED_STATUSES, JobStatus
from app.db.session import session_scope
from app.settings import Settings
from app.storage import ArtifactStore
from worker.failures import Redactions, record_failure
from worker.job_inputs import JobInputs, MissingInput, build_config, read_inputs
from worker.job_progress import CancelCheck, Heartbeat, ProgressWriter
from worker.store_sync import CheckpointSync, FeatureCacheSync, dir_size, local_dir, local_file

__all__ = ["CheckpointSync", "JobInputs", "ProgressWriter", "build_config", "model_id_for", "run_job"]

log = logging.getLogger("lelp.worker")


def run_job(job_id: str, settings: Settings) -> str:
    """Run one delivery of ``job_id``; returns the job's status afterwards (or ``"skipped"``)."""
    url = settings.database_url
    stale_before = utcnow() - timedelta(seconds=settings.heartbeat_stale_s)
    with session_scope(url) as session:
        job = repo.get_job(session, job_id)
        if job is None:
            log.warning("job %s does not exist; dropping the message", job_id)
            return "missing"
        if job.status in FINISHED_STATUSES:
            log.info("job %s already %s; nothing to do", job_id, job.status)
            return job.status
        if job.cancel_requested:
            job_states.finish(session, job_id, JobStatus.CANCELLED,
                              error={"code": "cancelled", "message": job_states.CANCELLED_BEFORE_START}, data=None)
            return JobStatus.CANCELLED
        if not job_states.claim(session, job_id, stale_before):
            log.info("job %s is running on a live worker; ignoring the duplicate delivery", job_id)
            return "skipped"
        job = repo.get_job(session, job_id)
        assert job is not None
        if job.attempts > settings.job_max_attempts:
            message = (f"the job was started {job.attempts - 1} times without finishing "
                       f"(limit {settings.job_max_attempts}); its worker may be running out of memory")
            job_states.finish(session, job_id, JobStatus.FAILED,
                              error={"code": "too_many_attempts", "message": message})
            CheckpointSync(ArtifactStore(settings.artifact_url), job_id, Path(tempfile.gettempdir())).delete()
            return JobStatus.FAILED
        try:
            inputs = read_inputs(session, job)
        except MissingInput as exc:
            job_states.finish(session, job_id, JobStatus.FAILED, error={"code": exc.code, "message": str(exc)})
            return JobStatus.FAILED
        repo.add_event(session, job_id, "started", f"attempt {job.attempts} started", {"attempt": job.attempts})

    shown = Redactions(settings)
    try:
        return _execute(inputs, settings, shown)
    except (SystemExit, KeyboardInterrupt, GeneratorExit):
        raise  # the worker is stopping: the job stays running and is requeued, not failed
    except BaseException as exc:  # noqa: BLE001 - a Rust panic too: every failure ends as a clean {code, message}
        status = record_failure(url, job_id, exc, shown)
    if status in (JobStatus.FAILED, JobStatus.CANCELLED):  # for good: a submit/cancel loop must not fill the disk
        CheckpointSync(ArtifactStore(settings.artifact_url), job_id, Path(tempfile.gettempdir())).delete()
    return status


def _execute(inputs: JobInputs, settings: Settings, shown: Redactions) -> str:
    url, job_id = settings.database_url, inputs.job_id
    store = ArtifactStore(settings.artifact_url)
    beat = max(1.0, min(30.0, settings.heartbeat_stale_s / 4))
    with tempfile.TemporaryDirectory(prefix=f"lelp-{job_id}-") as tmp, Heartbeat(url, job_id, beat):
        # Imported under the heartbeat: loading torch takes seconds on a busy machine, and a
        # silent claim would look like a dead worker to the sweeper.
        from lelp.pipeline import distill

        ran_on = _record_placement(url, job_id, inputs.device)
        scratch = Path(tmp)
        shown.add(scratch, "the job's work directory")
        teacher_dir = local_dir(store, inputs.teacher_uri, scratch)
        shown.add(teacher_dir, f"teacher {inputs.teacher_id}")
        train_path = local_file(store, inputs.train_uri, scratch)
        shown.add(train_path, f"dataset {inputs.train_dataset_id}")
        eval_path = local_file(store, inputs.eval_uri, scratch) if inputs.eval_uri else None
        shown.add(eval_path, f"dataset {inputs.eval_dataset_id}")
        checkpoints = CheckpointSync(store, job_id, scratch / "checkpoints")
        resumable = checkpoints.download()
        if resumable:
            log.info("job %s resumes from checkpoints %s", job_id, resumable)
        cache = FeatureCacheSync(store, scratch)
        base_dir = local_dir(store, inputs.student_base_uri, scratch) if inputs.student_base_uri else None
        config = build_config(inputs, teacher_dir, train_path, eval_path, base_dir)
        writer = ProgressWriter(url, job_id)
        result = distill(
            config, scratch / "artifact", cache_dir=cache.download(), checkpoint_dir=checkpoints.local_dir,
            progress=writer, should_cancel=CancelCheck(url, job_id), on_checkpoint=checkpoints,
        )
        resumed_from = getattr(result, "resumed_from_epoch", 0)
        if resumed_from and not writer.resumed_epochs:
            # Killed after its last epoch's checkpoint: training had nothing left to report.
            writer.record_resume(resumed_from)
        cache.upload()
        metrics = {**result.metrics, "ran_on": ran_on} if isinstance(result.metrics, dict) else result.metrics
        return _publish(inputs, settings, store, Path(result.artifact_dir), metrics,
                        getattr(result, "resumed_from_epoch", 0), checkpoints)


def _record_placement(url: str, job_id: str, device: str) -> dict[str, Any]:
    """Where this attempt runs (host, device, GPU name and memory): an event now, ``metrics["ran_on"]`` later.

    A device the library will refuse (``gpu`` without CUDA) is recorded as asked; the
    library's own check fails the job with its clear message.
    """
    from lelp.devices.resolve import describe_device, device_summary
    from lelp.errors import LELPError

    try:
        ran_on = describe_device(device)
    except LELPError:
        ran_on = {"host": socket.gethostname(), "device": str(device)}
    with session_scope(url) as session:
        repo.add_event(session, job_id, "ran_on", f"running on {device_summary(ran_on)}", ran_on)
    return ran_on


def model_id_for(job_id: str) -> str:
    return "mdl_" + job_id.split("_", 1)[-1]


def _publish(inputs: JobInputs, settings: Settings, store: ArtifactStore, artifact: Path, metrics: dict,
             resumed_from_epoch: int, checkpoints: CheckpointSync) -> str:
    """Store the artifact, then commit the model row and the final state in one transaction.

    The model id derives from the job id (a job has at most one model), so a delivery killed
    between the copy and the commit leaves no orphan folder: the next one overwrites it.
    """
    model_id = model_id_for(inputs.job_id)
    uri = f"models/{model_id}"
    store.delete(uri)  # a partial copy from a killed delivery
    store.put_dir(artifact, uri)
    student_metrics = metrics.get("student", {}) if isinstance(metrics, dict) else {}
    with session_scope(settings.database_url) as session:
        if not job_states.finish(session, inputs.job_id, JobStatus.SUCCEEDED, f"model {model_id} ready",
                                 metrics=metrics, model_id=model_id,
                                 data={"model_id": model_id, "resumed_from_epoch": resumed_from_epoch}):
            # Someone else finished it meanwhile (a cancel that won): keep one consistent state.
            session.rollback()
            store.delete(uri)
            job = repo.get_job(session, inputs.job_id)
            return job.status if job else "missing"
        repo.create_model(
            session, tenant_id=inputs.tenant_id, job_id=inputs.job_id, teacher_id=inputs.teacher_id,
            method=str(metrics.get("method", inputs.method)), kind=str(inputs.student.get("kind", "ngram")),
            labels=inputs.labels, uri=uri, metrics=metrics, parameters=student_metrics.get("parameters"),
            size_bytes=dir_size(artifact), model_id=model_id, text_pairs=inputs.text_pair_column is not None,
        )
    checkpoints.delete()
    return JobStatus.SUCCEEDED
