"""FastAPI dependencies: settings, session, tenant (from the API key), and "this id exists here".

The ``valid_*`` dependencies answer 404 for an id that does not exist *or* belongs to
another tenant: the two cases must look the same from outside.
(No ``from __future__ import annotations`` here: the path-parameter alias in ``_owned``
must be evaluated where it is defined.)
"""

from collections.abc import Callable, Iterator
from typing import Annotated

from fastapi import Depends, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from app.db import repositories as repo
from app.db.models import BaseModelRow, Dataset, Job, Model, Teacher, Tenant
from app.errors import Unauthorized, not_found
from app.request_guard import TENANT_STATE
from app.security import authenticate_detached, hash_key, new_key_cache
from app.services import jobs as jobs_service
from app.services.inference import InferenceService, ModelRef
from app.settings import Settings
from app.storage import ArtifactStore

bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer lelp_...`")


async def get_app_settings(request: Request) -> Settings:  # async: no thread-pool hop
    return request.app.state.settings


def get_session(request: Request) -> Iterator[Session]:
    session = request.app.state.sessionmaker()
    try:
        yield session
    finally:
        session.close()


def get_store(request: Request) -> ArtifactStore:
    return request.app.state.store


async def get_inference(request: Request) -> InferenceService:  # async: no thread-pool hop
    return request.app.state.inference


SettingsDep = Annotated[Settings, Depends(get_app_settings)]
SessionDep = Annotated[Session, Depends(get_session)]
StoreDep = Annotated[ArtifactStore, Depends(get_store)]
InferenceDep = Annotated[InferenceService, Depends(get_inference)]


def get_enqueuer() -> jobs_service.Enqueue | None:
    """None: ``submit_job`` routes and sends the job itself (``app.queue``); tests override this to catch it."""
    return None


EnqueueDep = Annotated[jobs_service.Enqueue | None, Depends(get_enqueuer)]


async def tenant_for_key(state, key: str | None) -> Tenant:
    """The tenant of ``key`` (``Unauthorized`` when absent or unknown). A verified key is cached
    (sha256 -> tenant, ``KEY_CACHE_TTL_S``), so a known key costs one hash and no query; a miss
    queries in a thread with a short session of its own, whose connection goes back at once
    (holding one across waits deadlocked the pool: tests/reliability/test_concurrency.py).
    ``app.request_guard`` calls it before a body is read; ``get_tenant`` for the other requests."""
    if key is None:
        raise Unauthorized("send your API key as 'Authorization: Bearer <key>'", code="missing_api_key")
    cache = getattr(state, "key_cache", None)
    if cache is None:
        cache = state.key_cache = new_key_cache()
    digest = hash_key(key)
    tenant = cache.get(digest)
    if tenant is None:
        tenant = await run_in_threadpool(authenticate_detached, state.sessionmaker, key)
        if tenant is None:
            raise Unauthorized("the API key is not valid", code="invalid_api_key")
        cache[digest] = tenant
    return tenant


def bearer_key(authorization: str | None) -> str | None:
    """The key of an ``Authorization: Bearer <key>`` header, None when there is none."""
    scheme, _, key = (authorization or "").strip().partition(" ")
    return (key.strip() or None) if scheme.lower() == "bearer" else None


#: the longest resource id a path may carry (ours are 36 characters)
RESOURCE_ID_MAX_LENGTH = 64


def guarded_tenant(request: Request) -> Tenant | None:
    """The tenant ``app.request_guard`` found before reading the body (None: the request had no body)."""
    return request.scope.get("state", {}).get(TENANT_STATE)


async def get_tenant(request: Request,
                     credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> Tenant:
    """The caller's tenant (detached: use its columns only); already known when the request guard
    checked the key before reading the body."""
    tenant = guarded_tenant(request)
    if tenant is not None:
        return tenant
    if credentials is None or credentials.scheme.lower() != "bearer":
        return await tenant_for_key(request.app.state, None)
    return await tenant_for_key(request.app.state, credentials.credentials)


TenantDep = Annotated[Tenant, Depends(get_tenant)]


def _owned(table: type, kind: str, param: str) -> Callable:
    def dependency(session: SessionDep, tenant: TenantDep,
                   resource_id: Annotated[str, Path(alias=param, max_length=RESOURCE_ID_MAX_LENGTH)]):
        row = repo.get_owned(session, table, tenant.id, resource_id)
        session.commit()  # give the connection back between threadpool calls (see get_tenant)
        if row is None:
            raise not_found(kind, resource_id)
        return row

    dependency.__name__ = f"valid_{kind}"
    return dependency


valid_teacher = _owned(Teacher, "teacher", "teacher_id")
valid_dataset = _owned(Dataset, "dataset", "dataset_id")
valid_job = _owned(Job, "job", "job_id")
valid_model = _owned(Model, "model", "model_id")
valid_base_model = _owned(BaseModelRow, "base_model", "base_model_id")

TeacherDep = Annotated[Teacher, Depends(valid_teacher)]
DatasetDep = Annotated[Dataset, Depends(valid_dataset)]
JobDep = Annotated[Job, Depends(valid_job)]
ModelDep = Annotated[Model, Depends(valid_model)]
BaseModelDep = Annotated[BaseModelRow, Depends(valid_base_model)]


def _find_model(make_session: Callable[[], Session], tenant_id: str, model_id: str
                ) -> tuple[Model | None, str | None]:
    """The model row and, for a cascade, its teacher's store path."""
    with make_session() as session:
        row = repo.get_owned(session, Model, tenant_id, model_id)
        teacher = session.get(Teacher, row.teacher_id) if row is not None and row.cascade and row.teacher_id else None
        session.commit()
        return row, teacher.uri if teacher is not None else None


async def valid_model_ref(request: Request,
                          model_id: Annotated[str, Path(max_length=RESOURCE_ID_MAX_LENGTH)]) -> ModelRef:
    """Predict's model lookup: (tenant, id) -> id + artifact URI, cached for a short TTL by the
    inference service (deleting a model evicts it), so a predict usually queries nothing.

    The same ``bearer`` and ``get_tenant`` as every route, called here directly: FastAPI's
    per-dependency bookkeeping was a tenth of the event loop's time per predict (py-spy, see
    benchmarks/README.md), and this is predict's only dependency. The route declares the
    bearer scheme in its OpenAPI (``PREDICT_SECURITY``)."""
    tenant = guarded_tenant(request) or await get_tenant(request, await bearer(request))  # a predict has a body
    inference: InferenceService = request.app.state.inference
    ref = inference.cached_ref(tenant.id, model_id)
    if ref is None:
        row, teacher_uri = await run_in_threadpool(_find_model, request.app.state.sessionmaker, tenant.id, model_id)
        if row is None:
            raise not_found("model", model_id)
        cascade = row.cascade if teacher_uri is not None else None  # a deleted teacher: the student alone
        ref = inference.remember_ref(tenant.id, row.id, row.uri, row.text_pairs, cascade=cascade,
                                     teacher_id=row.teacher_id if cascade else None, teacher_uri=teacher_uri,
                                     max_length=int((cascade or {}).get("max_length") or 128))
    return ref


ModelRefDep = Annotated[ModelRef, Depends(valid_model_ref)]
#: the OpenAPI security of a route whose only dependency is ``valid_model_ref``
PREDICT_SECURITY = {"security": [{"HTTPBearer": []}]}
