"""A model directory's own files, and copying exactly those (never a link, never a stray file).

A Hugging Face model directory is ``config.json``, its weights and its tokenizer files. When
a model moves (an upload into the store, an encoder into a student artifact) only these are
copied, and each must be a regular file: a symlink could point anywhere on the machine, and
other files beside the model (notes, keys, another model) are not the model's to carry.
``read_base_config`` describes a pretrained encoder (a student base) the way
``lelp.teacher.loading.read_teacher_config`` describes a teacher, through the same config reader,
but without asking for a classification head.
"""

from __future__ import annotations

import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

from lelp.errors import TeacherError
from lelp.teacher.loading import (
    TOKENIZER_FILES,
    VOCAB_FILES,
    config_hidden_size,
    count_stored_parameters,
    directory_sha256,
    find_weights,
    read_model_config,
    weight_files,
)
from lelp.uploads.model_limits import ModelLimits


@dataclass(frozen=True)
class BaseModelInfo:
    """A pretrained model usable as a student base: an encoder, no head required."""

    architecture: str
    model_type: str
    hidden_size: int
    parameters: int | None
    weights_file: str
    sha256: str


def _regular_file(root: Path, name: str) -> bool:
    """True for a regular file; a symlink (even to a file inside ``root``) is refused outright."""
    try:
        mode = os.lstat(root / name).st_mode
    except FileNotFoundError:
        return False
    if stat.S_ISLNK(mode):
        raise TeacherError(f"{name} in the model directory is a symbolic link; links are never followed: "
                           "copy the file itself into the directory")
    return stat.S_ISREG(mode)


def model_file_names(root: str | Path) -> list[str]:
    """``config.json``, the weights and the tokenizer files of the model in ``root`` (sorted)."""
    root = Path(root)
    if not _regular_file(root, "config.json"):
        raise TeacherError("no config.json in the model directory: save the model with save_pretrained()")
    names = ["config.json", *weight_files(root, find_weights(root))]
    for name in names[1:]:
        if not _regular_file(root, name):
            raise TeacherError(f"{name} in the model directory is not a regular file")
    names += [name for name in TOKENIZER_FILES if _regular_file(root, name)]
    return sorted(set(names))


def copy_model_files(source: str | Path, target: str | Path) -> list[str]:
    """Copy the model's own files from ``source`` to ``target`` (created); returns their names.

    Each file is opened with ``O_NOFOLLOW``, so a link swapped in after the check is refused too.
    """
    source, target = Path(source), Path(target)
    names = model_file_names(source)
    target.mkdir(parents=True, exist_ok=True)
    for name in names:
        try:
            fd = os.open(source / name, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except OSError as exc:
            raise TeacherError(f"{name} in the model directory cannot be read: {exc.strerror}") from None
        with os.fdopen(fd, "rb") as src, (target / name).open("wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
    return names


def read_base_config(path: str | Path, limits: ModelLimits | None = None) -> BaseModelInfo:
    """Validate a pretrained model directory as a student base, without torch.

    The same checks as a teacher (config read by ``read_model_config``: no remote code; weights
    that load safely; a tokenizer) except the classification head: a base is an encoder.
    """
    root = Path(path)
    config = read_model_config(root, limits)
    names = model_file_names(root)
    weights = find_weights(root)
    if not any(name in names for name in VOCAB_FILES):
        raise TeacherError(f"no tokenizer files in the model directory (expected one of {', '.join(VOCAB_FILES)}): "
                           "save the tokenizer next to the model")
    architectures = config.get("architectures") or []
    architecture = str(architectures[0]) if isinstance(architectures, list) and architectures else ""
    return BaseModelInfo(architecture=architecture, model_type=str(config.get("model_type", "")),
                         hidden_size=config_hidden_size(config), parameters=count_stored_parameters(root, weights),
                         weights_file=weights, sha256=directory_sha256(root, names))
