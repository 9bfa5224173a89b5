#!/usr/bin/env bash
# Run HERE, on a machine with PyPI access, before scripts/gpu_check.sh runs on a lent GPU machine.
#
# The lent machine's image (Python 3.12) holds torch, transformers, pytest, numpy, pandas, typer, httpx
# and most of the library's needs, but not the service's (Celery, SQLAlchemy, FastAPI, ...) nor
# model2vec; nothing can be fetched there. This downloads those wheels, at the versions of the
# local environment, into .whl/ (ignored by git); the device run carries .whl and installs them
# with --no-index --no-deps (scripts/gpu_check.sh does).
#   scripts/gpu_wheels.sh [PYTHON]      # PYTHON: the project's venv python (default .venv/bin/python)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-.venv/bin/python}
exclude=$(git rev-parse --git-path info/exclude)
grep -qxF '/.whl/' "$exclude" 2>/dev/null || echo '/.whl/' >> "$exclude"
mkdir -p .whl
NAMES="celery kombu billiard vine amqp click-didyoumean click-repl click-plugins prompt_toolkit wcwidth tzlocal
sqlalchemy alembic mako fastapi starlette opentelemetry-api importlib-metadata pydantic pydantic-core
pydantic-settings annotated-types typing-inspection python-dotenv python-multipart cachetools orjson uvicorn
model2vec skeletoken"
for name in $NAMES; do
  version=$("$PY" -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$name" 2>/dev/null) \
    || { echo "skip $name (not installed here)"; continue; }
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl "$name==$version" \
    || echo "could not download $name==$version"
done
du -sh .whl
