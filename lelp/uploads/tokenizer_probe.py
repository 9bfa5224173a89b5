"""Exercise an uploaded model's tokenizer, and convert pickle weights, in a child process.

A tokenizer is code we did not write: a ``tokenizer.json`` can carry a split regex that
makes the Rust library panic (``pyo3_runtime.PanicException``, a ``BaseException`` that
escapes every ``except Exception``), loop for a long time, or allocate without bound. So at
upload the service runs :func:`probe_model_dir`, which starts ``python -m
lelp.uploads.tokenizer_probe DIR`` with a wall-clock limit and an address-space limit, and refuses
the model when the child does not finish cleanly on a few probe strings. The same child
converts ``pytorch_model.bin`` to ``model.safetensors`` with the real
``torch.load(weights_only=True)`` loader, so the stored teacher never holds a pickle and the
opcode pre-scan (``lelp/uploads/pickle_scan.py``) is a second line, not the only one. The
parent (the API) never imports torch or tokenizers itself.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

from lelp.errors import TeacherError

#: Plain words, punctuation, non-Latin scripts, long runs (backtracking regexes), empty text.
PROBE_TEXTS = (
    "a gripping film",
    "The plot was dull, the acting worse!!! 10/10 would not watch again...",
    "Ünïcödé façade — naïve café ß ﬀ İ 日本語のテキスト 😀👍🏽 עברית العربية",
    "a" * 64 + "!",
    " " * 64 + "\t\n\r",
    "1234567890" * 8,
    "",
)
PROBE_PAIR = ("is it good?", "yes " * 20)
DEFAULT_TIMEOUT_S = 60.0
DEFAULT_MEMORY_BYTES = 4 * 1024**3
_RESULT_PREFIX = "LELP_PROBE_RESULT "


# --------------------------------------------------------------------------- child side


def _probe_tokenizer(root: Path) -> str:
    """Encode every probe string; returns which implementation was exercised."""
    if (root / "tokenizer.json").is_file():
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(root / "tokenizer.json"))
        tokenizer.encode_batch(list(PROBE_TEXTS))
        tokenizer.encode(*PROBE_PAIR)
        return "tokenizers"
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(root, local_files_only=True, trust_remote_code=False)
    tokenizer(list(PROBE_TEXTS), truncation=True, max_length=128)
    tokenizer(*PROBE_PAIR, truncation=True, max_length=128)
    return "transformers"


def _convert_pickle(root: Path) -> bool:
    """``pytorch_model.bin`` -> ``model.safetensors`` via ``torch.load(weights_only=True)``; the .bin is removed."""
    source = root / "pytorch_model.bin"
    if not source.is_file() or (root / "model.safetensors").exists():
        return False
    import torch
    from safetensors.torch import save_file

    state = torch.load(source, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in state.items()):
        raise ValueError("pytorch_model.bin does not hold a state dict of tensors")
    # Tied weights share storage, which safetensors refuses: each tensor gets its own copy.
    tensors = {name: tensor.detach().clone().contiguous() for name, tensor in state.items()}
    target = root / ".model.safetensors.tmp"
    save_file(tensors, str(target), metadata={"format": "pt"})
    os.replace(target, root / "model.safetensors")
    source.unlink()
    return True


def main(argv: list[str] | None = None) -> int:
    """``python -m lelp.uploads.tokenizer_probe DIR [--convert] [--memory BYTES]``: one result line, 0 when clean."""
    args = list(sys.argv[1:] if argv is None else argv)
    root = Path(args[0])
    if "--memory" in args:  # first thing, before any tokenizer file is parsed
        limit = int(args[args.index("--memory") + 1])
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    result: dict[str, object] = {}
    stage = "tokenizer"
    try:
        result["tokenizer"] = _probe_tokenizer(root)
        if "--convert" in args:
            stage = "convert"
            result["converted"] = _convert_pickle(root)
    except BaseException as exc:  # noqa: BLE001 - a panic is exactly what we are looking for
        print(_RESULT_PREFIX + json.dumps({"error": type(exc).__name__, "message": str(exc)[:300], "stage": stage}),
              flush=True)
        return 3
    print(_RESULT_PREFIX + json.dumps(result), flush=True)
    return 0


# --------------------------------------------------------------------------- parent side


def probe_model_dir(root: str | Path, *, timeout_s: float = DEFAULT_TIMEOUT_S,
                    memory_bytes: int = DEFAULT_MEMORY_BYTES, convert_pickle: bool = True) -> dict:
    """Run the probe child on ``root``; TeacherError when the tokenizer panics, hangs or runs out of memory."""
    # The child sets its own address-space limit: ``preexec_fn`` is unsafe in a threaded server.
    command = [sys.executable, "-m", "lelp.uploads.tokenizer_probe", str(root), "--memory", str(memory_bytes),
               *(["--convert"] if convert_pickle else [])]
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "RUST_BACKTRACE": "0", "OMP_NUM_THREADS": "1"}
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, env=env, check=False)
    except subprocess.TimeoutExpired:
        raise TeacherError(f"the tokenizer did not finish a few probe strings within {timeout_s:g} s: it is refused",
                           param="file:tokenizer.json") from None
    lines = [line for line in done.stdout.splitlines() if line.startswith(_RESULT_PREFIX)]
    result = json.loads(lines[-1][len(_RESULT_PREFIX):]) if lines else None
    if done.returncode == 0 and result is not None:
        return result
    if result is not None and "error" in result:
        what = f"{result['error']}: {result['message']}"
    elif done.returncode < 0 or "MemoryError" in done.stderr or "memory allocation" in done.stderr:
        what = f"it was stopped (signal {-done.returncode}) or ran out of its {memory_bytes / 1024**3:g} GiB"
    else:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        what = f"exit code {done.returncode}: {tail[:200]}"
    if result is not None and result.get("stage") == "convert":
        raise TeacherError(f"pytorch_model.bin cannot be loaded safely ({what}); convert it to safetensors",
                           param="file:pytorch_model.bin")
    raise TeacherError(f"the tokenizer crashed or was stopped on a probe string ({what}): the model is "
                       "refused; save a tokenizer that transformers' own classes build", param="file:tokenizer.json")


if __name__ == "__main__":  # pragma: no cover - the child process
    sys.exit(main())
