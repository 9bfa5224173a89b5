"""/v1/base-models"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from app.db.models import BaseModelRow
from app.deps import BaseModelDep, SessionDep, SettingsDep, StoreDep, TenantDep
from app.schemas.base_models import BaseModelFromURI, BaseModelRead
from app.schemas.common import ERROR_RESPONSES, Page
from app.services import base_models as service
from app.services.pagination import list_page
from app.services.uploads import body_kind, multipart_openapi, read_json, read_multipart

router = APIRouter(prefix="/v1/base-models", tags=["base models"], responses=ERROR_RESPONSES)

UPLOAD_DOC = multipart_openapi(
    {"name": {"type": "string", "maxLength": 200}}, "BaseModelFromURI",
    "A .tar.gz or .zip of a pretrained Hugging Face model directory (an encoder: no classification head "
    "needed), or a JSON body with a uri.")


@router.post("", status_code=201, response_model=BaseModelRead, openapi_extra=UPLOAD_DOC,
             responses={413: ERROR_RESPONSES[422] | {"description": "Upload too large"},
                        415: ERROR_RESPONSES[422] | {"description": "Not multipart or JSON"}})
async def create_base_model(request: Request, session: SessionDep, tenant: TenantDep, settings: SettingsDep,
                            store: StoreDep) -> BaseModelRow:
    """Upload a pretrained encoder to start students from (`student.base` of a job)."""
    if body_kind(request) == "json":
        body = await read_json(request, BaseModelFromURI)
        return await run_in_threadpool(service.create_from_uri, session, store, settings, tenant.id, body.uri,
                                       body.name)
    upload = await read_multipart(request, max_bytes=settings.max_upload_bytes, tmp_dir=settings.data_dir / "tmp",
                                  allowed_fields={"name"})
    try:
        return await run_in_threadpool(service.create_from_archive, session, store, settings, tenant.id, upload,
                                       upload.fields.get("name") or None)
    finally:
        upload.discard()


@router.get("", response_model=Page[BaseModelRead])
def list_base_models(session: SessionDep, tenant: TenantDep, limit: Annotated[int, Query(ge=1, le=100)] = 20,
                     after: Annotated[str | None, Query(max_length=200)] = None) -> dict:
    """List your base models, newest first."""
    return list_page(session, BaseModelRow, tenant.id, limit, after)


@router.get("/{base_model_id}", response_model=BaseModelRead)
def get_base_model(base_model: BaseModelDep) -> BaseModelRow:
    """One base model."""
    return base_model


@router.delete("/{base_model_id}", status_code=204, response_class=Response)
def delete_base_model(base_model: BaseModelDep, session: SessionDep, store: StoreDep) -> Response:
    """Delete a base model and its files (refused while a queued or running job starts from it)."""
    service.delete_base_model(session, store, base_model)
    return Response(status_code=204)
