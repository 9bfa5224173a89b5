"""ONNX packages of a student, built in the worker: never in the API process (issue 19).

A job builds its student's fp32 and int8 packages (``lelp.export.export_onnx``: exported,
checked against torch on the job's eval rows, zipped) after training and before it is marked
succeeded, so the first predict finds a package to load (onnxruntime, a fraction of a second)
instead of building one (7-11 s before). They go to ``exports/{model_id}/onnx-{fp32,int8}.zip``
(``app.services.exports.export_uri``) and their check figures into ``metrics["export"]``.

A model without a package (published before this, or whose build failed) gets one lazily: the
API sends ``lelp.build_exports`` (``app.queue.EXPORT_TASK_NAME``) and answers 503 meanwhile;
``build_model_exports`` below runs it here, from the store.

A failed build never fails the job: the model is served on torch and the failure is recorded
(``metrics["export"][variant] = {"error": ...}`` and a job event).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.db import repositories as repo
from app.db.models import Dataset, Job, Model
from app.db.session import session_scope
from app.services.exports import QUANTIZE_CHOICES, export_uri, package_uri, variant_name
from app.settings import Settings
from app.storage import ArtifactStore

log = logging.getLogger("lelp.worker")

VARIANTS: tuple[str | None, ...] = (None, *QUANTIZE_CHOICES)  # fp32, int8


@dataclass
class BuiltExport:
    """One variant's outcome: a checked package (``zip_path``, ``check``) or an ``error``."""

    quantize: str | None
    seconds: float
    zip_path: Path | None = None
    check: dict | None = None
    error: str | None = None

    @property
    def variant(self) -> str:
        return variant_name(self.quantize)

    def event(self) -> tuple[str, str, dict[str, Any]]:
        """The job event that records it: ``(type, message, data)``."""
        data = {"variant": self.variant, "seconds": round(self.seconds, 3)}
        if self.error is not None:
            return ("export_failed", f"{self.variant} package failed ({self.error}); the model is served on torch",
                    {**data, "error": self.error})
        return ("export_built", f"{self.variant} package built and checked in {self.seconds:.1f} s",
                {**data, "passed": (self.check or {}).get("passed")})


def build_packages(artifact: Path, work: Path, rows: Callable[[], Any],
                   variants: tuple[str | None, ...] = VARIANTS) -> list[BuiltExport]:
    """Export ``artifact`` once per variant into ``work``; the figures also go into its metrics.json and report.

    ``rows()`` gives the check rows (``lelp.export.CheckRows``, or None for the built-in probe set);
    it is called once, only when onnxruntime is installed (without it each variant is an error: no package).
    """
    from lelp.errors import LELPError
    from lelp.export import export_onnx, onnxruntime_available, record_export
    from lelp.export.runtime import EXTRA_HINT

    if not onnxruntime_available():  # recorded, so the API answers export_failed instead of asking again
        return [BuiltExport(q, 0.0, error=f"this worker has no ONNX support: {EXTRA_HINT}") for q in variants]
    check_rows = rows()
    built = []
    for quantize in variants:
        start = time.perf_counter()
        out = work / f"{variant_name(quantize)}.zip"
        try:
            manifest = export_onnx(artifact, out, quantize=quantize, rows=check_rows)
            record_export(artifact, manifest)
        except Exception as exc:  # noqa: BLE001 - a failed export leaves the model served on torch
            message = exc.message if isinstance(exc, LELPError) else f"{type(exc).__name__}: {exc}"
            log.warning("%s export of %s failed: %s", variant_name(quantize), artifact, message,
                        exc_info=not isinstance(exc, LELPError))
            built.append(BuiltExport(quantize, time.perf_counter() - start, error=message[:500]))
            continue
        built.append(BuiltExport(quantize, time.perf_counter() - start, zip_path=out, check=manifest["check"]))
    return built


def rows_from_file(path: Path | None, labels: list[str], *, text_column: str, text_pair_column: str | None,
                   label_column: str | None, source: str) -> Any:
    """Check rows from one of the job's data files, or None when it cannot give them (then: probe rows)."""
    from lelp.errors import LELPError
    from lelp.export.check import MAX_CHECK_ROWS, rows_from_table

    if path is None:
        return None
    try:
        rows = rows_from_table(path, labels, text_column=text_column, text_pair_column=text_pair_column,
                               label_column=label_column, max_rows=MAX_CHECK_ROWS)
    except LELPError as exc:
        log.info("%s cannot check the export: %s", source, exc.message)
        return None
    rows.source = source
    return rows


def export_figures(built: list[BuiltExport]) -> dict[str, dict]:
    """``metrics["export"]``'s entries for ``built``: the check figures, or ``{"error"}``."""
    return {b.variant: (b.check if b.error is None else {"error": b.error}) for b in built}


def upload(store: ArtifactStore, model_id: str, built: list[BuiltExport]) -> None:
    """Each package as its zip (the download) and unpacked beside it (``package_uri``: what the API loads
    in place from a local store, without unzipping a table of tens of MB on the first predict)."""
    for b in built:
        if b.zip_path is None:
            continue
        unpacked = b.zip_path.with_suffix("")
        with zipfile.ZipFile(b.zip_path) as archive:
            archive.extractall(unpacked)  # our own zip: flat, relative names
        store.put_dir(unpacked, package_uri(model_id, b.quantize))
        store.put_file(b.zip_path, export_uri(model_id, b.quantize))  # last: its presence means "all there"


# --- on request (a model without its packages) ------------------------------------------------------

def _dataset_rows(session: Any, store: ArtifactStore, model: Model, work: Path) -> Any:
    """The job's eval dataset (else its train dataset) as check rows, or None (probe rows)."""
    job = session.get(Job, model.job_id)
    for dataset_id, role in ((job.eval_dataset_id, "eval"), (job.train_dataset_id, "train")) if job else ():
        dataset = repo.get_owned(session, Dataset, model.tenant_id, dataset_id) if dataset_id else None
        if dataset is None:
            continue
        path = store.local_path(dataset.uri)
        if path is None:
            path = work / Path(dataset.uri).name
            with store.open(dataset.uri, "rb") as src, path.open("wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
        rows = rows_from_file(path, list(model.labels), text_column=dataset.text_column,
                              text_pair_column=dataset.text_pair_column, label_column=dataset.label_column,
                              source=f"{role} dataset {dataset.id}")
        if rows is not None:
            return rows
    return None


def build_model_exports(settings: Settings, model_id: str) -> list[BuiltExport]:
    """Build the packages a stored model lacks (the ``lelp.build_exports`` task); idempotent."""
    store = ArtifactStore(settings.artifact_url)
    missing = tuple(q for q in VARIANTS if not store.exists(export_uri(model_id, q)))
    if not missing:
        return []
    with session_scope(settings.database_url) as session, tempfile.TemporaryDirectory(prefix="lelp-export-") as tmp:
        model = session.get(Model, model_id)
        if model is None:
            log.info("model %s is gone; no export to build", model_id)
            return []
        work = Path(tmp)
        artifact = store.get_dir(model.uri, work / "artifact")
        built = build_packages(artifact, work, lambda: _dataset_rows(session, store, model, work), missing)
        upload(store, model_id, built)
        metrics = dict(model.metrics or {})
        metrics["export"] = {**metrics.get("export", {}), **export_figures(built)}
        model.metrics = metrics  # a new dict: the JSON column sees the change
        for b in built:
            repo.add_event(session, model.job_id, *b.event())
    return built
