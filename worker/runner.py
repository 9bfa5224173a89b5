"""``run_job``: one delivery of a distillation job, as a plain function (no Celery needed).

The Celery task in ``worker.tasks`` only calls this, so tests run the whole job flow
directly. The flow, and why each step is there:

1. Load the job; a finished job returns at once (a redelivered message is harmless).
2. Claim it with one conditional UPDATE: a queued job, or a running one whose heartbeat
   went stale (its worker died). A running job with a fresh heartbeat belongs to a live
   worker, so a duplicate message must not start a second copy of it. The claim's token
   fences every later write of this delivery (``worker.claim``): once the sweep requeued
   the job (this worker was cut off past the heartbeat timeout), it writes nothing more.
3. Past ``job_max_attempts`` deliveries the job fails with ``too_many_attempts``: a job
   that keeps killing its worker must end.
4. Inputs come from the artifact store (used in place when the store is local);
   checkpoints sync to ``checkpoints/{job_id}/{claim}/``, promoted by a fenced UPDATE, so
   another machine can resume; the teacher feature cache lives in ``cache/features/{tenant}/`` so
   the next job skips extraction.
5. ``lelp.pipeline.distill`` runs with a throttled progress writer (at most about once a
   second; it doubles as the heartbeat, and a background thread beats during long silent
   stages) and a cancel check that reads the flag at most once a second.
6. The artifact goes to ``models/{model_id}/{claim}/``; the model row and the final state
   are committed together, under the claim, so a delivery that lost its claim can neither
   finish the job nor touch the artifact another one published. Failures store ``{code,
   message}``; tracebacks go to the log only.

This module is the flow; the pieces live beside it: ``job_inputs`` (the row read once, the
library config), ``job_progress`` (progress, heartbeat, cancel check), ``store_sync`` (inputs,
checkpoints, feature cache), ``failures`` (exception -> final state). Every state change is
a function of ``app.db.job_states``; each unit of work commits once, at its end.
"""

from __future__ import annotations

import logging
import socket
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.exc import DBAPIError

from app.db import job_states
from app.db import repositories as repo
from app.db.base import utcnow
from app.db.models import FINISHED_STATUSES, JobStatus, Model
from app.db.session import session_scope
from app.services.recovery import process_name
from app.settings import Settings
from app.storage import ArtifactStore, StorePaths
from worker.claim import Claim, ClaimLost, retrying
from worker.exports import BuiltExport, build_packages, export_figures, rows_from_file, upload
from worker.failures import Redactions, record_failure
from worker.job_inputs import JobInputs, MissingInput, build_config, read_inputs
from worker.job_progress import CancelCheck, Heartbeat, ProgressWriter
from worker.store_sync import CheckpointSync, FeatureCacheSync, dir_size, local_dir, local_file
from worker.webhooks import owe as owe_webhook

__all__ = ["CheckpointSync", "JobInputs", "ProgressWriter", "build_config", "model_id_for", "run_job"]

log = logging.getLogger("lelp.worker")


def run_job(job_id: str, settings: Settings) -> str:
    """Run one delivery of ``job_id``; returns the job's status afterwards (or ``"skipped"``).

    A delivery that finished the job hands its webhook, if it named one, to a worker (``worker.webhooks``).
    """
    status = _run(job_id, settings)
    if status in FINISHED_STATUSES:
        owe_webhook(settings, job_id)
    return status


def _run(job_id: str, settings: Settings) -> str:
    url = settings.database_url
    # A database restarting as the message arrives: wait for it rather than drop the delivery.
    started = retrying(lambda: _start(job_id, settings), time.monotonic() + 2 * settings.heartbeat_stale_s)
    if isinstance(started, str):
        return started
    inputs, claim, resume_from = started
    shown = Redactions(settings)
    try:
        return _execute(inputs, settings, shown, claim, resume_from)
    except (SystemExit, KeyboardInterrupt, GeneratorExit):
        raise  # the worker is stopping: the job stays running and is requeued, not failed
    except ClaimLost:
        log.warning("job %s: this delivery lost its claim (requeued while this worker was cut off); "
                    "it stopped and wrote nothing more", job_id)
        return CLAIM_LOST
    except BaseException as exc:  # noqa: BLE001 - a Rust panic too: every failure ends as a clean {code, message}
        status = record_failure(url, job_id, exc, shown, claim_token=claim.token)
    if status in (JobStatus.FAILED, JobStatus.CANCELLED):  # for good: a submit/cancel loop must not fill the disk
        CheckpointSync(ArtifactStore(settings.artifact_url), job_id, Path(tempfile.gettempdir())).delete()
    return status


