"""Refuse pickle weights that reference anything but tensors, without unpickling them.

A ``pytorch_model.bin`` is a pickle: loading it can run any code its author chose. The
worker only ever loads weights with ``torch.load(weights_only=True)``; this scan gives the
uploader a clear refusal at upload time instead (a ``TeacherError``: the API's 422), and needs
no torch. It walks the pickle's
opcodes and collects every global it would import; anything outside the short list that
a plain ``state_dict`` needs is refused.
"""

from __future__ import annotations

import pickletools
import zipfile
from pathlib import Path

from lelp.errors import TeacherError

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


class UnsafePickle(TeacherError):
    """Pickle weights that would import something other than tensors (or cannot be checked)."""


GET_OPS = {"BINGET", "LONG_BINGET", "GET"}
PUT_OPS = {"BINPUT", "LONG_BINPUT", "PUT"}


def pickle_globals(data: bytes) -> set[tuple[str, str]]:
    """Every (module, name) the pickle stream(s) in ``data`` would import; ("?", "?") if unresolvable.

    ``STACK_GLOBAL`` takes its module and name from the stack, so we follow the top of the
    stack as far as it is certain: strings pushed by string opcodes, and memo entries
    stored by ``PUT``/``MEMOIZE`` and read back by ``GET``. ``MEMOIZE`` numbers every value
    it stores, strings or not (the old scan numbered only strings, so an empty list
    memoised first shifted every later index: ``os``/``system`` fetched from the memo read
    as ``collections``/``OrderedDict``). Any other opcode makes the stack unknown, and a
    ``STACK_GLOBAL`` whose operands are unknown counts as unsafe.
    """
    found: set[tuple[str, str]] = set()
    pos = 0
    while pos < len(data):
        top: list[str | None] = []  # the known top of the stack (last = top); empty = unknown
        memo: dict[int, str | None] = {}
        last_end = pos
        try:
            for opcode, arg, offset in pickletools.genops(data[pos:]):
                name = opcode.name
                if name in STRING_OPS:
                    top.append(arg if isinstance(arg, str) else str(arg))
                elif name in PUT_OPS:
                    memo[int(arg)] = top[-1] if top else None
                elif name == "MEMOIZE":
                    memo[len(memo)] = top[-1] if top else None
                elif name in GET_OPS:
                    top.append(memo.get(int(arg)))
                elif name == "POP":
                    if top:
                        top.pop()
                elif name in ("GLOBAL", "INST"):
                    module, _, attr = str(arg).partition(" ")
                    found.add((module, attr))
                    top = [None]
                elif name == "STACK_GLOBAL":
                    module_name = top[-2:] if len(top) >= 2 else []
                    if len(module_name) == 2 and None not in module_name:
                        found.add((str(module_name[0]), str(module_name[1])))
                    else:
                        found.add(("?", "?"))
                    top = [None]
                elif name == "STOP":
                    last_end = pos + offset + 1
                else:
                    top = [None]  # what it pops and pushes is not followed: the stack is unknown
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
    """Raise ``UnsafePickle`` when a ``*.bin`` / ``*.pt`` weights file references anything but tensors."""
    for path in sorted([*model_dir.glob("*.bin"), *model_dir.glob("*.pt"), *model_dir.glob("*.pth")]):
        for member, data in _pickles_in(path):
            unsafe = sorted(f"{m}.{n}" for m, n in pickle_globals(data) - SAFE_GLOBALS)
            if unsafe:
                raise UnsafePickle(
                    f"{path.name} ({member}) is a pickle that would import {', '.join(unsafe[:5])}: it could run "
                    "code, so it is refused; save the model with safetensors", param="file")
