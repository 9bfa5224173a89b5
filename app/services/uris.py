"""Check that a teacher or dataset URI points under one of ``allowed_uri_roots``.

Local paths are resolved (symlinks and all) before the check, so a link inside an
allowed root cannot lead outside it; remote URLs must start with an allowed remote root
and may not contain ``..`` segments.
"""

from __future__ import annotations

import os
import re
from urllib.parse import unquote, urlsplit

from app.errors import Unprocessable


class URINotAllowed(Unprocessable):
    code = "uri_not_allowed"


def _decoded_forms(uri: str, rounds: int = 3) -> list[str]:
    """``uri`` and its percent-decodings (``%2e%2e`` and ``%252e%252e`` are ``..`` to an HTTP or S3 server)."""
    forms = [uri]
    for _ in range(rounds):
        decoded = unquote(forms[-1])
        if decoded == forms[-1]:
            break
        forms.append(decoded)
    return forms


def _is_local(uri: str) -> bool:
    return urlsplit(uri).scheme in ("", "file")


def _local_path(uri: str) -> str:
    return uri[len("file://"):] if uri.startswith("file://") else uri


def check_uri(uri: str, allowed_roots: list[str], param: str = "uri") -> str:
    """The resolved path or URL when ``uri`` is under an allowed root; URINotAllowed otherwise.

    A local root matches on whole path components (``/srv/models`` does not allow ``/srv/models2``).
    """
    if not allowed_roots:
        raise URINotAllowed("this server takes uploads only: no URI roots are allowed (LELP_ALLOWED_URI_ROOTS)",
                            param=param)
    forms = _decoded_forms(uri)
    if any("\x00" in form or ".." in re.split(r"[/\\]", form) for form in forms):
        raise URINotAllowed("URIs may not contain '..' segments (percent-encoded or not)", param=param)
    if _is_local(uri):
        path = _local_path(uri)
        if not os.path.isabs(path):
            raise URINotAllowed(f"a local URI must be an absolute path, got {uri!r}", param=param)
        real = os.path.realpath(path)
        for root in allowed_roots:
            if _is_local(root):
                real_root = os.path.realpath(_local_path(root))
                if real == real_root or real.startswith(real_root.rstrip(os.sep) + os.sep):
                    return real
    else:
        for root in allowed_roots:
            if not _is_local(root) and uri.startswith(root.rstrip("/") + "/"):
                return uri
    raise URINotAllowed(f"{uri!r} is not under an allowed root", param=param)