def _start(job_id: str, settings: Settings) -> str | tuple[JobInputs, Claim, str | None]:
    """Claim the job and read its inputs in one unit of work; a status string when there is nothing to run."""
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
        token = job_states.claim(session, job_id, stale_before)
        if token is None:
            log.info("job %s is running on a live worker; ignoring the duplicate delivery", job_id)
            return "skipped"
        job = repo.get_job(session, job_id)
        assert job is not None
        claim = Claim(url, job_id, token, patience_s=settings.heartbeat_stale_s)
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
        repo.add_event(session, job_id, "started", f"attempt {job.attempts} started",
                       {"attempt": job.attempts, "worker": process_name()})
        return inputs, claim, job.checkpoint_uri


CLAIM_LOST = "claim_lost"  # run_job's answer when another delivery took the job from this one


def _execute(inputs: JobInputs, settings: Settings, shown: Redactions, claim: Claim, resume_from: str | None) -> str:
    url, job_id = settings.database_url, inputs.job_id
    store = ArtifactStore(settings.artifact_url)
    beat = settings.heartbeat_interval_s
    with tempfile.TemporaryDirectory(prefix=f"lelp-{job_id}-") as tmp, Heartbeat(url, job_id, beat, claim):
        # Imported under the heartbeat: loading torch takes seconds on a busy machine, and a
        # silent claim would look like a dead worker to the sweeper.
        from lelp.pipeline import distill
        from lelp.progress import Progress

        ran_on = _record_placement(url, job_id, inputs.device)
        scratch = Path(tmp)
        shown.add(scratch, "the job's work directory")
        teacher_dir = local_dir(store, inputs.teacher_uri, scratch)
        shown.add(teacher_dir, f"teacher {inputs.teacher_id}")
        train_path = local_file(store, inputs.train_uri, scratch)
        shown.add(train_path, f"dataset {inputs.train_dataset_id}")
        eval_path = local_file(store, inputs.eval_uri, scratch) if inputs.eval_uri else None
        shown.add(eval_path, f"dataset {inputs.eval_dataset_id}")
        validation_path = local_file(store, inputs.validation_uri, scratch) if inputs.validation_uri else None
        shown.add(validation_path, f"dataset {inputs.validation_dataset_id}")
        checkpoints = CheckpointSync(store, job_id, scratch / "checkpoints", token=claim.token,
                                     current=resume_from, promote=claim.promote_checkpoint)
        resumable = checkpoints.download()
        if resumable:
            log.info("job %s resumes from checkpoints %s", job_id, resumable)
        cache = FeatureCacheSync(store, scratch, inputs.tenant_id)
        base_dir = local_dir(store, inputs.student_base_uri, scratch) if inputs.student_base_uri else None
        config = build_config(inputs, teacher_dir, train_path, eval_path, base_dir, validation_path)
        writer = ProgressWriter(url, job_id, claim=claim)
        result = distill(
            config, scratch / "artifact", cache_dir=cache.download(), checkpoint_dir=checkpoints.local_dir,
            progress=writer, should_cancel=CancelCheck(url, job_id, claim=claim), on_checkpoint=checkpoints,
        )
        claim.check()
        resumed_from = getattr(result, "resumed_from_epoch", 0)
        if resumed_from and not writer.resumed_epochs:
            # Killed after its last epoch's checkpoint: training had nothing left to report.
            writer.record_resume(resumed_from)
        cache.upload()
        metrics = {**result.metrics, "ran_on": ran_on} if isinstance(result.metrics, dict) else result.metrics
        artifact = Path(result.artifact_dir)
        # The ONNX packages, here and now: the first predict loads one instead of building it (worker.exports).
        writer(Progress(stage="save", message="building the ONNX packages"))
        built = build_packages(artifact, scratch, lambda: _check_rows(inputs, train_path, eval_path))
        if built and isinstance(metrics, dict):
            metrics["export"] = {**metrics.get("export", {}), **export_figures(built)}
        return _publish(inputs, settings, store, artifact, metrics,
                        getattr(result, "resumed_from_epoch", 0), checkpoints, claim, built)


