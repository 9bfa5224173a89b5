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
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Self

import sqlalchemy as sa

from app.db import repositories as repo
from app.db.base import utcnow
from app.db.models import BaseModelRow, Dataset, Job, Teacher
from app.db.session import session_scope
from app.settings import Settings
from app.storage import ArtifactStore

log = logging.getLogger("lelp.worker")

PROGRESS_INTERVAL_S = 1.0
CANCEL_CHECK_INTERVAL_S = 1.0
HISTORY_POINTS = 500  # per-epoch loss points kept in a job's progress (bounded: 1000-epoch jobs exist)
HYPERPARAMETER_FIELDS = ("subclasses", "beta", "tau", "alpha", "epochs", "learning_rate", "batch_size",
                         "max_length", "seed", "augment", "patience", "gpus")


@dataclass
class JobInputs:
    """What the worker needs from the database, read once so no session stays open while training."""

    job_id: str
    tenant_id: str
    attempts: int
    method: str
    student: dict[str, Any]
    device: str
    hyperparameters: dict[str, Any]
    teacher_id: str
    teacher_uri: str
    labels: list[str]
    train_uri: str
    train_format: str
    eval_uri: str | None
    eval_format: str | None
    text_column: str
    text_pair_column: str | None
    label_column: str | None
    eval_label_column: str | None = None
    train_dataset_id: str | None = None
    eval_dataset_id: str | None = None
    # store path of the student's base model (a teacher or base model of the same tenant)
    student_base_uri: str | None = None


# --- state changes --------------------------------------------------------------------------


def claim_job(session: Any, job_id: str, stale_before: datetime) -> bool:
    """Take the job for this delivery: queued, or running with a heartbeat older than ``stale_before``.

    One conditional UPDATE, so two deliveries racing for the same job cannot both win.
    """
    now = utcnow()
    claimable = sa.or_(
        Job.status == "queued",
        sa.and_(Job.status == "running", sa.or_(Job.heartbeat_at.is_(None), Job.heartbeat_at < stale_before)),
    )
    result = session.execute(
        sa.update(Job).where(Job.id == job_id, claimable)
        .values(status="running", attempts=Job.attempts + 1, heartbeat_at=now, updated_at=now,
                started_at=sa.func.coalesce(Job.started_at, now))
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)


def _finish(url: str, job_id: str, status: str, code: str, message: str) -> None:
    with session_scope(url) as session:
        if repo.finish_job(session, job_id, status, error={"code": code, "message": message}):
            repo.add_event(session, job_id, status, message, {"code": code})


def _read_inputs(session: Any, job: Job) -> JobInputs:
    teacher = session.get(Teacher, job.teacher_id) if job.teacher_id else None
    train = session.get(Dataset, job.train_dataset_id) if job.train_dataset_id else None
    evald = session.get(Dataset, job.eval_dataset_id) if job.eval_dataset_id else None
    if teacher is None or train is None or (job.eval_dataset_id and evald is None):
        raise MissingInput("the job's teacher or dataset was deleted before it ran")
    return JobInputs(student_base_uri=_student_base_uri(session, job),
        job_id=job.id, tenant_id=job.tenant_id, attempts=job.attempts, method=job.method,
        student=dict(job.student or {}), device=job.device or "auto",
        hyperparameters=dict(job.hyperparameters or {}), teacher_id=teacher.id, teacher_uri=teacher.uri,
        labels=list(teacher.labels or []), train_uri=train.uri, train_format=train.format,
        eval_uri=evald.uri if evald else None, eval_format=evald.format if evald else None,
        text_column=train.text_column, text_pair_column=train.text_pair_column, label_column=train.label_column,
        eval_label_column=evald.label_column if evald else None,
        train_dataset_id=train.id, eval_dataset_id=evald.id if evald else None,
    )


def _student_base_uri(session: Any, job: Job) -> str | None:
    """Where the student's base lives in the store: only ever an id of the job's own tenant.

    The API stores ``student.base`` as such an id (a URI is registered as a base model at
    submit); anything else, e.g. a path in a job queued by an older version, is refused.
    """
    base = (job.student or {}).get("base")
    if not base:
        return None
    table = Teacher if str(base).startswith("tch_") else BaseModelRow
    row = repo.get_owned(session, table, job.tenant_id, str(base)) if str(base).startswith(("tch_", "bm_")) else None
    if row is None:
        raise MissingInput(f"the student's base model {str(base)[:80]!r} is not a registered model of this tenant "
                           "(deleted before the job ran?)")
    return row.uri


