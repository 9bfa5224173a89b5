"""/v1/teachers"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from app.db.models import Teacher
from app.deps import SessionDep, SettingsDep, StoreDep, TeacherDep, TenantDep
from app.schemas.common import ERROR_RESPONSES, Page
from app.schemas.teachers import TeacherFromURI, TeacherRead
from app.services import teachers as service
from app.services.pagination import list_page
from app.services.uploads import body_kind, form_bool, multipart_openapi, read_json, read_multipart

router = APIRouter(prefix="/v1/teachers", tags=["teachers"], responses=ERROR_RESPONSES)

UPLOAD_DOC = multipart_openapi(
    {"name": {"type": "string", "maxLength": 200},
     "text_pairs": {"type": "boolean", "default": False,
                    "description": "the classifier reads (text, text_pair) inputs, e.g. NLI"}}, "TeacherFromURI",
    "A .tar.gz or .zip of a Hugging Face sequence-classification model directory, or a JSON body with a uri.")


@router.post("", status_code=201, response_model=TeacherRead, openapi_extra=UPLOAD_DOC,
             responses={413: ERROR_RESPONSES[422] | {"description": "Upload too large"},
                        415: ERROR_RESPONSES[422] | {"description": "Not multipart or JSON"}})
async def create_teacher(request: Request, session: SessionDep, tenant: TenantDep, settings: SettingsDep,
                         store: StoreDep) -> Teacher:
    """Upload a teacher archive (multipart field `file`) or register a URI under an allowed root."""
    if body_kind(request) == "json":
        body = await read_json(request, TeacherFromURI)
        return await run_in_threadpool(service.create_from_uri, session, store, settings, tenant.id, body.uri,
                                       body.name, body.text_pairs)
    upload = await read_multipart(request, max_bytes=settings.max_upload_bytes, tmp_dir=settings.data_dir / "tmp",
                                  allowed_fields={"name", "text_pairs"})
    try:
        text_pairs = form_bool(upload.fields, "text_pairs")
        return await run_in_threadpool(service.create_from_archive, session, store, settings, tenant.id, upload,
                                       upload.fields.get("name") or None, text_pairs)
    finally:
        upload.discard()


@router.get("", response_model=Page[TeacherRead])
def list_teachers(session: SessionDep, tenant: TenantDep, limit: Annotated[int, Query(ge=1, le=100)] = 20,
                  after: Annotated[str | None, Query(max_length=200)] = None) -> dict:
    """List your teachers, newest first."""
    return list_page(session, Teacher, tenant.id, limit, after)


@router.get("/{teacher_id}", response_model=TeacherRead)
def get_teacher(teacher: TeacherDep) -> Teacher:
    """One teacher."""
    return teacher


@router.delete("/{teacher_id}", status_code=204, response_class=Response)
def delete_teacher(teacher: TeacherDep, session: SessionDep, store: StoreDep) -> Response:
    """Delete a teacher and its files (refused while a queued or running job uses it)."""
    service.delete_teacher(session, store, teacher)
    return Response(status_code=204)