def _check_rows(inputs: JobInputs, train_path: Path, eval_path: Path | None):  # noqa: ANN202 - CheckRows | None
    """The rows an export is checked on: the job's eval file, else its train file (as the API's lazy build)."""
    common = dict(text_column=inputs.text_column, text_pair_column=inputs.text_pair_column)
    if eval_path is not None:
        rows = rows_from_file(eval_path, inputs.labels, label_column=inputs.eval_label_column,
                              source=f"eval dataset {inputs.eval_dataset_id}", **common)
        if rows is not None:
            return rows
    return rows_from_file(train_path, inputs.labels, label_column=inputs.label_column,
                          source=f"train dataset {inputs.train_dataset_id}", **common)


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
    try:
        with session_scope(url) as session:
            repo.add_event(session, job_id, "ran_on", f"running on {device_summary(ran_on)}", ran_on)
    except DBAPIError:  # advisory: the same record reaches the metrics at the end
        log.warning("the placement of job %s was not recorded (database unreachable)", job_id)
    return ran_on


def model_id_for(job_id: str) -> str:
    return "mdl_" + job_id.split("_", 1)[-1]


def _publish(inputs: JobInputs, settings: Settings, store: ArtifactStore, artifact: Path, metrics: dict,
             resumed_from_epoch: int, checkpoints: CheckpointSync, claim: Claim,
             built: list[BuiltExport] | None = None) -> str:
    """Store the artifact, then commit the model row and the final state in one transaction.

    The files go to ``models/{model_id}/{claim}/``, a folder no other delivery writes, and the
    commit is conditional on the claim: a delivery that lost it (cut off past the heartbeat
    timeout while another finished the job) removes its own folder and changes nothing, so
    it can never overwrite or delete the artifact the winner published. The model id derives
    from the job id (a job has at most one model); the winner removes the folders other
    deliveries left under it (one killed between its copy and its commit).
    """
    model_id = model_id_for(inputs.job_id)
    deadline = time.monotonic() + settings.heartbeat_stale_s
    if not retrying(claim.beat, deadline):  # first, so that a lost delivery does not upload in vain
        raise ClaimLost(inputs.job_id)
    uri = StorePaths.model_delivery(model_id, claim.token)
    store.put_dir(artifact, uri)
    # Before the commit, so a succeeded job's model has its packages. A delivery that loses its claim
    # after this line leaves them behind, but the winner (the only one that commits) uploads its own
    # before its commit: it trained after this delivery's claim went stale, so it uploads later.
    upload(store, model_id, built or [])
    student_metrics = metrics.get("student", {}) if isinstance(metrics, dict) else {}

    def commit() -> bool:
        with session_scope(settings.database_url) as session:
            for b in built or []:  # before the final event; rolled back with the rest when the claim was lost
                repo.add_event(session, inputs.job_id, *b.event())
            if not job_states.finish(session, inputs.job_id, JobStatus.SUCCEEDED, f"model {model_id} ready",
                                     metrics=metrics, model_id=model_id, claim_token=claim.token,
                                     data={"model_id": model_id, "resumed_from_epoch": resumed_from_epoch}):
                session.rollback()
                # A retried commit whose first try went through (the answer was lost on the way back).
                model = session.get(Model, model_id)
                return model is not None and model.uri == uri
            repo.create_model(
                session, tenant_id=inputs.tenant_id, job_id=inputs.job_id, teacher_id=inputs.teacher_id,
                method=str(metrics.get("method", inputs.method)),
                kind=str(student_metrics.get("kind") or inputs.student_kind),  # auto: the kept kind
                labels=inputs.labels, uri=uri, metrics=metrics, parameters=student_metrics.get("parameters"),
                size_bytes=dir_size(artifact), model_id=model_id, text_pairs=inputs.text_pair_column is not None,
            )
            return True

    if not retrying(commit, deadline):
        store.delete(uri)
        raise ClaimLost(inputs.job_id)
    log.info("job %s published model %s (claim %s)", inputs.job_id, model_id, claim.token[:8])
    try:
        for leftover in {rel.split("/", 1)[0] for rel in store.list_files(StorePaths.model(model_id))} - {claim.token}:
            store.delete(StorePaths.model_delivery(model_id, leftover))
        checkpoints.delete()
    except Exception:  # the job is done; what is left is garbage, not state
        log.warning("job %s succeeded; removing its leftover files failed", inputs.job_id, exc_info=True)
    return JobStatus.SUCCEEDED
