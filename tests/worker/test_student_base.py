"""The worker reads a student base only from the store, and only a model of the job's own tenant.

The API stores ``student.base`` as an id; a job row holding anything else (a path, from an
older version or a direct insert) or another tenant's id fails as ``missing_input`` and no
file of that path is read.
"""

from __future__ import annotations

import pytest

from app.db.base import new_id, utcnow
from app.db.models import BaseModelRow, Tenant
from app.db.session import session_scope
from tests.worker.conftest import load_job
from worker.runner import run_job


@pytest.mark.parametrize("base", ["/etc", "{encoder}", "bm_" + "0" * 32, "tch_" + "0" * 32])
def test_a_base_that_is_not_an_owned_id_fails_the_job(worker_settings, make_job, tiny_encoder_dir, base):
    student = {"kind": "encoder_mlp", "base": base.format(encoder=tiny_encoder_dir)}
    job_id = make_job(method="kd", student=student)
    assert run_job(job_id, worker_settings) == "failed"
    job = load_job(worker_settings, job_id)
    assert job.error["code"] == "missing_input" and "not a registered model" in job.error["message"]


def test_another_tenants_base_model_fails_the_job(worker_settings, make_job, tiny_encoder_dir, store):
    other_tenant, base_id = new_id("ten"), new_id("bm")
    store.put_dir(tiny_encoder_dir, f"base_models/{base_id}")
    with session_scope(worker_settings.database_url) as session:
        session.add(Tenant(id=other_tenant, name=other_tenant, created_at=utcnow()))
        session.flush()
        session.add(BaseModelRow(id=base_id, tenant_id=other_tenant, name="theirs", uri=f"base_models/{base_id}",
                                 architecture="BertModel", model_type="bert", hidden_size=24, parameters=None,
                                 sha256="0" * 64, created_at=utcnow()))
    job_id = make_job(method="kd", student={"kind": "encoder_mlp", "base": base_id})
    assert run_job(job_id, worker_settings) == "failed"
    assert load_job(worker_settings, job_id).error["code"] == "missing_input"
