"""The cascade's teacher, in a process of its own (the API never imports torch).

``TeacherProcess`` starts ``python -m lelp.teacher.serve_process DIR`` on first use and talks
JSON lines over its pipes. It has the ``predict_proba`` / ``labels`` shape of a predictor, so
the inference service serves it through the same ``MicroBatcher`` as a student: its one thread
does the blocking pipe I/O, and rows deferred by concurrent requests queue up and go to the
teacher as one batch (continuous batching). A teacher process that died is started again on
the next batch; the batch that saw it die fails with ``teacher_unavailable`` (503).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from app.errors import ServiceUnavailable

log = logging.getLogger(__name__)

#: Seconds a teacher may take to load before its process is given up.
START_TIMEOUT_S = 300.0


class TeacherUnavailable(ServiceUnavailable):
    code = "teacher_unavailable"


class TeacherProcess:
    """One long-lived teacher process; ``predict_proba`` is called from one thread at a time."""

    def __init__(self, teacher_dir: Path, *, max_length: int = 128, threads: int = 0,
                 on_batch: Callable[[int, float], None] | None = None) -> None:
        self.teacher_dir, self.max_length, self.threads = Path(teacher_dir), max_length, threads
        self.on_batch = on_batch  # (rows, seconds) of each batch: /metrics
        self.labels: list[str] = []
        self._proc: subprocess.Popen | None = None
        self._lock = threading.Lock()

    def _start(self) -> subprocess.Popen:
        command = [sys.executable, "-m", "lelp.teacher.serve_process", str(self.teacher_dir),
                   "--max-length", str(self.max_length), "--threads", str(self.threads)]
        proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=None,
                                env={**os.environ, "TOKENIZERS_PARALLELISM": "false"}, text=True, bufsize=1)
        line = proc.stdout.readline() if proc.stdout else ""
        if not line:
            proc.kill()
            raise TeacherUnavailable("the teacher process could not start (see the server log)")
        self.labels = [str(label) for label in json.loads(line)["labels"]]
        log.info("teacher process %d started for %s", proc.pid, self.teacher_dir)
        return proc

    def start(self) -> None:
        """Start the process now (loading the teacher takes seconds: done before the first batch)."""
        with self._lock:
            if self._proc is None or self._proc.poll() is not None:
                self._proc = self._start()

    def predict_proba(self, texts: list[str], text_pairs: list[str] | None = None) -> np.ndarray:
        started = time.perf_counter()
        with self._lock:
            if self._proc is None or self._proc.poll() is not None:
                self._proc = self._start()
            proc = self._proc
            try:
                proc.stdin.write(json.dumps({"texts": list(texts), "pairs": list(text_pairs) if text_pairs else None})
                                 + "\n")
                proc.stdin.flush()
                line = proc.stdout.readline()
            except (BrokenPipeError, OSError, ValueError):
                line = ""
            if not line:
                proc.kill()
                self._proc = None
                raise TeacherUnavailable("the teacher process stopped during a batch; it restarts on the next one")
        reply = json.loads(line)
        if "error" in reply:
            raise TeacherUnavailable(f"the teacher failed on a batch: {reply['error']}")
        probs = np.asarray(reply["probs"], dtype=np.float64).reshape(len(texts), -1)
        if self.on_batch is not None:
            self.on_batch(len(texts), time.perf_counter() - started)
        return probs

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            try:
                proc.stdin.close()
                proc.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                proc.kill()
