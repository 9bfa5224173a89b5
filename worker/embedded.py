"""``lelp serve``: the whole service on one machine with no configuration.

Under one data directory: SQLite (schema from the Alembic migrations), the SQLite-backed
kombu broker, the artifact store, and the API key file. It starts ONE real Celery worker
as a child process (the same code ``lelp worker`` runs in production; its command line is
given by ``worker.cli``, so this module never names the worker) and the API in this
process, and stops the worker when the API exits.

Why a child process rather than a thread: training must not block the API's event loop
or share its GIL, a crash in training must not take the API down, and the embedded
setup should exercise exactly the production code path.

The service owns its worker however it stops (issue 18: after ``kill -9`` of ``lelp serve``
its worker kept running, a restart started a second consumer beside it, and the job that
was running failed with FileNotFoundError instead of resuming):

- the worker runs under a small wrapper (``_OWNED_WORKER``) that asks Linux for a signal when
  ``lelp serve`` dies (``prctl(PR_SET_PDEATHSIG)``) and then SIGKILLs its whole process group
  (Celery's main process and its pool child, which is training);
- the wrapper's pid (its group id) is kept in ``worker.pid``; a start first kills a stale group
  of a previous run that is still there (found by the pid file and the processes' own
  ``LELP_DATA_DIR``), and only then requeues the interrupted jobs, so the job resumes from its
  checkpoint in the one new worker;
- one ``lelp serve`` per data directory (a lock on ``serve.lock``): two would fight over one worker.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from app.settings import Settings, get_settings

log = logging.getLogger("lelp.embedded")

REPO_ROOT = Path(__file__).resolve().parents[1]
API_KEY_FILE = "api_key"
DEFAULT_TENANT = "default"
STOP_GRACE_S = 15.0
PID_FILE = "worker.pid"
LOCK_FILE = "serve.lock"
WORKER_MARK = "lelp-embedded-worker"

# argv: -c MARK SERVE_PID DATA_DIR COMMAND...; exits with the worker's status.
_OWNED_WORKER = """\
import ctypes, os, signal, subprocess, sys
serve_pid = int(sys.argv[2])
def orphaned(*_):
    if os.getppid() != serve_pid:  # lelp serve is gone: nobody waits for a warm shutdown
        os.killpg(0, signal.SIGKILL)
    return False
try:
    ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG: SIGTERM here when lelp serve dies
except (OSError, AttributeError):
    pass
orphaned()
child = subprocess.Popen(sys.argv[4:])
def forward(signum, _frame):
    orphaned()
    child.send_signal(signum)
signal.signal(signal.SIGTERM, forward)
signal.signal(signal.SIGINT, forward)
sys.exit(child.wait())
"""


def child_env(settings: Settings) -> dict[str, str]:
    """The environment of child processes: the resolved settings, spelled out, and an import path."""
    env = dict(os.environ)
    env.update({
        "LELP_DATA_DIR": str(settings.data_dir),
        "LELP_DATABASE_URL": settings.database_url,
        "LELP_BROKER_URL": settings.broker_url,
        "LELP_ARTIFACT_URL": settings.artifact_url,
    })
    # Works from a source checkout as well as from an installed package.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    return env


def ensure_api_key(settings: Settings) -> tuple[str, bool]:
    """The embedded server's key: created (hashed in the DB, plain in a 0600 file) on first start.

    Returns ``(key, created)``; the file lets the demo and the CLI reuse the key.
    """
    from app.db.session import session_scope
    from app.security import create_api_key

    path = settings.data_dir / API_KEY_FILE
    if path.is_file():
        return path.read_text().strip(), False
    with session_scope(settings.database_url) as session:
        key = create_api_key(session, DEFAULT_TENANT)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(key + "\n")
    return key, True



def terminate(process: subprocess.Popen, grace_s: float) -> None:
    """SIGTERM a child started in its own session, then SIGKILL its whole group after ``grace_s``."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


