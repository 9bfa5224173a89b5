"""Issue 18: one ``lelp serve`` per data directory, and a stale worker group of a crashed one is killed."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from app.settings import Settings
from worker.embedded import PID_FILE, kill_stale_worker, lock_data_dir


def test_a_second_serve_on_one_data_dir_is_refused(tmp_path) -> None:  # noqa: ANN001
    settings = Settings(data_dir=tmp_path)
    held = lock_data_dir(settings)
    with pytest.raises(SystemExit, match="another `lelp serve`"):
        lock_data_dir(settings)
    held.close()
    lock_data_dir(settings).close()


def test_a_stale_worker_group_is_killed_and_strangers_are_not(tmp_path) -> None:  # noqa: ANN001
    settings = Settings(data_dir=tmp_path)
    env = dict(os.environ, LELP_DATA_DIR=str(settings.data_dir))
    # a leader and a child in their own group, as the wrapper, Celery and its pool child are
    code = ("import subprocess, sys, time; "
            "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); time.sleep(60)")
    stale = subprocess.Popen([sys.executable, "-c", code], env=env, start_new_session=True)
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    try:
        time.sleep(0.5)
        (tmp_path / PID_FILE).write_text(f"{stranger.pid}\n")  # a pid file naming someone else's group
        assert kill_stale_worker(settings) == [] and stranger.poll() is None
        (tmp_path / PID_FILE).write_text(f"{stale.pid}\n")
        found = kill_stale_worker(settings)
        assert stale.pid in found and len(found) == 2, found
        assert stale.wait(5) == -9
        assert not (tmp_path / PID_FILE).exists()
    finally:
        for process in (stale, stranger):
            if process.poll() is None:
                process.kill()
                process.wait()
