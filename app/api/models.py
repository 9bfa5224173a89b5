"""/v1/models"""

from __future__ import annotations

from typing import Annotated, Literal

import orjson
from fastapi import APIRouter, FastAPI, Query, Request, Response
from fastapi.responses import FileResponse
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from app.api.predict_route import PredictRoute
from app.db.models import Model
from app.deps import (
    PREDICT_SECURITY,
    EnqueueDep,
    InferenceDep,
    ModelDep,
    ModelRefDep,
    SessionDep,
    SettingsDep,
    StoreDep,
    TenantDep,
)
from app.errors import Unprocessable
from app.schemas.common import ERROR_RESPONSES, Page
from app.schemas.jobs import JobRead
from app.schemas.models import CascadeRequest, ModelRead, PredictRequest, PredictResponse
from app.services import cascade as cascade_service
from app.services import jobs as jobs_service
from app.services import models as service
from app.services.pagination import list_page

router = APIRouter(prefix="/v1/models", tags=["models"], responses=ERROR_RESPONSES)


@router.get("", response_model=Page[ModelRead])
def list_models(session: SessionDep, tenant: TenantDep, inference: InferenceDep,
                limit: Annotated[int, Query(ge=1, le=100)] = 20,
                after: Annotated[str | None, Query(max_length=200)] = None) -> dict:
    """List your distilled models, newest first."""
    page = list_page(session, Model, tenant.id, limit, after)
    return {**page, "data": [service.model_read(inference, m) for m in page["data"]]}


@router.get("/{model_id}", response_model=ModelRead)
def get_model(model: ModelDep, inference: InferenceDep) -> ModelRead:
    """A model with its metrics (student, teacher, agreement, export checks), size, parameters and runtime."""
    return service.model_read(inference, model)


async def predict(body: PredictRequest, model: ModelRefDep, request: Request) -> Response:
    """Label, score and class probabilities for each input (micro-batched with other requests).

    ``"quantize": "int8"`` serves the request on the model's int8 onnxruntime export."""
    # The hot path: app state instead of two more dependencies, and a response serialised
    # directly by orjson (the records come from our own predictor: re-validating them buys nothing).
    state = request.app.state
    predictions = await service.predict(state.inference, model, body, state.settings, state.sessionmaker)
    return Response(orjson.dumps({"model_id": model.id, "predictions": predictions}),
                    media_type="application/json")


def add_predict_route(app: FastAPI) -> None:
    """Predict on the app's own router, before every other route: FastAPI matches an included router's
    routes through per-request context objects (a tenth of predict's time in the event loop, profiled),
    a route of the app itself with one regex. FastAPI still declares it (OpenAPI, body schema and
    security come from ``predict``'s signature); ``PredictRoute`` replaces only how a request reaches
    it (app/api/predict_route.py)."""
    app.router.add_api_route(f"{router.prefix}/{{model_id}}/predict", predict, methods=["POST"], tags=["models"],
                             responses=ERROR_RESPONSES, response_model=PredictResponse,
                             openapi_extra=PREDICT_SECURITY, route_class_override=PredictRoute)
    app.router.routes.insert(0, app.router.routes.pop())


@router.get("/{model_id}/artifact", response_class=FileResponse,
            responses={200: {"content": {"application/gzip": {}, "application/zip": {}},
                             "description": "tar.gz of the student directory, or zip of its ONNX package"}})
async def download_artifact(model: ModelDep, store: StoreDep, settings: SettingsDep, request: Request,
                            format: Literal["tar.gz", "onnx"] = "tar.gz",
                            quantize: Literal["int8"] | None = None) -> FileResponse:
    """Download the student directory (tar.gz), or its checked ONNX package (``format=onnx``, zip;
    ``quantize=int8`` for int8 weights). The first ONNX download builds it; later ones are cached."""
    tmp = settings.data_dir / "tmp"
    if format == "onnx":
        path, temporary = await run_in_threadpool(service.onnx_export_file, request.app.state.exports, model,
                                                  quantize, tmp)
        variant = f"onnx-{quantize or 'fp32'}"
        return FileResponse(path, media_type="application/zip", filename=f"{model.id}-{variant}.zip",
                            background=BackgroundTask(path.unlink, missing_ok=True) if temporary else None)
    if quantize is not None:
        raise Unprocessable("quantize applies to format=onnx only", param="quantize")
    path = await run_in_threadpool(service.build_artifact_tarball, store, model, tmp)
    return FileResponse(path, media_type="application/gzip", filename=f"{model.id}.tar.gz",
                        background=BackgroundTask(path.unlink, missing_ok=True))


@router.delete("/{model_id}", status_code=204, response_class=Response)
def delete_model(model: ModelDep, session: SessionDep, store: StoreDep, inference: InferenceDep) -> Response:
    """Delete a model and its files."""
    service.delete_model(session, store, inference, model)
    return Response(status_code=204)


@router.post("/{model_id}/cascade", response_model=ModelRead)
def enable_cascade(body: CascadeRequest, model: ModelDep, session: SessionDep, settings: SettingsDep,
                   tenant: TenantDep, inference: InferenceDep) -> ModelRead:
    """Serve the model as a cascade: the student answers, rows it is less sure of than a threshold go
    to the teacher (each prediction says ``served_by``). The threshold is chosen on the job's
    validation rows for the target: ``target_accuracy`` (a fraction of the teacher's accuracy) or
    ``max_deferred_fraction`` (a deferral budget). ``keep_traffic`` keeps the deferred rows with the
    teacher's answers (bounded by ``max_kept_rows``) for ``POST /v1/models/{id}/redistil``."""
    cascade_service.configure(session, settings, model, body)
    inference.forget_ref(tenant.id, model.id)
    return service.model_read(inference, model)


@router.delete("/{model_id}/cascade", response_model=ModelRead)
def disable_cascade(model: ModelDep, session: SessionDep, tenant: TenantDep, inference: InferenceDep) -> ModelRead:
    """Serve the student alone again (kept traffic stays until the model is deleted)."""
    cascade_service.disable(session, model)
    inference.forget_ref(tenant.id, model.id)
    return service.model_read(inference, model)


@router.get("/{model_id}/traffic")
def traffic(model: ModelDep, session: SessionDep) -> dict:
    """How many deferred rows the cascade has kept for redistil, and its bound."""
    return cascade_service.traffic_summary(session, model)


@router.post("/{model_id}/redistil", status_code=202, response_model=JobRead)
def redistil(model: ModelDep, response: Response, session: SessionDep, settings: SettingsDep, store: StoreDep,
             enqueue: EnqueueDep):
    """Start a new job with the parent's teacher, eval data and settings, on its training rows plus the
    rows the cascade kept; its report shows the share deferred at the same target before and after."""
    job, _dataset = cascade_service.redistil(session, store, settings, model)
    jobs_service.enqueue_after_commit(session, job, enqueue)
    response.headers["Location"] = f"/v1/jobs/{job.id}"
    return job
