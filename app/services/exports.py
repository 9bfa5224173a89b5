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
import threading
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

from sqlalchemy.orm import Session

from app.db.models import Model
from app.errors import ServiceUnavailable, Unprocessable
from app.storage import ArtifactStore, StorePaths
from lelp.export.runtime import QUANTIZE_CHOICES, variant_name  # torch-free

log = logging.getLogger(__name__)

def export_uri(model_id: str, quantize: str | None) -> str:
    return StorePaths.export_file(model_id, variant_name(quantize))


def package_uri(model_id: str, quantize: str | None) -> str:
    """The same package unpacked (``exports/{model_id}/onnx-fp32/``), written by the worker beside the zip."""
    return f"{StorePaths.exports(model_id)}/{variant_name(quantize)}"


def require_onnxruntime() -> None:
    from lelp.export.runtime import EXTRA_HINT, onnxruntime_available  # torch-free

    if not onnxruntime_available():
        raise Unprocessable(f"this server has no ONNX support: {EXTRA_HINT}", param="format",
                            code="onnx_unavailable")


EXPORT_RETRY_AFTER_S = 5


class ExportBuilding(ServiceUnavailable):
    """A model's package is not there yet: a worker was asked for it (``Retry-After`` seconds)."""

    code = "export_building"
    retry_after_s = EXPORT_RETRY_AFTER_S


class OnnxExports:
    """Finds the ONNX packages of models in the store and unpacks them for serving; never builds one."""

    def __init__(self, store: ArtifactStore, sessionmaker: Callable[[], Session], scratch: Path) -> None:
        self.store, self.sessionmaker, self.scratch = store, sessionmaker, scratch
        self._asked: dict[str, float] = {}  # model id -> when a worker was last asked for its packages
        self._guard = threading.Lock()

    # --- finding (the worker builds: worker.exports) -------------------------------------------------

    def ensure(self, model_id: str, quantize: str | None = None) -> str:
        """The store path of the model's package. Never built here: a worker builds it when the job ends
        (``worker.exports``); one that is missing (an older model) is asked of a worker, and meanwhile
        the request is a 503 ``export_building`` with ``Retry-After``."""
        require_onnxruntime()
        if quantize not in (None, *QUANTIZE_CHOICES):
            raise Unprocessable(f"unknown quantization {quantize!r}; choose {', '.join(QUANTIZE_CHOICES)}",
                                param="quantize")
        uri = export_uri(model_id, quantize)
        if self.store.exists(uri):
            return uri
        with self.sessionmaker() as session:
            model = session.get(Model, model_id)
            failed = ((model.metrics or {}).get("export") or {}).get(variant_name(quantize), {}) if model else {}
        if model is None:
            raise Unprocessable(f"model {model_id} is gone", code="model_not_found")
        if isinstance(failed, dict) and failed.get("error"):
            raise Unprocessable(f"the {variant_name(quantize)} package of model {model_id} could not be built: "
                                f"{failed['error']}", param="format", code="export_failed")
        self._ask_worker(model_id)
        raise ExportBuilding(f"the {variant_name(quantize)} package of model {model_id} is being built by a worker; "
                             f"retry in {EXPORT_RETRY_AFTER_S} s", param="format")

    def _ask_worker(self, model_id: str) -> None:
        """Send ``lelp.build_exports`` at most once a minute per model (the task is idempotent anyway)."""
        from app.queue import enqueue_export

        now = time.monotonic()
        with self._guard:
            if now - self._asked.get(model_id, -1e9) < 60:
                return
            self._asked[model_id] = now
        try:
            enqueue_export(model_id)
        except Exception:  # noqa: BLE001 - broker down: the next request asks again
            log.warning("could not ask a worker for the exports of model %s", model_id, exc_info=True)
            with self._guard:
                self._asked.pop(model_id, None)

    # --- serving --------------------------------------------------------------------------------------

    def package_dir(self, model_id: str, quantize: str | None, cache_dir: Path) -> Path:
        """The package unpacked under ``cache_dir`` (what ``OnnxPredictor`` loads)."""
        uri = self.ensure(model_id, quantize)
        in_place = self.store.local_path(package_uri(model_id, quantize))
        if in_place is not None and (in_place / "lelp_onnx.json").is_file():
            return in_place  # unpacked by the worker: nothing to copy or unzip
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
