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

from app.db import repositories as repo
from app.db.models import Dataset, Job, Model, Teacher, Tenant
from app.errors import Unauthorized, not_found
from app.security import authenticate
from app.services import jobs as jobs_service
from app.services.inference import InferenceService
from app.settings import Settings
from app.storage import ArtifactStore

bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer lelp_...`")


def get_app_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_session(request: Request) -> Iterator[Session]:
    session = request.app.state.sessionmaker()
    try:
        yield session
    finally:
        session.close()


def get_store(request: Request) -> ArtifactStore:
    return request.app.state.store


def get_inference(request: Request) -> InferenceService:
    return request.app.state.inference


def get_enqueuer() -> jobs_service.Enqueue:
    """The function that hands a committed job to the broker (tests may override it)."""
    return jobs_service.enqueue


SettingsDep = Annotated[Settings, Depends(get_app_settings)]
SessionDep = Annotated[Session, Depends(get_session)]
StoreDep = Annotated[ArtifactStore, Depends(get_store)]
InferenceDep = Annotated[InferenceService, Depends(get_inference)]
EnqueueDep = Annotated[jobs_service.Enqueue, Depends(get_enqueuer)]


def get_tenant(session: SessionDep,
               credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> Tenant:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized("send your API key as 'Authorization: Bearer <key>'", code="missing_api_key")
    tenant = authenticate(session, credentials.credentials)
    if tenant is None:
        raise Unauthorized("the API key is not valid", code="invalid_api_key")
    return tenant


TenantDep = Annotated[Tenant, Depends(get_tenant)]


def _owned(table: type, kind: str, param: str) -> Callable:
    def dependency(session: SessionDep, tenant: TenantDep,
                   resource_id: Annotated[str, Path(alias=param, max_length=64)]):  # noqa: ANN202
        row = repo.get_owned(session, table, tenant.id, resource_id)
        if row is None:
            raise not_found(kind, resource_id)
        return row

    dependency.__name__ = f"valid_{kind}"
    return dependency


valid_teacher = _owned(Teacher, "teacher", "teacher_id")
valid_dataset = _owned(Dataset, "dataset", "dataset_id")
valid_job = _owned(Job, "job", "job_id")
valid_model = _owned(Model, "model", "model_id")

TeacherDep = Annotated[Teacher, Depends(valid_teacher)]
DatasetDep = Annotated[Dataset, Depends(valid_dataset)]
JobDep = Annotated[Job, Depends(valid_job)]
ModelDep = Annotated[Model, Depends(valid_model)]
