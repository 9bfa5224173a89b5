"""The library's layering: ``lelp`` is usable alone and cheap to import."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

LELP = Path(__file__).resolve().parents[2] / "lelp"


def test_lelp_imports_nothing_from_the_service_or_the_worker() -> None:
    offenders = []
    for file in LELP.rglob("*.py"):
        for node in ast.walk(ast.parse(file.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{file.name}: {n}" for n in names if n.split(".")[0] in {"app", "worker"}]
    assert offenders == []


def test_importing_lelp_and_its_data_layer_does_not_load_torch() -> None:
    code = ("import sys\nimport lelp, lelp.data.datasets, lelp.errors, lelp.teacher.loading, lelp.cli\n"
            "lelp.teacher.loading.read_teacher_config\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_the_job_config_is_a_light_leaf() -> None:
    """``lelp.config`` (config, defaults, grids, method names) loads neither torch nor the job's stages."""
    code = ("import sys\nimport lelp.config\n"
            "heavy = [m for m in ('torch', 'numpy', 'lelp.pipeline', 'lelp.job', 'lelp.method.targets')\n"
            "         if m in sys.modules]\n"
            "assert not heavy, heavy\n"
            "from lelp.pipeline import DistillConfig, distill, split_rows\n"
            "import lelp.data.datasets\n"
            "assert DistillConfig is lelp.config.DistillConfig and split_rows is lelp.data.datasets.split_rows\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
