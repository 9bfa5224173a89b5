"""Refuse pickle weights that reference anything but tensors, without unpickling them.

A ``pytorch_model.bin`` is a pickle: loading it can run any code its author chose. The
worker only ever loads weights with ``torch.load(weights_only=True)``; this scan gives the
uploader a clear 422 at upload time instead, and needs no torch. It walks the pickle's
opcodes and collects every global it would import; anything outside the short list that
a plain ``state_dict`` needs is refused.
"""

from __future__ import annotations

import pickletools
import zipfile
from pathlib import Path

from app.errors import Unprocessable

SAFE_GLOBALS = {
    ("collections", "OrderedDict"),
    ("torch._utils", "_rebuild_tensor"),
    ("torch._utils", "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_parameter"),
    ("torch._utils", "_rebuild_parameter_with_state"),
    ("torch", "Size"),
    ("torch", "device"),
    *{("torch", f"{kind}Storage") for kind in (
        "Float", "Double", "Half", "BFloat16", "Long", "Int", "Short", "Char", "Byte", "Bool")},
    ("torch", "UntypedStorage"),
    *{("torch", dtype) for dtype in ("float32", "float16", "bfloat16", "float64", "int64", "int32", "int8",
                                     "uint8", "bool")},
}
STRING_OPS = {"SHORT_BINUNICODE", "BINUNICODE", "UNICODE", "BINUNICODE8", "SHORT_BINSTRING", "BINSTRING", "STRING"}
MAX_PICKLE_BYTES = 512 * 1024 * 1024


class UnsafePickle(Unprocessable):
    code = "invalid_teacher"


def pickle_globals(data: bytes) -> set[tuple[str, str]]:
    """Every (module, name) the pickle stream(s) in ``data`` would import; ("?", "?") if unresolvable."""
    found: set[tuple[str, str]] = set()
    pos = 0
    while pos < len(data):
        strings: list[str] = []
        memo: dict[int, str] = {}
        last_end = pos
        try:
            for opcode, arg, offset in pickletools.genops(data[pos:]):
                name = opcode.name
                if name in STRING_OPS:
                    strings.append(arg if isinstance(arg, str) else str(arg))
                elif name in ("BINPUT", "LONG_BINPUT", "PUT") and strings:
                    memo[int(arg)] = strings[-1]
                elif name == "MEMOIZE" and strings:
                    memo[len(memo)] = strings[-1]
                elif name in ("BINGET", "LONG_BINGET", "GET"):
                    if int(arg) in memo:
                        strings.append(memo[int(arg)])
                elif name in ("GLOBAL", "INST"):
                    module, _, attr = str(arg).partition(" ")
                    found.add((module, attr))
                elif name == "STACK_GLOBAL":
                    found.add((strings[-2], strings[-1]) if len(strings) >= 2 else ("?", "?"))
                elif name == "STOP":
                    last_end = pos + offset + 1
        except (ValueError, IndexError) as exc:
            raise UnsafePickle(f"the pickle weights are damaged: {exc}", param="file") from None
        if last_end == pos:
            break
        pos = last_end  # legacy torch.save files hold several pickles back to back
        if data[pos:pos + 1] != b"\x80":  # the rest is raw tensor storage, not pickle
            break
    return found


def _pickles_in(path: Path) -> list[tuple[str, bytes]]:
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            return [(info.filename, zf.read(info)) for info in zf.infolist()
                    if info.filename.endswith(".pkl") and info.file_size <= MAX_PICKLE_BYTES]
    if path.stat().st_size > MAX_PICKLE_BYTES:
        raise UnsafePickle(f"{path.name} is too large to check; upload safetensors weights instead", param="file")
    return [(path.name, path.read_bytes())]


def check_pickle_weights(model_dir: Path) -> None:
    """Raise a 422 when a ``*.bin`` / ``*.pt`` weights file references anything but tensors."""
    for path in sorted([*model_dir.glob("*.bin"), *model_dir.glob("*.pt"), *model_dir.glob("*.pth")]):
        for member, data in _pickles_in(path):
            unsafe = sorted(f"{m}.{n}" for m, n in pickle_globals(data) - SAFE_GLOBALS)
            if unsafe:
                raise UnsafePickle(
                    f"{path.name} ({member}) is a pickle that would import {', '.join(unsafe[:5])}: it could run "
                    "code, so it is refused; save the model with safetensors", param="file")
