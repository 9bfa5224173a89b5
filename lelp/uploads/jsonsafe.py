"""JSON from untrusted files and bodies, with bounded size and nesting depth.

``json.loads`` recurses once per nesting level: a 100k-deep ``[[[...`` raises
``RecursionError`` (not a ``ValueError``), which escaped every ``except ValueError`` and
became a 500; a depth just under the interpreter's limit parses, then makes any recursive
consumer (transformers' config classes, pydantic, our own walkers) fail later. So every
JSON we read from an upload goes through :func:`loads`, which refuses both with one
``JSONLimitError`` (a ``ValueError``) before anything else looks at the value.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

#: Deepest nesting any model config, tokenizer file or request body needs (real ones: < 10).
MAX_DEPTH = 64
#: Largest JSON file read from a model directory (a big multilingual tokenizer.json: ~20 MB).
MAX_FILE_BYTES = 64 * 1024 * 1024


class JSONLimitError(ValueError):
    """The document is nested deeper than ``max_depth`` or larger than allowed."""


def depth(value: Any) -> int:
    """Nesting depth of a parsed JSON value (a scalar is 0, ``[]`` is 1), without recursion."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            level += 1
            stack.extend((v, level) for v in item.values())
        elif isinstance(item, list):
            level += 1
            stack.extend((v, level) for v in item)
        deepest = max(deepest, level)
    return deepest


def loads(data: str | bytes, *, max_depth: int = MAX_DEPTH) -> Any:
    """``json.loads`` that raises ``JSONLimitError`` for documents nested deeper than ``max_depth``.

    Other malformed input raises ``json.JSONDecodeError`` (also a ``ValueError``) as usual.
    """
    try:
        value = json.loads(data)
    except RecursionError:
        raise JSONLimitError(f"JSON nested deeper than {max_depth} levels") from None
    if depth(value) > max_depth:
        raise JSONLimitError(f"JSON nested deeper than {max_depth} levels")
    return value


def load_file(path: str | Path, *, max_depth: int = MAX_DEPTH, max_bytes: int = MAX_FILE_BYTES) -> Any:
    """Read and parse a JSON file with the size and depth bounds; ``OSError``/``ValueError`` on failure."""
    path = Path(path)
    size = path.stat().st_size
    if size > max_bytes:
        raise JSONLimitError(f"{path.name} is {size:,} bytes; JSON files are limited to {max_bytes:,}")
    return loads(path.read_bytes(), max_depth=max_depth)
