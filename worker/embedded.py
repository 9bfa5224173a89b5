"""``lelp serve``: the whole service on one machine with no configuration.

Under one data directory: SQLite (schema from the Alembic migrations), the SQLite-backed
kombu broker, the artifact store, and the API key file. It starts ONE real Celery worker
as a child process (the same code ``lelp worker`` runs in production; its command line is
given by ``worker.cli``, so this module never names the worker) and the API in this
process, and stops the worker when the API exits.

Why a child process rather than a thread: training must not block the API's event loop
or share its GIL, a crash in training must not take the API down, and the embedded
setup should exercise exactly the production code path.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

from app.settings import Settings, get_settings

log = logging.getLogger("lelp.embedded")

REPO_ROOT = Path(__file__).resolve().parents[1]
API_KEY_FILE = "api_key"
DEFAULT_TENANT = "default"
STOP_GRACE_S = 15.0


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
        with self.log_path.open("ab") as out:
            self.process = subprocess.Popen(self.command, env=child_env(self.settings),
                                            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

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
