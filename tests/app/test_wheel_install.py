"""Issue 8: the migrations ship inside the package, so a non-editable install can run ``lelp db upgrade``.

The wheel is built from a copy of the packaged sources (nothing is written into the checkout)
and installed with ``--no-deps`` into a fresh venv whose only other import path is the test
venv's site-packages (for SQLAlchemy, Alembic, typer...), then run from a directory that is not
the checkout: the schema must come from the installed files alone. Offline: no index is asked.
"""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[2]
PACKAGED = ("lelp", "app", "worker", "pyproject.toml", "README.md")


def _run(*command: str | Path, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run([str(c) for c in command], cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=300, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


@pytest.mark.slow
def test_a_built_wheel_runs_lelp_db_upgrade(tmp_path) -> None:  # noqa: ANN001
    source = tmp_path / "src"
    source.mkdir()
    for name in PACKAGED:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(ROOT / name, source / name)
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
         "-w", tmp_path / "dist", source, cwd=tmp_path)
    (wheel,) = (tmp_path / "dist").glob("lelp_distill-*.whl")

    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp_path)
    python = venv / "bin" / "python"
    venv_site = Path(_run(python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))",
                          cwd=tmp_path).stdout.strip())
    # The dependencies (not this project) from the test venv: a plain path line, so its
    # editable-install hook (a .pth of its own) is not run and cannot point back at the checkout.
    (venv_site / "test_deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    _run(sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", "-q", wheel,
         cwd=tmp_path)

    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith("LELP_")}
    db = tmp_path / "run" / "lelp.db"
    db.parent.mkdir()
    env["LELP_DATABASE_URL"] = f"sqlite:///{db}"
    where = _run(python, "-c", "import app.db.migrate as m; print(m.MIGRATIONS_DIR)", cwd=db.parent, env=env)
    assert Path(where.stdout.strip()).is_relative_to(venv_site), where.stdout
    _run(venv / "bin" / "lelp", "db", "upgrade", cwd=db.parent, env=env)
    current = _run(venv / "bin" / "lelp", "db", "current", cwd=db.parent, env=env).stdout.strip()

    from alembic.script import ScriptDirectory

    from app.db import migrate

    assert current == ScriptDirectory.from_config(migrate.alembic_config("sqlite://")).get_current_head()
    engine = sa.create_engine(f"sqlite:///{db}")
    try:
        assert {"jobs", "workers", "alembic_version"} <= set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()
