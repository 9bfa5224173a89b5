"""Import boundaries: the API process must start without torch."""

from __future__ import annotations

import subprocess
import sys


def _run_python(code: str, env: dict | None = None) -> None:
    """Run ``code`` in a fresh interpreter (imports and the heap as a new process has them); it must exit 0."""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr


def test_importing_app_main_does_not_import_torch() -> None:
    code = ("import sys\nimport app.main\nimport app.db.repositories, app.services.inference, app.deps\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n"
            "assert 'transformers' not in sys.modules, 'transformers was imported'\n")
    _run_python(code)


def test_building_the_app_does_not_import_torch(tmp_path) -> None:  # noqa: ANN001
    code = (
        "import sys\nfrom app.main import create_app\nfrom app.settings import Settings\n"
        f"app = create_app(Settings(data_dir={str(tmp_path)!r}))\napp.openapi()\n"
        "assert 'torch' not in sys.modules\n"
    )
    _run_python(code)


def test_db_package_is_a_leaf() -> None:
    code = ("import sys\nimport app.db.repositories, app.db.session, app.db.migrate\n"
            "bad = [m for m in sys.modules if m.startswith(('app.api', 'app.services', 'fastapi'))]\n"
            "assert not bad, bad\n")
    _run_python(code)


def test_uvicorn_target_app_main_app(tmp_path) -> None:  # noqa: ANN001
    """``app.main:app`` resolves lazily (built from the environment on first access)."""
    import os

    code = ("import sys\nfrom app.main import app\nfrom fastapi import FastAPI\n"
            "assert isinstance(app, FastAPI)\nassert 'torch' not in sys.modules\n")
    env = {**os.environ, "LELP_DATA_DIR": str(tmp_path)}
    _run_python(code, env)
    assert (tmp_path / "tmp").is_dir()


def test_start_up_warms_the_serving_imports_without_torch_then_freezes_the_heap(tmp_path) -> None:  # noqa: ANN001
    """The libraries a predict needs are imported at start-up (not torch), then frozen out of the garbage
    collector's walks: unfrozen, each full collection under load stopped the event loop for 310-370 ms."""
    code = (
        "import gc, sys\nfrom fastapi.testclient import TestClient\nfrom app.main import create_app\n"
        "from app.settings import Settings\n"
        f"app = create_app(Settings(data_dir={str(tmp_path)!r}, sweep_in_api=False))\n"
        "assert gc.get_freeze_count() == 0\n"
        "with TestClient(app):\n"
        "    frozen = gc.get_freeze_count()\n"
        "    assert 'onnxruntime' in sys.modules and 'lelp.artifacts' in sys.modules\n"
        "    assert 'torch' not in sys.modules, 'torch was imported'\n"
        "assert frozen > 50_000, frozen\n"
        f"with TestClient(create_app(Settings(data_dir={str(tmp_path)!r}, sweep_in_api=False))):\n"
        "    assert gc.get_freeze_count() <= frozen, 'frozen twice'  # a second freeze adds the new app's objects\n"
    )
    _run_python(code)


def test_a_model_load_that_imports_a_library_freezes_it_too() -> None:
    """torch arrives with the first model served on torch: frozen then, or the collector walks it again."""
    code = (
        "import gc, sys\nfrom app.services.inference import freeze_new_libraries\n"
        "before = len(sys.modules)\nassert not freeze_new_libraries(before)\nassert gc.get_freeze_count() == 0\n"
        "import torch\nassert freeze_new_libraries(before)\n"
        "assert gc.get_freeze_count() > 50_000, gc.get_freeze_count()\n"
    )
    _run_python(code)