class WorkerProcess:
    """One Celery worker child, restarted if it dies (a job's kill must not stop the service)."""

    def __init__(self, settings: Settings, log_path: Path, command: list[str]) -> None:
        self.settings, self.log_path, self.command = settings, log_path, command
        self.process: subprocess.Popen | None = None
        self._stopping = threading.Event()
        self._watcher = threading.Thread(target=self._watch, name="lelp-worker-watch", daemon=True)

    def start(self) -> WorkerProcess:
        self._spawn()
        self._watcher.start()
        return self

    def _spawn(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        owned = [sys.executable, "-c", _OWNED_WORKER, WORKER_MARK, str(os.getpid()), str(self.settings.data_dir),
                 *self.command]
        with self.log_path.open("ab") as out:
            self.process = subprocess.Popen(owned, env=child_env(self.settings),
                                            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        (self.settings.data_dir / PID_FILE).write_text(f"{self.process.pid}\n")

    def _watch(self) -> None:
        """Restart a worker that died (out of memory, killed); its running job is requeued first."""
        restarts: list[float] = []
        while not self._stopping.wait(2.0):
            if self.process is None or self.process.poll() is None:
                continue
            now = time.monotonic()
            restarts = [t for t in restarts if now - t < 60] + [now]
            if len(restarts) > 5:
                log.error("the worker keeps dying (see %s); not restarting it again", self.log_path)
                return
            log.warning("the worker exited with %s; restarting it", self.process.returncode)
            # Its pool child may outlive it and keep training: end the whole process group
            # before the job is handed to the new worker, so it never runs twice.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)
            try:
                requeue_interrupted_jobs(self.settings)
            except Exception:
                log.warning("could not requeue the interrupted jobs", exc_info=True)
            if not self._stopping.is_set():
                self._spawn()

    def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        """SIGTERM (warm shutdown), then SIGKILL after ``grace_s``; an interrupted job is resumed next start."""
        self._stopping.set()
        if self._watcher.is_alive():
            self._watcher.join(timeout=5)  # so it cannot spawn a new worker behind our back
        if self.process is not None:
            terminate(self.process, grace_s)
            (self.settings.data_dir / PID_FILE).unlink(missing_ok=True)


def _group_members(pgid: int, data_dir: Path) -> list[int]:
    """Pids in process group ``pgid`` whose environment names ``data_dir`` (ours, not a reused id)."""
    marker = f"LELP_DATA_DIR={data_dir}".encode()
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            pgrp = int(stat[stat.rindex(")") + 2:].split()[2])
            if pgrp == pgid and marker in (entry / "environ").read_bytes().split(b"\0"):
                members.append(int(entry.name))
        except (OSError, ValueError):
            continue
    return members


def kill_stale_worker(settings: Settings, wait_s: float = 10.0) -> list[int]:
    """SIGKILL the worker group a previous ``lelp serve`` of this data directory left behind
    (it was killed before it could stop it); returns the pids found."""
    pid_file = settings.data_dir / PID_FILE
    try:
        pgid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return []
    members = _group_members(pgid, settings.data_dir) if Path("/proc").is_dir() else []
    if members:
        log.warning("a worker of a previous run is still alive (process group %s: %s); stopping it", pgid, members)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
        deadline = time.monotonic() + wait_s
        while _group_members(pgid, settings.data_dir) and time.monotonic() < deadline:
            time.sleep(0.1)
    pid_file.unlink(missing_ok=True)
    return members


def lock_data_dir(settings: Settings):  # noqa: ANN201 - the open lock file, held while it is open
    """One ``lelp serve`` per data directory: the lock goes with the process, however it dies."""
    handle = (settings.data_dir / LOCK_FILE).open("a")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise SystemExit(f"another `lelp serve` is running on {settings.data_dir}; stop it first") from None
    return handle


def serve(worker_command: list[str], host: str = "127.0.0.1", port: int = 8000, data_dir: Path | None = None) -> None:
    """Run the embedded service until interrupted; ``worker_command`` starts its worker child.

    The command line comes from the caller (``worker.cli``, the console script on the top
    floor) because only the worker package may name its own Celery app.
    """
    import uvicorn

    from app.db.migrate import upgrade
    from app.http_server import uvicorn_options

    if data_dir is not None:
        os.environ["LELP_DATA_DIR"] = str(Path(data_dir).expanduser().resolve())
    get_settings.cache_clear()
    settings = get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    lock = lock_data_dir(settings)  # noqa: F841 - held until this process ends
    kill_stale_worker(settings)  # before the requeue: the job must never run in two workers
    upgrade(settings.database_url)
    key, created = ensure_api_key(settings)
    requeue_interrupted_jobs(settings)

    worker = WorkerProcess(settings, settings.data_dir / "logs" / "worker.log", worker_command).start()
    print(startup_banner(settings, host, port, key, created, worker.log_path), flush=True)
    # uvicorn re-raises the signal that stopped it once it has shut down; with the default
    # SIGTERM action that would kill this process before the worker is stopped.
    signal.signal(signal.SIGTERM, _exit_on_signal)
    try:
        uvicorn.run("app.main:create_app", factory=True, host=host, port=port, log_level="info",
                    **uvicorn_options(settings))
    finally:
        worker.stop()


def startup_banner(settings: Settings, host: str, port: int, key: str, created: bool, worker_log: Path) -> str:
    """What ``lelp serve`` prints: the console's address and the two lines that point the CLI at it."""
    key_file = settings.data_dir / API_KEY_FILE
    url_host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host  # a wildcard is no address to open
    url = f"http://{url_host}:{port}"
    if created:
        key_line = f"export LELP_API_KEY={key}"
        key_note = f"API key (shown once; also saved to {key_file}, mode 0600)"
    else:
        key_line = f"export LELP_API_KEY=$(cat {key_file})"
        key_note = f"API key: in {key_file}"
    return "\n".join([
        f"LELP serving on {url}  (data: {settings.data_dir}, worker log: {worker_log})",
        f"Console: {url}/ui  (sign in with the API key)   API docs: {url}/docs",
        f"{key_note}; for the CLI and the Python client:",
        f"  export LELP_API_URL={url}",
        f"  {key_line}",
    ])


def _exit_on_signal(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def requeue_interrupted_jobs(settings: Settings) -> list[str]:
    """Before the one worker starts, every ``running`` job is an orphan of the last run: requeue it.

    The embedded broker does not hand back a killed worker's message, so without this a job
    interrupted by a stop would wait for the heartbeat sweep.
    """
    from app.services.recovery import requeue_orphans

    return requeue_orphans(settings)
