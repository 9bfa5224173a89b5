"""/v1/datasets"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from app.db.models import Dataset
from app.deps import DatasetDep, SessionDep, SettingsDep, StoreDep, TenantDep
from app.schemas.common import ERROR_RESPONSES, Page
from app.schemas.datasets import DatasetFromURI, DatasetRead
from app.services import datasets as service
from app.services.pagination import list_page
from app.services.uploads import body_kind, multipart_openapi, read_json, read_multipart

router = APIRouter(prefix="/v1/datasets", tags=["datasets"], responses=ERROR_RESPONSES)

FORM_FIELDS = {"name", "text_column", "text_pair_column", "label_column", "format"}
UPLOAD_DOC = multipart_openapi(
    {
        "name": {"type": "string", "maxLength": 200},
        "text_column": {"type": "string", "default": "text", "maxLength": 200},
        "text_pair_column": {"type": "string", "maxLength": 200},
        "label_column": {"type": "string", "default": "label", "maxLength": 200,
                         "description": "empty for an unlabelled (transfer) dataset"},
        "format": {"type": "string", "enum": ["csv", "tsv", "jsonl", "parquet"]},
    },
    "DatasetFromURI",
    "A CSV, TSV, JSONL or Parquet file (multipart field `file`), or a JSON body with a uri.",
)


@router.post("", status_code=201, response_model=DatasetRead, openapi_extra=UPLOAD_DOC,
             responses={413: ERROR_RESPONSES[422] | {"description": "Upload too large"},
                        415: ERROR_RESPONSES[422] | {"description": "Unknown file format"}})
async def create_dataset(request: Request, session: SessionDep, tenant: TenantDep, settings: SettingsDep,
                         store: StoreDep) -> Dataset:
    """Upload and validate a dataset; the answer has its row and label counts and checksum."""
    if body_kind(request) == "json":
        body = await read_json(request, DatasetFromURI)
        choice = service.ColumnChoice(text_column=body.text_column, text_pair_column=body.text_pair_column or None,
                                      label_column=body.label_column or None, format=body.format)
        return await run_in_threadpool(lambda: service.create_from_uri(
            session, store, settings, tenant.id, uri=body.uri, name=body.name, choice=choice))
    upload = await read_multipart(request, max_bytes=settings.max_upload_bytes, tmp_dir=settings.data_dir / "tmp",
                                  allowed_fields=FORM_FIELDS)
    try:
        return await run_in_threadpool(service.create_from_upload, session, store, settings, tenant.id, upload)
    finally:
        upload.discard()


@router.get("", response_model=Page[DatasetRead])
def list_datasets(session: SessionDep, tenant: TenantDep, limit: Annotated[int, Query(ge=1, le=100)] = 20,
                  after: Annotated[str | None, Query(max_length=200)] = None) -> dict:
    """List your datasets, newest first."""
    return list_page(session, Dataset, tenant.id, limit, after)


@router.get("/{dataset_id}", response_model=DatasetRead)
def get_dataset(dataset: DatasetDep) -> Dataset:
    """One dataset with its validation report."""
    return dataset


@router.delete("/{dataset_id}", status_code=204, response_class=Response)
def delete_dataset(dataset: DatasetDep, session: SessionDep, store: StoreDep) -> Response:
    """Delete a dataset and its file (refused while a queued or running job uses it)."""
    service.delete_dataset(session, store, dataset)
    return Response(status_code=204)
