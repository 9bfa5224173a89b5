"""Every setting is used, and none is documented as unused (a leftover setting misleads operators)."""

from __future__ import annotations

import re
from pathlib import Path

from app.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DOCS = ("README.md", "docs/API.md")
UNUSED = re.compile(r"not used|unused|no longer used|deprecated|ignored", re.IGNORECASE)


def _code() -> str:
    files = [p for folder in ("app", "worker", "lelp") for p in (ROOT / folder).rglob("*.py")]
    return "\n".join(p.read_text() for p in files if p != ROOT / "app/settings.py")


def test_every_setting_is_read_somewhere() -> None:
    code = _code()
    # read as ``settings.name`` or, by the client and the library (which take no Settings), as ``LELP_NAME``
    unread = [name for name in Settings.model_fields
              if not re.search(rf"\b{name}\b", code) and f"LELP_{name.upper()}" not in code]
    assert unread == [], f"settings nothing reads: {unread}"


def test_no_setting_is_documented_as_unused() -> None:
    fields = {f"LELP_{name.upper()}" for name in Settings.model_fields}
    for doc in DOCS:
        for line in (ROOT / doc).read_text().splitlines():
            match = re.match(r"\|\s*`(LELP_[A-Z0-9_]+)`\s*\|", line)
            if match is None:
                continue
            assert not UNUSED.search(line), f"{doc}: {line}"
            assert match.group(1) in fields, f"{doc} documents {match.group(1)}, which is not a setting"
    for name, field in Settings.model_fields.items():
        assert not UNUSED.search(field.description or ""), name