class MissingInput(Exception):
    """A teacher or dataset row vanished between the job's creation and its run."""

    code = "missing_input"


# --- progress, heartbeat, cancel ------------------------------------------------------------


class ProgressWriter:
    """Turns the library's progress callbacks into at most one database write a second.

    A stage change is written at once (and logged as an event) so that short stages show;
    every write also beats the heartbeat the sweeper watches. When training starts past
    epoch 1 the library resumed from a checkpoint: a ``resumed`` event with
    ``{"epoch": N}`` (epochs already done) shows that a redelivered job did not start over.
    """

    def __init__(self, url: str, job_id: str, interval_s: float | None = None) -> None:
        self.url = url
        self.job_id = job_id
        self.interval_s = PROGRESS_INTERVAL_S if interval_s is None else interval_s
        self._last_write = 0.0
        self._stage: str | None = None
        self._stage_started = time.monotonic()
        self.resumed_epochs: list[int] = []
        self.history: list[dict[str, Any]] = []  # loss per (candidate, epoch) so far: the live report's curve
        self._candidate: str | None = None

    def record_resume(self, epoch: int) -> None:
        """Log that training continued after ``epoch`` finished epochs (read from a checkpoint)."""
        self.resumed_epochs.append(epoch)
        with session_scope(self.url) as session:
            repo.add_event(session, self.job_id, "resumed", f"resumed from the checkpoint of epoch {epoch}",
                           {"epoch": epoch})

    def _track_history(self, progress: Any) -> None:
        """Every report (throttled or not) updates the running epoch's loss; the last is its mean."""
        if progress.stage == "fit_projector":
            self._candidate = progress.message
        elif progress.stage == "train" and progress.epoch is not None and progress.loss is not None:
            point = {"candidate": self._candidate, "epoch": int(progress.epoch),
                     "train_loss": round(float(progress.loss), 6)}
            last = self.history[-1] if self.history else None
            if last is not None and (last["candidate"], last["epoch"]) == (point["candidate"], point["epoch"]):
                self.history[-1] = point
            elif len(self.history) < HISTORY_POINTS:
                self.history.append(point)

    def __call__(self, progress: Any) -> None:
        now = time.monotonic()
        self._track_history(progress)
        new_stage = progress.stage != self._stage
        if not new_stage and now - self._last_write < self.interval_s:
            return
        if new_stage:
            self._stage, self._stage_started = progress.stage, now
            # The first report of a training run comes after its first step: epoch N+1 means
            # the library loaded the checkpoint of epoch N.
            if progress.stage == "train" and progress.epoch and progress.epoch > 1:
                self.record_resume(progress.epoch - 1)
        fraction = (progress.step / progress.total) if progress.total else None
        elapsed = now - self._stage_started
        eta = elapsed * (1 - fraction) / fraction if fraction and fraction > 0 else None
        body = {"stage": progress.stage, "epoch": progress.epoch, "step": progress.step,
                "total_steps": progress.total, "fraction": fraction, "loss": progress.loss,
                "eta_s": round(eta, 1) if eta is not None else None, "message": progress.message,
                "history": list(self.history)}
        with session_scope(self.url) as session:
            repo.update_progress(session, self.job_id, body)
            if new_stage:
                repo.add_event(session, self.job_id, "stage", progress.message or progress.stage,
                               {"stage": progress.stage})
        self._last_write = now


class CancelCheck:
    """Reads the job's cancel flag at most once a second (the trainer asks every few steps)."""

    def __init__(self, url: str, job_id: str, interval_s: float | None = None) -> None:
        self.url, self.job_id = url, job_id
        self.interval_s = CANCEL_CHECK_INTERVAL_S if interval_s is None else interval_s
        self._last = 0.0
        self._answer = False

    def __call__(self) -> bool:
        now = time.monotonic()
        if not self._answer and now - self._last >= self.interval_s:
            with session_scope(self.url) as session:
                self._answer = repo.is_cancel_requested(session, self.job_id)
            self._last = now
        return self._answer


