"""API keys: Bearer auth, hashed storage, one tenant per key."""

from __future__ import annotations

import sqlalchemy as sa

from app.db.models import ApiKey, Tenant
from app.security import create_api_key


def test_missing_key_is_401_with_error_body(client) -> None:  # noqa: ANN001
    r = client.get("/v1/jobs")
    assert r.status_code == 401
    assert r.json() == {"error": {"code": "missing_api_key", "message": r.json()["error"]["message"], "param": None}}


def test_invalid_keys_are_401(client, key_a) -> None:  # noqa: ANN001
    for header in (f"Bearer {key_a}x", "Bearer lelp_nope", f"Basic {key_a}", "Bearer ", key_a,
                   "Bearer " + "lelp_" + "a" * 500):
        r = client.get("/v1/jobs", headers={"Authorization": header})
        assert r.status_code == 401, header
        assert r.json()["error"]["code"] in ("invalid_api_key", "missing_api_key")


def test_valid_key_is_accepted(client, auth_a) -> None:  # noqa: ANN001
    r = client.get("/v1/jobs", headers=auth_a)
    assert r.status_code == 200
    assert r.json() == {"data": [], "has_more": False, "next_cursor": None}


def test_keys_are_stored_hashed_and_tenant_is_created_once(db) -> None:  # noqa: ANN001
    key1 = create_api_key(db, "acme")
    key2 = create_api_key(db, "acme")
    assert key1.startswith("lelp_") and key1 != key2 and len(key1) > 40
    rows = db.scalars(sa.select(ApiKey)).all()
    assert len(rows) == 2
    assert db.scalar(sa.select(sa.func.count()).select_from(Tenant)) == 1
    stored = " ".join(f"{r.prefix} {r.key_hash}" for r in rows)
    assert key1 not in stored and key2 not in stored
    assert {r.prefix for r in rows} == {key1[:12], key2[:12]}


def test_revoked_key_is_refused(client, db, key_a) -> None:  # noqa: ANN001
    from app.db.base import utcnow

    db.execute(sa.update(ApiKey).values(revoked_at=utcnow()))
    db.commit()
    r = client.get("/v1/jobs", headers={"Authorization": f"Bearer {key_a}"})
    assert r.status_code == 401
