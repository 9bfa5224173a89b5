"""API keys: created once, stored as a sha256 hash, looked up by prefix.

A key is ``lelp_<43 url-safe chars>`` (256 random bits). The database keeps its first
12 characters (to find the candidate row with an index) and the sha256 of the whole key;
the comparison is constant-time. The plaintext exists only in the creator's output.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from cachetools import TTLCache
from sqlalchemy.orm import Session, sessionmaker

from app.db import repositories as repo
from app.db.models import Tenant

KEY_PREFIX = "lelp_"
LOOKUP_CHARS = 12


def hash_key(key: str) -> str:
    # A fast hash is right here: the key has 256 random bits, so there is nothing to brute-force.
    return hashlib.sha256(key.encode()).hexdigest()


def create_api_key(session: Session, tenant_name: str) -> str:
    """Create a key for ``tenant_name`` (creating the tenant if needed), commit, return the key once."""
    tenant = repo.get_or_create_tenant(session, tenant_name)
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    repo.add_api_key(session, tenant.id, key[:LOOKUP_CHARS], hash_key(key))
    session.commit()
    return key


def authenticate(session: Session, key: str) -> Tenant | None:
    """The tenant owning ``key``, or None when the key is unknown, revoked or malformed."""
    if not key.startswith(KEY_PREFIX) or len(key) < LOOKUP_CHARS or len(key) > 200:
        return None
    digest = hash_key(key)
    for candidate in repo.active_keys_with_prefix(session, key[:LOOKUP_CHARS]):
        if hmac.compare_digest(candidate.key_hash, digest):
            return session.get(Tenant, candidate.tenant_id)
    return None


#: How long a verified key is trusted without asking the database again (a revoked key
#: keeps working in an API process for at most this long).
KEY_CACHE_TTL_S = 30.0


def new_key_cache(ttl_s: float = KEY_CACHE_TTL_S) -> TTLCache:
    """sha256(key) -> Tenant for ``ttl_s``: a request with a known key then costs one hash, no query."""
    return TTLCache(maxsize=10_000, ttl=ttl_s)


def authenticate_detached(make_session: sessionmaker, key: str) -> Tenant | None:
    """``authenticate`` in a short session of its own; the tenant comes back detached (read-only use)."""
    with make_session() as session:
        tenant = authenticate(session, key)
        session.commit()  # end the read at once: the pool connection goes back
        return tenant
