"""/v1/jobs/{id}/report and /v1/models/{id}/report: HTML pages (tenant-scoped like every id)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from app.deps import JobDep, ModelDep, SessionDep, StoreDep
from app.schemas.common import ERROR_RESPONSES
from app.services import reports as service
from app.ui import REPORT_CSP, html_response

router = APIRouter(tags=["reports"], responses=ERROR_RESPONSES)
HTML = {200: {"content": {"text/html": {}}, "description": "A self-contained HTML page"}}


@router.get("/v1/jobs/{job_id}/report", response_class=HTMLResponse, responses=HTML)
def job_report(job: JobDep, session: SessionDep, store: StoreDep) -> HTMLResponse:
    """The job's report: the student's report.html once it succeeded; until then a live page
    (stage, progress, ETA, the loss curve so far)."""
    html, live = service.job_report(session, store, job)
    return html_response(html, REPORT_CSP, no_store=live)


@router.get("/v1/models/{model_id}/report", response_class=HTMLResponse, responses=HTML)
async def model_report(model: ModelDep, store: StoreDep) -> HTMLResponse:
    """The model's report.html: how the student compares with its teacher and what LELP found."""
    html = await run_in_threadpool(service.stored_report, store, model)
    return html_response(html, REPORT_CSP)