class Heartbeat:
    """A daemon thread that beats while a stage reports nothing (model loading, a long batch)."""

    def __init__(self, url: str, job_id: str, interval_s: float) -> None:
        self.url, self.job_id, self.interval_s = url, job_id, interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{job_id}", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                with session_scope(self.url) as session:
                    repo.heartbeat(session, self.job_id)
            except Exception:  # a database blip must not kill the job; the next beat retries
                log.warning("heartbeat of %s failed", self.job_id, exc_info=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


# --- artifact store plumbing ----------------------------------------------------------------


def _local_dir(store: ArtifactStore, path: str, scratch: Path) -> Path:
    """A local directory holding the store's ``path``: in place when local, else a copy."""
    local = store.local_path(path)
    if local is not None:
        return local
    return store.get_dir(path, scratch / path.replace("/", "_"))


def _local_file(store: ArtifactStore, path: str, scratch: Path) -> Path:
    local = store.local_path(path)
    if local is not None:
        return local
    target = scratch / path.replace("/", "_")
    with store.open(path, "rb") as src, target.open("wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
    return target


class CheckpointSync:
    """Mirrors the job's checkpoint directory to ``checkpoints/{job_id}/`` in the store."""

    def __init__(self, store: ArtifactStore, job_id: str, local_dir: Path) -> None:
        self.store, self.prefix, self.local_dir = store, f"checkpoints/{job_id}", local_dir

    def download(self) -> list[str]:
        """Fetch the checkpoints an earlier attempt left (possibly on another machine)."""
        names = self.store.list_files(self.prefix)
        if names:
            self.store.get_dir(self.prefix, self.local_dir)
        return names

    def __call__(self, path: str) -> None:
        """``on_checkpoint``: publish the file so a copy is never half written."""
        source = Path(path)
        local = self.store.local_path(f"{self.prefix}/{source.name}")
        if local is None:  # object stores publish a PUT whole or not at all
            self.store.put_file(source, f"{self.prefix}/{source.name}")
            return
        local.parent.mkdir(parents=True, exist_ok=True)
        tmp = local.with_name(f".{local.name}.tmp")
        shutil.copyfile(source, tmp)
        os.replace(tmp, local)

    def delete(self) -> None:
        self.store.delete(self.prefix)


class FeatureCacheSync:
    """Teacher features cached in ``cache/features/``: in place when local, mirrored when remote."""

    PREFIX = "cache/features"

    def __init__(self, store: ArtifactStore, scratch: Path) -> None:
        self.store = store
        local = store.local_path(self.PREFIX)
        self.remote = local is None
        self.dir = scratch / "feature-cache" if local is None else local
        self._before: set[str] = set()

    def download(self) -> Path:
        if self.remote:
            for rel in self.store.list_files(self.PREFIX):
                if not rel.split("/")[0].startswith(".tmp-"):
                    target = self.dir / rel
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with self.store.open(f"{self.PREFIX}/{rel}", "rb") as src, target.open("wb") as dst:
                        shutil.copyfileobj(src, dst, 1 << 20)
            self._before = {p.name for p in self.dir.iterdir()} if self.dir.exists() else set()
        else:
            self.dir.mkdir(parents=True, exist_ok=True)
        return self.dir

    def upload(self) -> None:
        """Publish the entries this job created (complete ones only: their names carry no ``.tmp-``)."""
        if not self.remote or not self.dir.exists():
            return
        for entry in self.dir.iterdir():
            if entry.is_dir() and entry.name not in self._before and not entry.name.startswith(".tmp-"):
                self.store.put_dir(entry, f"{self.PREFIX}/{entry.name}")


def _dir_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


# --- the job --------------------------------------------------------------------------------


def build_config(inputs: JobInputs, teacher_dir: Path, train_path: Path, eval_path: Path | None,
                 student_base_dir: Path | None = None) -> Any:
    """The library's ``DistillConfig`` from the job row (unknown keys were refused by the API).

    The student base is the local copy of a store path (``student_base_dir``), never the
    string from the job body.
    """
    from lelp.pipeline import DistillConfig

    hp = {k: v for k, v in inputs.hyperparameters.items() if k in HYPERPARAMETER_FIELDS and v is not None}
    student = inputs.student
    return DistillConfig(
        teacher_dir=str(teacher_dir), train_path=str(train_path), eval_path=str(eval_path) if eval_path else None,
        text_column=inputs.text_column, text_pair_column=inputs.text_pair_column,
        label_column=inputs.label_column, eval_label_column=inputs.eval_label_column, method=inputs.method,
        student=str(student.get("architecture", "ngram")),
        student_base=str(student_base_dir) if student_base_dir is not None else None,
        device=inputs.device, **hp,
    )


def run_job(job_id: str, settings: Settings) -> str:
    """Run one delivery of ``job_id``; returns the job's status afterwards (or ``"skipped"``)."""
    url = settings.database_url
    stale_before = utcnow() - timedelta(seconds=settings.heartbeat_stale_s)
    with session_scope(url) as session:
        job = repo.get_job(session, job_id)
        if job is None:
            log.warning("job %s does not exist; dropping the message", job_id)
            return "missing"
        if job.status in ("succeeded", "failed", "cancelled"):
            log.info("job %s already %s; nothing to do", job_id, job.status)
            return job.status
        if job.cancel_requested:
            if repo.finish_job(session, job_id, "cancelled",
                               error={"code": "cancelled", "message": "cancelled before it started"}):
                repo.add_event(session, job_id, "cancelled", "cancelled before it started")
            return "cancelled"
        if not claim_job(session, job_id, stale_before):
            log.info("job %s is running on a live worker; ignoring the duplicate delivery", job_id)
            return "skipped"
        job = repo.get_job(session, job_id)
        assert job is not None
        if job.attempts > settings.job_max_attempts:
            message = (f"the job was started {job.attempts - 1} times without finishing "
                       f"(limit {settings.job_max_attempts}); its worker may be running out of memory")
            repo.finish_job(session, job_id, "failed", error={"code": "too_many_attempts", "message": message})
            repo.add_event(session, job_id, "failed", message, {"code": "too_many_attempts"})
            CheckpointSync(ArtifactStore(settings.artifact_url), job_id, Path(tempfile.gettempdir())).delete()
            return "failed"
        try:
            inputs = _read_inputs(session, job)
        except MissingInput as exc:
            repo.finish_job(session, job_id, "failed", error={"code": exc.code, "message": str(exc)})
            repo.add_event(session, job_id, "failed", str(exc), {"code": exc.code})
            return "failed"
        repo.add_event(session, job_id, "started", f"attempt {job.attempts} started", {"attempt": job.attempts})

    shown = _Redactions(settings)
    try:
        return _execute(inputs, settings, shown)
    except (SystemExit, KeyboardInterrupt, GeneratorExit):
        raise  # the worker is stopping: the job stays running and is requeued, not failed
    except BaseException as exc:  # noqa: BLE001 - a Rust panic too: every failure ends as a clean {code, message}
        status = _record_failure(url, job_id, exc, shown)
    if status in ("failed", "cancelled"):  # for good: a submit/cancel loop must not fill the disk
        CheckpointSync(ArtifactStore(settings.artifact_url), job_id, Path(tempfile.gettempdir())).delete()
    return status


class _Redactions:
    """Server paths a failure message may contain, and the ids to show instead."""

    def __init__(self, settings: Settings) -> None:
        self.names: dict[str, str] = {str(settings.data_dir): "the service's data directory"}
        store_root = ArtifactStore(settings.artifact_url).local_path("")
        if store_root is not None:
            self.names[str(store_root)] = "the artifact store"

    def add(self, path: Path | str | None, name: str) -> None:
        if path is not None:
            self.names[str(path)] = name

    def __call__(self, message: str) -> str:
        for path in sorted(self.names, key=len, reverse=True):  # the most specific first
            message = message.replace(path, self.names[path])
        return message


def _execute(inputs: JobInputs, settings: Settings, shown: _Redactions) -> str:
    url, job_id = settings.database_url, inputs.job_id
    store = ArtifactStore(settings.artifact_url)
    beat = max(1.0, min(30.0, settings.heartbeat_stale_s / 4))
    with tempfile.TemporaryDirectory(prefix=f"lelp-{job_id}-") as tmp, Heartbeat(url, job_id, beat):
        # Imported under the heartbeat: loading torch takes seconds on a busy machine, and a
        # silent claim would look like a dead worker to the sweeper.
        from lelp.pipeline import distill

        scratch = Path(tmp)
        shown.add(scratch, "the job's work directory")
        teacher_dir = _local_dir(store, inputs.teacher_uri, scratch)
        shown.add(teacher_dir, f"teacher {inputs.teacher_id}")
        train_path = _local_file(store, inputs.train_uri, scratch)
        shown.add(train_path, f"dataset {inputs.train_dataset_id}")
        eval_path = _local_file(store, inputs.eval_uri, scratch) if inputs.eval_uri else None
        shown.add(eval_path, f"dataset {inputs.eval_dataset_id}")
        checkpoints = CheckpointSync(store, job_id, scratch / "checkpoints")
        resumable = checkpoints.download()
        if resumable:
            log.info("job %s resumes from checkpoints %s", job_id, resumable)
        cache = FeatureCacheSync(store, scratch)
        base_dir = _local_dir(store, inputs.student_base_uri, scratch) if inputs.student_base_uri else None
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
        return _publish(inputs, settings, store, Path(result.artifact_dir), result.metrics,
                        getattr(result, "resumed_from_epoch", 0), checkpoints)


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
        if not repo.finish_job(session, inputs.job_id, "succeeded", metrics=metrics, model_id=model_id):
            # Someone else finished it meanwhile (a cancel that won): keep one consistent state.
            session.rollback()
            store.delete(uri)
            job = repo.get_job(session, inputs.job_id)
            return job.status if job else "missing"
        repo.create_model(
            session, tenant_id=inputs.tenant_id, job_id=inputs.job_id, teacher_id=inputs.teacher_id,
            method=str(metrics.get("method", inputs.method)), architecture=str(inputs.student.get("architecture",
                                                                                                "ngram")),
            labels=inputs.labels, uri=uri, metrics=metrics, parameters=student_metrics.get("parameters"),
            size_bytes=_dir_size(artifact), model_id=model_id, text_pairs=inputs.text_pair_column is not None,
        )
        repo.add_event(session, inputs.job_id, "succeeded", f"model {model_id} ready",
                       {"model_id": model_id, "resumed_from_epoch": resumed_from_epoch})
    checkpoints.delete()
    return "succeeded"


def _record_failure(url: str, job_id: str, exc: BaseException, shown: Any = None) -> str:
    """Map an exception to the job's final state and a ``{code, message}`` a user can read.

    Messages name ids, never server paths (``shown`` replaces them). A ``BaseException``
    that is not an ``Exception`` (a Rust panic in the teacher's tokenizer) fails the job at
    once with ``model_failed``: a redelivery would only panic again.
    """
    from celery.exceptions import SoftTimeLimitExceeded

    from lelp.errors import JobCancelled, LELPError

    def clean(message: str) -> str:
        return shown(message) if shown is not None else message

    if isinstance(exc, JobCancelled):
        _finish(url, job_id, "cancelled", exc.code, clean(exc.message))
        return "cancelled"
    if isinstance(exc, LELPError):
        log.info("job %s failed: %s", job_id, exc)
        _finish(url, job_id, "failed", exc.code, clean(exc.message))
        return "failed"
    if isinstance(exc, SoftTimeLimitExceeded):
        _finish(url, job_id, "failed", "time_limit_exceeded", "the job ran past the configured time limit")
        return "failed"
    if not isinstance(exc, Exception):
        first = (str(exc).splitlines() or [""])[0][:200]
        log.error("job %s: the model's code crashed: %s: %s", job_id, type(exc).__name__, first)
        _finish(url, job_id, "failed", "model_failed",
                clean(f"the teacher's code crashed ({type(exc).__name__}: {first}); the job is not retried: "
                      "upload a teacher whose tokenizer transformers' own classes build"))
        return "failed"
    log.error("job %s crashed:\n%s", job_id, "".join(traceback.format_exception(exc)))
    _finish(url, job_id, "failed", "internal_error",
            f"the worker hit an unexpected {type(exc).__name__}; the details are in the worker log")
    return "failed"
