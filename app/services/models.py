"""Models: predictions through the inference service, artifact tarballs, deletion."""

from __future__ import annotations

import logging
import os
import shutil
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path

from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from app.db.models import Model
from app.errors import Unprocessable
from app.schemas.models import ModelRead, PredictRequest, TextPair
from app.services.exports import OnnxExports
from app.services.inference import InferenceService, ModelRef
from app.settings import Settings
from app.storage import ArtifactStore, StorePaths

log = logging.getLogger(__name__)


def check_predict_inputs(body: PredictRequest, settings: Settings,
                         text_pairs: bool | None = None) -> tuple[list[str], list[str] | None]:
    """Apply the configured limits (count, length), split texts from pairs, and match the model's input shape."""
    if len(body.inputs) > settings.max_predict_inputs:
        raise Unprocessable(f"{len(body.inputs)} inputs; at most {settings.max_predict_inputs} per request",
                            param="inputs", code="too_many_inputs")
    if isinstance(body.inputs[0], TextPair):
        texts = [item.text for item in body.inputs]  # type: ignore[union-attr]
        pairs: list[str] | None = [item.text_pair for item in body.inputs]  # type: ignore[union-attr]
    else:
        texts, pairs = list(body.inputs), None  # type: ignore[arg-type]
    if text_pairs is not None and (pairs is not None) != text_pairs:
        expected = ('{"text": "...", "text_pair": "..."} objects' if text_pairs else "strings")
        raise Unprocessable(f"this model was trained on {'text pairs' if text_pairs else 'single texts'}: "
                            f"send inputs as {expected}", param="inputs", code="text_pairs_mismatch")
    for i, text in enumerate(texts + (pairs or [])):
        if len(text) > settings.max_text_chars:
            index = i % len(texts)
            raise Unprocessable(f"input {index} has {len(text):,} characters; the limit is "
                                f"{settings.max_text_chars:,}", param=f"inputs.{index}", code="input_too_long")
    return texts, pairs


async def predict(inference: InferenceService, model: ModelRef, body: PredictRequest,
                  settings: Settings, sessionmaker: Callable[[], Session] | None = None) -> list[dict]:
    texts, pairs = check_predict_inputs(body, settings, model.text_pairs)
    if model.cascade and body.quantize is None:
        records, deferred = await inference.predict_cascade(model, texts, pairs)
        if deferred and model.cascade.get("keep_traffic") and sessionmaker is not None:
            rows = [(texts[i], pairs[i] if pairs is not None else None, records[i]["label"]) for i in deferred]
            await run_in_threadpool(_keep, sessionmaker, model, rows)
        return records
    return await inference.predict(model.id, model.uri, texts, pairs, body.quantize)


def _keep(sessionmaker: Callable[[], Session], model: ModelRef, rows: list) -> None:
    """Store deferred rows (a failure is logged: the user's answers are already computed)."""
    from app.services.cascade import keep_deferred

    try:
        with sessionmaker() as session:
            keep_deferred(session, model.tenant_id, model.id, rows, int(model.cascade.get("max_kept_rows") or 0))
    except Exception:  # noqa: BLE001 - keeping traffic is best effort; the predict still answers
        log.exception("could not keep %d deferred rows of model %s", len(rows), model.id)


def model_read(inference: InferenceService, model: Model) -> ModelRead:
    """The API body of a model row, with the runtime its predictions are served on."""
    read = ModelRead.model_validate(model)
    read.runtime = inference.runtime_of(model.id) or inference.planned_runtime(model.kind)
    return read


def onnx_export_file(exports: OnnxExports, model: Model, quantize: str | None, tmp_dir: Path) -> tuple[Path, bool]:
    """A local file of the model's ONNX package (built and checked on first use) and whether it is a temp copy."""
    uri = exports.ensure(model.id, quantize)
    local = exports.store.local_path(uri)
    if local is not None:
        return local, False
    tmp_dir.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f"{model.id}-", suffix=".zip", dir=tmp_dir)
    with os.fdopen(fd, "wb") as out, exports.store.open(uri, "rb") as src:
        shutil.copyfileobj(src, out, 1 << 20)
    return Path(name), True


def build_artifact_tarball(store: ArtifactStore, model: Model, tmp_dir: Path) -> Path:
    """Write ``models/{id}/`` as a tar.gz under ``tmp_dir`` (the response streams it, then deletes it)."""
    tmp_dir.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f"{model.id}-", suffix=".tar.gz", dir=tmp_dir)
    os.close(fd)
    files = store.list_files(model.uri)
    if not files:
        Path(name).unlink(missing_ok=True)
        raise Unprocessable("the model's files are missing from the artifact store", code="artifact_missing")
    with tarfile.open(name, "w:gz") as tar:
        for rel in files:
            info = tarfile.TarInfo(f"{model.id}/{rel}")
            info.size = store.size(f"{model.uri}/{rel}")
            info.mtime = int(model.created_at.timestamp())
            info.mode = 0o644
            with store.open(f"{model.uri}/{rel}", "rb") as fh:
                tar.addfile(info, fh)
    return Path(name)


def delete_model(session: Session, store: ArtifactStore, inference: InferenceService, model: Model) -> None:
    import sqlalchemy as sa

    from app.db.models import TrafficRow

    session.execute(sa.delete(TrafficRow).where(TrafficRow.model_id == model.id))  # SQLite may run without FKs
    session.delete(model)
    session.commit()
    inference.evict(model.id)
    store.delete(model.uri)
    store.delete(StorePaths.exports(model.id))  # every cached variant
