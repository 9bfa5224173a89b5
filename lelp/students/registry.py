"""Student kinds by name: one plain mapping, imported lazily (no import-time registration)."""

from __future__ import annotations

import importlib

from lelp.errors import ConfigError

_CLASSES = {
    "ngram": "lelp.students.ngram:NgramStudent",
    "encoder_mlp": "lelp.students.encoder_mlp:EncoderMLPStudent",
    "transformer": "lelp.students.transformer:TransformerStudent",
}
STUDENT_KINDS = tuple(_CLASSES)


def student_class(kind: str):
    if kind not in _CLASSES:
        raise ConfigError(f"unknown student {kind!r}; choose one of {', '.join(STUDENT_KINDS)}", param="student")
    module, name = _CLASSES[kind].split(":")
    return getattr(importlib.import_module(module), name)
