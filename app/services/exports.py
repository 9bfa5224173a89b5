"""ONNX exports of a model: built on first request, checked, cached in the artifact store.

``exports/{model_id}/onnx-fp32.zip`` (or ``onnx-int8.zip``) is the package ``lelp export``
writes. The first request builds it (torch + onnx, in a thread: seconds for a small
student, tens of seconds for a MiniLM-sized one), checking it on the job's eval dataset (or
its train dataset when it had none, or a built-in probe set when the dataset is gone); the
figures go into the model's ``metrics["export"]``. Later requests, and every API process,
reuse the stored zip. The same packages serve predictions on onnxruntime
(``InferenceService``), so a served int8 model is exactly the file a user downloads.

``lelp`` (and so torch) is imported only when an export is built or unpacked.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
import zipfile
from collections.abc import Callable
from pathlib import Path

from sqlalchemy.orm import Session

from app.db import repositories as repo
from app.db.models import Dataset, Job, Model
from app.errors import Unprocessable
from app.storage import ArtifactStore, StorePaths
from lelp.export.runtime import QUANTIZE_CHOICES, variant_name  # torch-free

log = logging.getLogger(__name__)

def export_uri(model_id: str, quantize: str | None) -> str:
    return StorePaths.export_file(model_id, variant_name(quantize))


def require_onnxruntime() -> None:
    from lelp.export.runtime import EXTRA_HINT, onnxruntime_available  # torch-free

    if not onnxruntime_available():
        raise Unprocessable(f"this server has no ONNX support: {EXTRA_HINT}", param="format",
                            code="onnx_unavailable")


class OnnxExports:
    """Builds and caches the ONNX packages of models (one build at a time per model and variant)."""

    def __init__(self, store: ArtifactStore, sessionmaker: Callable[[], Session], scratch: Path) -> None:
        self.store, self.sessionmaker, self.scratch = store, sessionmaker, scratch
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def _lock(self, key: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())

    # --- building -----------------------------------------------------------------------------------

    def _check_rows(self, session: Session, model: Model, labels: list[str], work: Path):
        """The job's eval dataset (else its train dataset) as check rows, or None (probe rows)."""
        from lelp.errors import LELPError
        from lelp.export.check import MAX_CHECK_ROWS, rows_from_table

        job = session.get(Job, model.job_id)
        for dataset_id, source in ((job.eval_dataset_id, "eval"), (job.train_dataset_id, "train")) if job else ():
            dataset = repo.get_owned(session, Dataset, model.tenant_id, dataset_id) if dataset_id else None
            if dataset is None:
                continue
            path = self.store.local_path(dataset.uri)
            if path is None:
                path = work / Path(dataset.uri).name
                with self.store.open(dataset.uri, "rb") as src, path.open("wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
            try:
                rows = rows_from_table(path, labels, text_column=dataset.text_column,
                                       text_pair_column=dataset.text_pair_column, label_column=dataset.label_column,
                                       max_rows=MAX_CHECK_ROWS)
            except LELPError as exc:  # e.g. label names the model does not know: try the next source
                log.info("dataset %s cannot check model %s: %s", dataset.id, model.id, exc.message)
                continue
            rows.source = f"{source} dataset {dataset.id}"
            return rows
        return None

    def _build(self, model_id: str, quantize: str | None) -> None:
        from lelp.export import export_onnx

        with self.sessionmaker() as session, tempfile.TemporaryDirectory(dir=self.scratch) as tmp:
            model = session.get(Model, model_id)
            if model is None:
                raise Unprocessable(f"model {model_id} is gone", code="model_not_found")
            work = Path(tmp)
            artifact = self.store.local_path(model.uri) or self.store.get_dir(model.uri, work / "artifact")
            rows = self._check_rows(session, model, list(model.labels), work)
            package = export_onnx(artifact, work / "package.zip", quantize=quantize, rows=rows)
            self.store.put_file(work / "package.zip", export_uri(model_id, quantize))
            metrics = dict(model.metrics or {})
            metrics["export"] = {**metrics.get("export", {}), package["variant"]: package["check"]}
            model.metrics = metrics  # a new dict: the JSON column sees the change
            session.commit()

    def ensure(self, model_id: str, quantize: str | None = None) -> str:
        """The store path of the model's package, built (and checked) first when missing."""
        require_onnxruntime()
        if quantize not in (None, *QUANTIZE_CHOICES):
            raise Unprocessable(f"unknown quantization {quantize!r}; choose {', '.join(QUANTIZE_CHOICES)}",
                                param="quantize")
        uri = export_uri(model_id, quantize)
        if self.store.exists(uri):
            return uri
        with self._lock(uri):
            if not self.store.exists(uri):
                self.scratch.mkdir(parents=True, exist_ok=True)
                self._build(model_id, quantize)
        return uri

    # --- serving --------------------------------------------------------------------------------------

    def package_dir(self, model_id: str, quantize: str | None, cache_dir: Path) -> Path:
        """The package unpacked under ``cache_dir`` (what ``OnnxPredictor`` loads)."""
        uri = self.ensure(model_id, quantize)
        target = cache_dir / f"{model_id}-{variant_name(quantize)}"
        if (target / "lelp_onnx.json").is_file():
            return target
        partial = target.with_name(target.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        with self.store.open(uri, "rb") as fh, zipfile.ZipFile(fh) as archive:
            archive.extractall(partial)  # our own zip: flat, relative names
        shutil.rmtree(target, ignore_errors=True)
        partial.rename(target)
        return target

    def delete(self, model_id: str) -> None:
        self.store.delete(StorePaths.exports(model_id))
